//! scGPT tokenisation of one cell: gene tokens plus values, `<cls>` first.
//!
//! Two conventions from the reference, chosen by [`TokenizerConfig`]:
//! * fine-tuning (`tokenize_and_pad_batch`): values are already binned, `<cls>` value 0;
//! * pretraining / `embed_data` (the `DataCollator`): expressed values are binned per cell here,
//!   `<cls>` value `pad_value` (-2).
//!
//! Cells longer than `max_len` keep `<cls>` and a random subset of `max_len-1` genes in random
//! order (the reference's sampling). The randomness is seeded per cell from the seed and the
//! cell's own content, so a cell is tokenised the same way whatever its neighbours.

use rand_mt::Mt;
use scllm_pp::binning::{cell_seed, BinRng, Binner};

use crate::vocab::{GeneMatch, GeneVocab};
use crate::{Result, RowTokenizer, TokenizeError, TokenizedCell};

#[derive(Clone, Debug)]
pub struct TokenizerConfig {
    /// Longest sequence, `<cls>` included.
    pub max_len: usize,
    /// Keep genes with zero expression too (`include_zero_gene=True`).
    pub include_zero_gene: bool,
    pub append_cls: bool,
    pub cls_value: f32,
    pub pad_value: f32,
    /// Bin expressed values per cell into this many bins; `None` when the input is already binned.
    pub n_bins: Option<usize>,
    /// Sample genes when too long (the reference); `false` truncates to the first genes.
    pub sample: bool,
    pub seed: u64,
}

impl TokenizerConfig {
    /// As scGPT's `embed_data`: expressed genes, per-cell binning, `<cls>` = -2, max 1200.
    pub fn embedding(max_len: usize, n_bins: usize, seed: u64) -> Self {
        TokenizerConfig {
            max_len,
            include_zero_gene: false,
            append_cls: true,
            cls_value: -2.0,
            pad_value: -2.0,
            n_bins: Some(n_bins),
            sample: true,
            seed,
        }
    }
    /// As the annotation tutorials: binned input, `<cls>` = 0.
    pub fn finetune(max_len: usize, seed: u64) -> Self {
        TokenizerConfig {
            cls_value: 0.0,
            n_bins: None,
            ..Self::embedding(max_len, 51, seed)
        }
    }
}

pub struct Tokenizer {
    pub cfg: TokenizerConfig,
    /// Vocabulary id per column of the data matrix.
    gene_ids: Vec<Option<u32>>,
    pub cls_id: u32,
    pub pad_id: u32,
}

impl Tokenizer {
    pub fn new(
        cfg: TokenizerConfig,
        genes: &GeneMatch,
        vocab: &GeneVocab,
        cls_token: &str,
        pad_token: &str,
    ) -> Result<Self> {
        if cfg.max_len < 2 {
            return Err(TokenizeError::Invalid(format!(
                "max_len must be at least 2, got {}",
                cfg.max_len
            )));
        }
        Ok(Tokenizer {
            gene_ids: genes.ids.clone(),
            cls_id: vocab.special(cls_token)?,
            pad_id: vocab.special(pad_token)?,
            cfg,
        })
    }

