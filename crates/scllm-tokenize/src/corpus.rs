//! A pretraining corpus: many `.h5ad` files read block by block, cells tokenised as scGPT's
//! pretraining collator does (expressed genes only, per-cell binning, `<cls>` first with value
//! `pad_value`, sampled down to `max_len`), mixed through a bounded shuffle buffer.
//!
//! Memory is bounded by one block of X plus the shuffle buffer, however many cells the files
//! hold. An epoch's cell order is a pure function of the seed and the epoch number, so training
//! can resume mid-epoch by skipping the cells already seen.
//!
//! No normalisation happens here: per-cell quantile binning gives the same bins for raw counts
//! and for their normalised or log-transformed values (both are monotone per cell), so files of
//! any value kind can be mixed.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use rand_mt::Mt64;
use scllm_io::BackedAnnData;

use crate::scgpt::{Tokenizer, TokenizerConfig};
use crate::vocab::{gene_symbols, match_genes, GeneMatch, GeneVocab};
use crate::TokenizedCell;
use crate::{Result, TokenizeError};

/// Cells to leave out, e.g. a benchmark's test donor: `donor=1015`, `donor=1015,1016`, or scoped
/// to one file by its name: `kang2018_pbmc.h5ad:donor=1015`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObsFilter {
    /// File name (not path) the filter applies to; `None`: every file with the column.
    pub file: Option<String>,
    pub column: String,
    pub values: Vec<String>,
}

impl std::str::FromStr for ObsFilter {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!("cannot read the filter `{s}`: expected COLUMN=VALUE[,VALUE...] or FILE.h5ad:COLUMN=VALUE (e.g. donor=1015)")
        };
        let (file, rest) = match s.split_once(".h5ad:") {
            Some((f, r)) => (Some(format!("{f}.h5ad")), r),
            None => (None, s),
        };
        let (column, values) = rest.split_once('=').ok_or_else(bad)?;
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if column.trim().is_empty() || values.is_empty() {
            return Err(bad());
        }
        Ok(ObsFilter {
            file,
            column: column.trim().to_string(),
            values,
        })
    }
}

#[derive(Clone, Debug)]
pub struct CorpusOptions {
    /// Longest sequence, `<cls>` included.
    pub max_len: usize,
    pub n_bins: usize,
    /// Cells read from disk at a time.
    pub block_cells: usize,
    /// Cells held for shuffling; 0 or 1 keeps file order.
    pub shuffle_buffer: usize,
    pub seed: u64,
    pub exclude: Vec<ObsFilter>,
    /// `var` column with gene symbols (default: the index).
    pub gene_col: Option<String>,
    /// Cells with fewer expressed vocabulary genes are skipped.
    pub min_genes: usize,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            max_len: 1200,
            n_bins: 51,
            block_cells: 1024,
            shuffle_buffer: 4096,
            seed: 0,
            exclude: Vec::new(),
            gene_col: None,
            min_genes: 10,
        }
    }
}

/// The `.h5ad` files named by `inputs`: files as given, folders expanded to the `.h5ad` files
/// directly inside them (sorted). Errors on a missing path or when nothing is found.
pub fn list_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| TokenizeError::File {
                    path: p.clone(),
                    message: format!("cannot list: {e}"),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "h5ad"))
                .collect();
            if found.is_empty() {
                return Err(TokenizeError::File {
                    path: p.clone(),
                    message: "holds no .h5ad files: point --data at a folder of .h5ad files or list the files".into(),
                });
            }
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(TokenizeError::File {
                path: p.clone(),
                message: "no such file or folder".into(),
            });
        }
    }
    if out.is_empty() {
        return Err(TokenizeError::Invalid(
            "no input files given: pass .h5ad files or a folder of them".into(),
        ));
    }
    Ok(out)
}

/// The union of the files' gene symbols (sorted) followed by `specials`: the vocabulary a model
/// pretrained from scratch on these files uses. Errors when a file shares no gene with the
/// others (mixing them would train two unrelated models in one).
pub fn union_vocab(
    files: &[PathBuf],
    gene_col: Option<&str>,
    specials: &[&str],
) -> Result<GeneVocab> {
    let mut per_file: Vec<HashSet<String>> = Vec::new();
    for f in files {
        let b = BackedAnnData::open(f, "X").map_err(|e| TokenizeError::File {
            path: f.clone(),
            message: e.to_string(),
        })?;
        let (_, symbols, _) = gene_symbols(&b.var, gene_col, f)?;
        per_file.push(symbols.into_iter().filter(|s| !s.is_empty()).collect());
    }
    if per_file.len() > 1 {
        for (i, genes) in per_file.iter().enumerate() {
            let shared = per_file
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && genes.iter().any(|g| other.contains(g)));
            if !shared {
                let others: Vec<String> = files
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, f)| f.display().to_string())
                    .collect();
                return Err(TokenizeError::File {
                    path: files[i].clone(),
                    message: format!("shares no gene symbol with the other input files ({}): different species or gene id types? Pretrain on them separately, or map genes to one naming with --gene-col", others.join(", ")),
                });
            }
        }
    }
    let all: BTreeSet<String> = per_file.into_iter().flatten().collect();
    let mut tokens: Vec<String> = all.into_iter().collect();
    for s in specials {
        if !tokens.iter().any(|t| t == s) {
            tokens.push(s.to_string());
        }
    }
    Ok(GeneVocab::from_tokens(tokens))
}

