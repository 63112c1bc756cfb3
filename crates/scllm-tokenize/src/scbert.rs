//! scBERT's input (docs/models/scbert.md §1): a cell's genes matched to the model's gene panel
//! by symbol, genes outside the panel dropped **before** `normalize_total(target_sum=1e4)`, then
//! `log1p(base=2)`, each value binned to `trunc(min(v, bin_num))`, and one token 0 appended.
//! Panel genes the file lacks are zero. Every cell is the whole panel plus that token, so
//! batches need no padding.
//!
//! The normalisation is scllm-pp's (`normalize_total`, `log1p_base`), the float32 arithmetic of
//! scanpy, applied to the cell's panel genes alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use scllm_io::{AnnData, Compressed, DataFrame, Values};
use scllm_pp::ValueKind;

use crate::prepare::{check_match, check_values, file_err, input_matrix, restrict_to};
use crate::vocab::{match_genes, GeneMatch, GeneVocab};
use crate::{PrepOptions, Prepared, Result, RowTokenizer, TokenizeError, TokenizedCell};

/// The file name of a panel in a model folder.
pub const PANEL_FILE: &str = "gene_panel.txt";

/// `normalize_total`'s `target_sum` in scBERT's `preprocess.py`.
const TARGET_SUM: f64 = 1e4;

/// The model's genes in model order: position i of a cell is panel gene i.
#[derive(Clone, Debug)]
pub struct Panel {
    vocab: GeneVocab,
    pub source: PathBuf,
}