    /// Tokenise one cell given its row of the data matrix (column ids ascending and values).
    pub fn tokenize_row(&self, indices: &[u32], values: &[f32]) -> Result<TokenizedCell> {
        let mut genes: Vec<u32> = Vec::new();
        let mut cols: Vec<u32> = Vec::new();
        let mut vals: Vec<f32> = Vec::new();
        if self.cfg.include_zero_gene {
            let mut k = 0;
            for (j, id) in self.gene_ids.iter().enumerate() {
                while k < indices.len() && (indices[k] as usize) < j {
                    k += 1;
                }
                let v = if k < indices.len() && indices[k] as usize == j {
                    values[k]
                } else {
                    0.0
                };
                if let Some(id) = id {
                    genes.push(*id);
                    cols.push(j as u32);
                    vals.push(v);
                }
            }
        } else {
            for (&j, &v) in indices.iter().zip(values) {
                if v != 0.0 {
                    if let Some(id) = self.gene_ids[j as usize] {
                        genes.push(id);
                        cols.push(j);
                        vals.push(v);
                    }
                }
            }
        }
        if let Some(n_bins) = self.cfg.n_bins {
            let b =
                Binner::new(n_bins, BinRng::per_cell(self.cfg.seed)).bin_values(&cols, &vals)?;
            vals = b.bins.iter().map(|&x| x as f32).collect();
        }
        let room = if self.cfg.append_cls {
            self.cfg.max_len - 1
        } else {
            self.cfg.max_len
        };
        if genes.len() > room {
            let keep: Vec<usize> = if self.cfg.sample {
                let mut mt = Mt::new(cell_seed(self.cfg.seed ^ 0x5ca1_ab1e, &cols, &vals));
                let mut perm: Vec<usize> = (0..genes.len()).collect();
                // Fisher–Yates; the first `room` entries are a uniform random subset in random order
                for i in 0..room {
                    let j = i + (mt.next_u64() % (genes.len() - i) as u64) as usize;
                    perm.swap(i, j);
                }
                perm.truncate(room);
                perm
            } else {
                (0..room).collect()
            };
            genes = keep.iter().map(|&i| genes[i]).collect();
            vals = keep.iter().map(|&i| vals[i]).collect();
        }
        if self.cfg.append_cls {
            genes.insert(0, self.cls_id);
            vals.insert(0, self.cfg.cls_value);
        }
        Ok(TokenizedCell {
            genes,
            values: vals,
        })
    }
}

impl RowTokenizer for Tokenizer {
    fn tokenize_row(&self, cols: &[u32], vals: &[f32], _total: f64) -> Result<TokenizedCell> {
        Tokenizer::tokenize_row(self, cols, vals)
    }
    fn pad_id(&self) -> u32 {
        self.pad_id
    }
    fn pad_value(&self) -> f32 {
        self.cfg.pad_value
    }
}

/// What scGPT's input preparation reads from the model's `args.json`.
#[derive(Clone, Debug)]
pub struct ScGptPrep {
    /// Bins per cell (`n_bins`, 51).
    pub n_bins: usize,
    /// `pad_value` (-2) and `pad_token` (`<pad>`).
    pub pad_value: f32,
    pub pad_token: String,
}