/// One input file as the corpus uses it.
#[derive(Clone, Debug)]
pub struct CorpusFile {
    pub path: PathBuf,
    pub n_cells: usize,
    /// Cells kept after the exclusion filters.
    pub n_kept: usize,
    pub genes: GeneMatch,
    keep: Vec<bool>,
}

/// Files, their gene matches and the cells kept, ready to iterate epoch by epoch.
pub struct Corpus {
    pub files: Vec<CorpusFile>,
    pub opts: CorpusOptions,
    cls_token: String,
    pad_token: String,
    pad_value: f32,
    vocab: GeneVocab,
}

impl Corpus {
    /// Open every file, match its genes to `vocab` and apply the exclusion filters. A filter
    /// naming a file that is not an input, or a column no scoped file has, is an error (a typo
    /// would otherwise leak test cells into pretraining).
    pub fn open(
        files: &[PathBuf],
        vocab: &GeneVocab,
        opts: CorpusOptions,
        cls_token: &str,
        pad_token: &str,
        pad_value: f32,
    ) -> Result<Self> {
        vocab.special(cls_token)?;
        vocab.special(pad_token)?;
        for f in &opts.exclude {
            if let Some(name) = &f.file {
                if !files
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| n == name.as_str()))
                {
                    return Err(TokenizeError::Invalid(format!(
                        "the filter {}:{}=… names a file that is not among the inputs",
                        name, f.column
                    )));
                }
            }
        }
        let mut used = vec![false; opts.exclude.len()];
        let mut out = Vec::new();
        for path in files {
            let b = BackedAnnData::open(path, "X").map_err(|e| TokenizeError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let (n_cells, _) = b.shape();
            let genes = match_genes(&b.var, vocab, opts.gene_col.as_deref(), path)?;
            let mut keep = vec![true; n_cells];
            let fname = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            for (k, f) in opts.exclude.iter().enumerate() {
                if f.file.as_deref().is_some_and(|n| n != fname) {
                    continue;
                }
                let Some(col) = b.obs.column(&f.column) else {
                    if f.file.is_some() {
                        return Err(TokenizeError::File {
                            path: path.clone(),
                            message: format!(
                                "obs has no column `{}` to filter on (columns: {})",
                                f.column,
                                b.obs.column_names().join(", ")
                            ),
                        });
                    }
                    continue;
                };
                used[k] = true;
                let values: HashSet<&str> = f.values.iter().map(|s| s.as_str()).collect();
                for (i, k) in keep.iter_mut().enumerate() {
                    if col.get_str(i).is_some_and(|v| values.contains(v.as_str())) {
                        *k = false;
                    }
                }
            }
            let n_kept = keep.iter().filter(|&&k| k).count();
            out.push(CorpusFile {
                path: path.clone(),
                n_cells,
                n_kept,
                genes,
                keep,
            });
        }
        if let Some(k) = used.iter().position(|u| !u) {
            let f = &opts.exclude[k];
            return Err(TokenizeError::Invalid(format!(
                "no input file has the obs column `{}` named by the filter {}={}",
                f.column,
                f.column,
                f.values.join(",")
            )));
        }
        if out.iter().all(|f| f.n_kept == 0) {
            return Err(TokenizeError::Invalid(
                "every cell is excluded by the filters: nothing to train on".into(),
            ));
        }
        Ok(Corpus {
            files: out,
            opts,
            cls_token: cls_token.into(),
            pad_token: pad_token.into(),
            pad_value,
            vocab: vocab.clone(),
        })
    }

    /// Cells an epoch can yield at most (kept cells; cells with too few genes are dropped later).
    pub fn n_kept(&self) -> usize {
        self.files.iter().map(|f| f.n_kept).sum()
    }

    /// The cells of epoch `epoch`, shuffled. Each item is `(file index, row, tokens)`.
    pub fn epoch(&self, epoch: u64) -> EpochIter<'_> {
        let seed = self
            .opts
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(epoch);
        let mut rng = Mt64::new(seed);
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        EpochIter {
            corpus: self,
            epoch,
            order,
            next_file: 0,
            current: None,
            pending: Vec::new(),
            buffer: Vec::new(),
            rng,
            done_reading: false,
        }
    }
}

struct OpenFile {
    index: usize,
    backed: BackedAnnData,
    tokenizer: Tokenizer,
    next_row: usize,
}