impl Panel {
    /// Read a panel: one gene symbol a line, in model order (blank lines and surrounding spaces
    /// are not allowed inside the list; a final newline is). A missing file is an error saying
    /// what the file must hold.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            file_err(
                path,
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "not found: a scBERT model folder holds {PANEL_FILE}, the model's gene \
                         panel in model order, one gene symbol a line (the var_names of scBERT's \
                         panglao_10000.h5ad: 16,906 genes for the released model); position i of \
                         the model reads gene i"
                    )
                } else {
                    format!("cannot read: {e}")
                },
            )
        })?;
        let genes: Vec<String> = text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, g) in genes.iter().enumerate() {
            if g.is_empty() || g.trim() != g {
                return Err(file_err(
                    path,
                    format!(
                        "line {}: `{g}` is not a gene symbol (one symbol a line, no blank lines or \
                         surrounding spaces)",
                        i + 1
                    ),
                ));
            }
            if let Some(first) = seen.insert(g, i) {
                return Err(file_err(
                    path,
                    format!(
                        "gene `{g}` is on lines {} and {}: each panel gene has one position",
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        if genes.is_empty() {
            return Err(file_err(path, "holds no genes"));
        }
        let mut vocab = GeneVocab::from_tokens(genes);
        vocab.source = Some(path.to_path_buf());
        Ok(Panel {
            vocab,
            source: path.to_path_buf(),
        })
    }

    /// A panel of the given genes (tests, and folders built in code).
    pub fn from_genes(genes: Vec<String>) -> Self {
        Panel {
            vocab: GeneVocab::from_tokens(genes),
            source: PathBuf::from(PANEL_FILE),
        }
    }

    pub fn len(&self) -> usize {
        self.vocab.len()
    }
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }
    pub fn genes(&self) -> &[String] {
        self.vocab.tokens()
    }
    pub fn position(&self, gene: &str) -> Option<u32> {
        self.vocab.get(gene)
    }
    pub fn gene(&self, position: u32) -> Option<&str> {
        self.vocab.token(position)
    }

    /// Each of a file's genes' panel position, by symbol (Ensembl ids are translated through
    /// GENCODE first). A gene named twice keeps its first column, as `preprocess.py`'s
    /// `obj.index(...)` does; `n_matched` then counts the panel genes found.
    pub fn match_genes(
        &self,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> Result<GeneMatch> {
        let mut m = match_genes(var, &self.vocab, gene_col, file)?;
        let mut seen = std::collections::HashSet::new();
        for id in m.ids.iter_mut() {
            if let Some(p) = *id {
                if !seen.insert(p) {
                    *id = None;
                }
            }
        }
        m.n_matched = seen.len();
        Ok(m)
    }

    /// The tokenizer of a file whose genes matched as `genes`; `bin_num`: the highest bin
    /// (`num_tokens - 2`, 5 released).
    pub fn tokenizer(&self, genes: &GeneMatch, bin_num: u32) -> Result<Tokenizer> {
        if genes.n_matched == 0 {
            return Err(TokenizeError::Invalid(
                "no gene of the file is in the model's gene panel".into(),
            ));
        }
        Ok(Tokenizer {
            col_position: genes.ids.clone(),
            n_panel: self.len(),
            bin_num,
        })
    }

    /// Every cell of a file as scBERT reads it. X (or the layer) must hold raw counts.
    pub fn prepare_cells(
        &self,
        adata: &AnnData,
        file: &Path,
        opts: &PrepOptions,
        bin_num: u32,
    ) -> Result<Prepared> {
        use rayon::prelude::*;
        let m = input_matrix(adata, file, opts)?;
        let mut genes = self.match_genes(&adata.var, opts.gene_col.as_deref(), file)?;
        check_match(&genes, file, opts)?;
        if let Some(only) = &opts.only_genes {
            restrict_to(&mut genes, only, |g| self.position(g), file)?;
        }
        let kind = check_values(m, file, opts)?;
        if kind != ValueKind::Counts {
            return Err(file_err(
                file,
                format!(
                    "{} holds {}, but scBERT normalises raw counts over its panel genes \
                     (normalize_total 1e4, log2(1+x)): use the counts layer (--layer counts) or \
                     the raw counts",
                    opts.layer.as_deref().unwrap_or("X"),
                    kind.as_str()
                ),
            ));
        }
        let x = scllm_pp::to_csr_f32(m);
        let tok = self.tokenizer(&genes, bin_num)?;
        let vals = x.data.to_f32();
        let cells = (0..x.nrows)
            .into_par_iter()
            .map(|i| {
                let r = x.range(i);
                tok.tokenize_row(&x.indices[r.clone()], &vals[r], 0.0)
                    .map_err(|e| {
                        file_err(file, format!("cell {} (`{}`): {e}", i, adata.obs.index[i]))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Prepared {
            cells,
            gene_match: genes.clone(),
            value_kind: kind,
            steps: format!(
                "{} of the {} panel genes present (the other {} are zero), genes outside the panel \
                 dropped, normalize_total 1e4 + log2(1+x), bins trunc(min(v, {bin_num})), token 0 \
                 appended",
                genes.n_matched,
                self.len(),
                self.len() - genes.n_matched
            ),
            pad_id: tok.pad_id(),
            pad_value: 0.0,
        })
    }
}

/// One cell's panel bins plus the appended 0.
pub struct Tokenizer {
    /// Panel position of each column of the file (`None`: outside the panel, or a repeat).
    col_position: Vec<Option<u32>>,
    n_panel: usize,
    bin_num: u32,
}

impl Tokenizer {
    /// `log2(1 + normalize_total(x, 1e4))` of the cell's panel genes, as `(position, value)`.
    pub fn normalised(&self, cols: &[u32], vals: &[f32]) -> Result<Vec<(u32, f32)>> {
        let mut kept: Vec<(u32, f32)> = Vec::new();
        for (&j, &v) in cols.iter().zip(vals) {
            if let Some(p) = self.col_position.get(j as usize).copied().flatten() {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(TokenizeError::Invalid(format!(
                        "value {v} of a panel gene: scBERT needs non-negative counts"
                    )));
                }
                kept.push((p, v));
            }
        }
        let row = Compressed {
            nrows: 1,
            ncols: self.n_panel,
            indptr: vec![0, kept.len() as u64],
            indices: kept.iter().map(|&(p, _)| p).collect(),
            data: Values::F32(kept.iter().map(|&(_, v)| v).collect()),
        };
        let (norm, _, _) = scllm_pp::normalize_total(&row, Some(TARGET_SUM));
        let logged = scllm_pp::normalize::log1p_base(&norm, 2.0);
        let out = scllm_pp::normalize::values_f32(&logged);
        Ok(kept.iter().zip(out).map(|(&(p, _), &v)| (p, v)).collect())
    }

    /// `trunc(min(v, bin_num))`.
    pub fn bin(&self, v: f32) -> u32 {
        if v > self.bin_num as f32 {
            self.bin_num
        } else {
            v as u32
        }
    }
}

impl RowTokenizer for Tokenizer {
    /// `total` is ignored: scBERT normalises by the cell's panel genes alone.
    fn tokenize_row(&self, cols: &[u32], vals: &[f32], _total: f64) -> Result<TokenizedCell> {
        let mut genes = vec![0u32; self.n_panel + 1];
        for (p, v) in self.normalised(cols, vals)? {
            genes[p as usize] = self.bin(v);
        }
        Ok(TokenizedCell {
            values: vec![0.0; genes.len()],
            genes,
        })
    }
    /// The mask token (`bin_num + 1`), which scBERT's pretraining also pads with; cells are
    /// never padded.
    fn pad_id(&self) -> u32 {
        self.bin_num + 1
    }
    fn pad_value(&self) -> f32 {
        0.0
    }
    fn max_tokens(&self) -> Option<usize> {
        Some(self.n_panel + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> Panel {
        Panel::from_genes(vec!["B".into(), "A".into(), "C".into()])
    }

    fn var(names: &[&str]) -> DataFrame {
        DataFrame {
            index: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn genes_outside_the_panel_do_not_count_in_the_total() {
        let p = panel();
        // file columns: A, X (not in the panel), B
        let m = p
            .match_genes(&var(&["A", "X", "B"]), None, Path::new("f.h5ad"))
            .unwrap();
        assert_eq!(m.ids, vec![Some(1), None, Some(0)]);
        assert_eq!(m.n_matched, 2);
        let t = p.tokenizer(&m, 5).unwrap();
        // A 1 count, X 1000, B 3: panel total 4 → A 2500, B 7500 → log2(2501) ≈ 11.3 → 5
        let c = t
            .tokenize_row(&[0, 1, 2], &[1.0, 1000.0, 3.0], 0.0)
            .unwrap();
        assert_eq!(c.genes, vec![5, 5, 0, 0]);
        // 1e4 counts of B and 1 of A: A → 1 → log2(2) = 1 → bin 1
        let c = t.tokenize_row(&[0, 2], &[1.0, 9999.0], 0.0).unwrap();
        assert_eq!(c.genes, vec![5, 1, 0, 0]);
        assert_eq!(t.pad_id(), 6);
    }

    #[test]
    fn a_repeated_gene_keeps_its_first_column() {
        let p = panel();
        let mut v = var(&["A", "B", "A2"]);
        v.index[2] = "A".into();
        let m = p.match_genes(&v, None, Path::new("f.h5ad")).unwrap();
        assert_eq!(m.ids, vec![Some(1), Some(0), None]);
        assert_eq!(m.n_matched, 2);
    }

    #[test]
    fn bins_truncate_and_clip() {
        let t = Tokenizer {
            col_position: vec![],
            n_panel: 0,
            bin_num: 5,
        };
        for (v, b) in [
            (0.0, 0),
            (0.99, 0),
            (1.0, 1),
            (4.999, 4),
            (5.0, 5),
            (11.2, 5),
        ] {
            assert_eq!(t.bin(v), b, "{v}");
        }
    }

    #[test]
    fn panel_files_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let missing = Panel::from_file(d.path().join(PANEL_FILE))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("one gene symbol a line"), "{missing}");
        let f = d.path().join("p.txt");
        std::fs::write(&f, "A\nB\nA\n").unwrap();
        let dup = Panel::from_file(&f).unwrap_err().to_string();
        assert!(dup.contains("lines 1 and 3"), "{dup}");
        std::fs::write(&f, "A\n\nB\n").unwrap();
        assert!(Panel::from_file(&f).is_err());
        std::fs::write(&f, "A\r\nB\r\n").unwrap();
        assert_eq!(Panel::from_file(&f).unwrap().genes(), &["A", "B"]);
    }
}