/// Tokenise every cell of `adata` for scGPT fine-tuning and prediction, as the reference's
/// annotation tutorials and scPEFT do (docs/models/scgpt.md §2-3): genes absent from the
/// vocabulary removed first; then `normalize_total` to 1e4, `log1p` when X holds counts (the
/// value-kind detector decides; log-normalised input is only normalised, as `data_is_raw=False`),
/// per-cell binning into `n_bins`, and `tokenize_and_pad_batch`: expressed genes only, `<cls>`
/// first with value 0, at most `max_len` tokens (a random subset of genes, in random order, when
/// a cell has more). Randomness (binning ties, gene sampling) is seeded per cell from `seed` and
/// the cell's content. `file` names the data in messages.
pub fn prepare_cells(
    adata: &scllm_io::AnnData,
    file: &std::path::Path,
    vocab: &GeneVocab,
    model: &ScGptPrep,
    opts: &crate::PrepOptions,
) -> Result<crate::Prepared> {
    use crate::prepare::{check_match, check_values, input_matrix, restrict_to};
    use rayon::prelude::*;
    use scllm_pp::ValueKind;
    let m = input_matrix(adata, file, opts)?;
    let mut genes = crate::match_genes(&adata.var, vocab, opts.gene_col.as_deref(), file)?;
    check_match(&genes, file, opts)?;
    if let Some(only) = &opts.only_genes {
        restrict_to(&mut genes, only, |g| vocab.get(g), file)?;
    }
    let kind = check_values(m, file, opts)?;
    // genes absent from the vocabulary are removed before preprocessing, as the reference does
    let cols = genes.matched_columns();
    let sub = m.select_cols(&cols);
    let x = scllm_pp::to_csr_f32(&sub);
    let (x, _, _) = scllm_pp::normalize_total(&x, Some(1e4));
    let log1p = kind == ValueKind::Counts;
    let x = if log1p { scllm_pp::log1p(&x) } else { x };
    let (binned, _) = Binner::new(model.n_bins, BinRng::per_cell(opts.seed)).bin_matrix(&x)?;
    let sub_match = GeneMatch {
        ids: cols.iter().map(|&j| genes.ids[j]).collect(),
        n_matched: cols.len(),
        n_genes: cols.len(),
        key: genes.key.clone(),
        unmatched_examples: vec![],
    };
    let mut tc = TokenizerConfig::finetune(opts.max_len, opts.seed);
    tc.pad_value = model.pad_value;
    let tok = Tokenizer::new(tc, &sub_match, vocab, "<cls>", &model.pad_token)?;
    let vals: Vec<f32> = match &binned.data {
        scllm_io::Values::I64(v) => v.iter().map(|&b| b as f32).collect(),
        other => other.to_f32(),
    };
    let cells = (0..binned.nrows)
        .into_par_iter()
        .map(|i| {
            let r = binned.range(i);
            tok.tokenize_row(&binned.indices[r.clone()], &vals[r])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::Prepared {
        cells,
        gene_match: genes,
        value_kind: kind,
        steps: if log1p {
            "normalize_total 1e4 + log1p + binning".into()
        } else {
            "normalize_total 1e4 + binning".into()
        },
        pad_id: tok.pad_id,
        pad_value: tok.cfg.pad_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(cfg: TokenizerConfig) -> Tokenizer {
        let vocab = GeneVocab::from_tokens(
            ["A", "B", "C", "D", "<pad>", "<cls>"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let m = GeneMatch {
            ids: vec![Some(0), None, Some(1), Some(2), Some(3)],
            n_matched: 4,
            n_genes: 5,
            key: "test".into(),
            unmatched_examples: vec![],
        };
        Tokenizer::new(cfg, &m, &vocab, "<cls>", "<pad>").unwrap()
    }

    #[test]
    fn expressed_genes_only_with_cls_first() {
        let t = setup(TokenizerConfig::finetune(10, 0));
        // columns 0,1,3 expressed; column 1 is not in the vocab
        let c = t.tokenize_row(&[0, 1, 3], &[5.0, 7.0, 2.0]).unwrap();
        assert_eq!(c.genes, vec![5, 0, 2]);
        assert_eq!(c.values, vec![0.0, 5.0, 2.0]);
    }

    #[test]
    fn include_zero_gene_keeps_every_vocab_gene() {
        let mut cfg = TokenizerConfig::finetune(10, 0);
        cfg.include_zero_gene = true;
        let c = setup(cfg).tokenize_row(&[3], &[4.0]).unwrap();
        assert_eq!(c.genes, vec![5, 0, 1, 2, 3]);
        assert_eq!(c.values, vec![0.0, 0.0, 0.0, 4.0, 0.0]);
    }

    #[test]
    fn embedding_bins_and_samples_deterministically() {
        let t = setup(TokenizerConfig::embedding(3, 51, 7));
        let a = t
            .tokenize_row(&[0, 2, 3, 4], &[1.0, 2.0, 3.0, 4.0])
            .unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!((a.genes[0], a.values[0]), (5, -2.0));
        assert!(a.values[1..].iter().all(|&v| (1.0..=50.0).contains(&v)));
        let b = t
            .tokenize_row(&[0, 2, 3, 4], &[1.0, 2.0, 3.0, 4.0])
            .unwrap();
        assert_eq!(a, b, "same cell, same tokens");
        let mut seen = std::collections::HashSet::new();
        for &g in &a.genes[1..] {
            assert!(seen.insert(g), "sampled without replacement");
        }
    }
}