/// Iterator over one epoch's tokenised cells; see [`Corpus::epoch`].
pub struct EpochIter<'a> {
    corpus: &'a Corpus,
    epoch: u64,
    order: Vec<usize>,
    next_file: usize,
    current: Option<OpenFile>,
    /// Cells of the last block read, not yet in the buffer.
    pending: Vec<(usize, usize, TokenizedCell)>,
    buffer: Vec<(usize, usize, TokenizedCell)>,
    rng: Mt64,
    done_reading: bool,
}

impl EpochIter<'_> {
    /// Read the next block of the current file (opening the next file when one is exhausted).
    /// Returns `false` when every file is read.
    fn read_block(&mut self) -> Result<bool> {
        loop {
            if self.current.is_none() {
                if self.next_file >= self.order.len() {
                    return Ok(false);
                }
                let index = self.order[self.next_file];
                self.next_file += 1;
                let f = &self.corpus.files[index];
                if f.n_kept == 0 {
                    continue;
                }
                let backed =
                    BackedAnnData::open(&f.path, "X").map_err(|e| TokenizeError::File {
                        path: f.path.clone(),
                        message: e.to_string(),
                    })?;
                let o = &self.corpus.opts;
                let mut cfg = TokenizerConfig::embedding(o.max_len, o.n_bins, 0);
                cfg.pad_value = self.corpus.pad_value;
                cfg.cls_value = self.corpus.pad_value;
                // a new gene sample and tie-break per epoch, reproducible from the seed
                cfg.seed = o
                    .seed
                    .wrapping_add(self.epoch.wrapping_mul(0x2545_f491_4f6c_dd1d))
                    .wrapping_add(index as u64);
                let tokenizer = Tokenizer::new(
                    cfg,
                    &f.genes,
                    &self.corpus.vocab,
                    &self.corpus.cls_token,
                    &self.corpus.pad_token,
                )?;
                self.current = Some(OpenFile {
                    index,
                    backed,
                    tokenizer,
                    next_row: 0,
                });
            }
            let cur = self.current.as_mut().expect("set above");
            let f = &self.corpus.files[cur.index];
            if cur.next_row >= f.n_cells {
                self.current = None;
                continue;
            }
            let start = cur.next_row;
            let end = (start + self.corpus.opts.block_cells.max(1)).min(f.n_cells);
            cur.next_row = end;
            let block = cur
                .backed
                .rows(start, end)
                .map_err(|e| TokenizeError::File {
                    path: f.path.clone(),
                    message: e.to_string(),
                })?;
            let vals = block.data.to_f32();
            for r in 0..block.nrows {
                let row = start + r;
                if !f.keep[row] {
                    continue;
                }
                let span = block.range(r);
                let cell = cur
                    .tokenizer
                    .tokenize_row(&block.indices[span.clone()], &vals[span])?;
                if cell.len() - 1 < self.corpus.opts.min_genes {
                    continue;
                }
                self.pending.push((cur.index, row, cell));
            }
            return Ok(true);
        }
    }
}

impl Iterator for EpochIter<'_> {
    type Item = Result<(usize, usize, TokenizedCell)>;

    fn next(&mut self) -> Option<Self::Item> {
        let cap = self.corpus.opts.shuffle_buffer.max(1);
        // fill the buffer: the pending cells of the last block first, then new blocks
        while self.buffer.len() < cap {
            if let Some(c) = self.pending.pop() {
                self.buffer.push(c);
                continue;
            }
            if self.done_reading {
                break;
            }
            match self.read_block() {
                Ok(true) => self.pending.reverse(), // pop() then yields file order
                Ok(false) => self.done_reading = true,
                Err(e) => {
                    self.done_reading = true;
                    return Some(Err(e));
                }
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let i = if cap == 1 {
            0
        } else {
            (self.rng.next_u64() % self.buffer.len() as u64) as usize
        };
        Some(Ok(self.buffer.swap_remove(i)))
    }
}

/// Per-file cell counts, for a summary line: `name: kept/total`.
pub fn describe(corpus: &Corpus) -> Vec<(String, usize, usize, String)> {
    corpus
        .files
        .iter()
        .map(|f| {
            (
                f.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                f.n_kept,
                f.n_cells,
                f.genes.summary(),
            )
        })
        .collect()
}

/// Positions to mask in one cell for masked-value pretraining (scGPT's collator `_mask`): each
/// position independently with probability `ratio`, never the first (`<cls>`) and never one
/// whose value is `pad_value` (padding). Returns the masked values (`mask_value` where masked)
/// and the mask.
pub fn mask_values(
    values: &[f32],
    ratio: f64,
    pad_value: f32,
    mask_value: f32,
    rng: &mut Mt64,
) -> (Vec<f32>, Vec<bool>) {
    let mut out = values.to_vec();
    let mut mask = vec![false; values.len()];
    for i in 1..values.len() {
        if values[i] == pad_value {
            continue;
        }
        // 53 random bits → uniform [0, 1)
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if u < ratio {
            mask[i] = true;
            out[i] = mask_value;
        }
    }
    (out, mask)
}
