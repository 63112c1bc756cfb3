//! Geneformer's rank-value tokenisation (`TranscriptomeTokenizer`; docs/models/geneformer.md §1-2):
//! a cell's raw counts divided by its total (`n_counts`, over all genes), scaled to 10,000 and
//! divided by each gene's non-zero median across the pretraining corpus; the genes with a
//! non-zero value sorted by it, highest first, are the tokens (no values). V1: the first 2,048,
//! no special tokens; V2: `<cls>`, the first 4,094, `<eos>`, with alias Ensembl ids collapsed
//! through the mapping dictionary (their counts summed).
//!
//! Ties in the normalised value are broken by column order (numpy's `argsort` is not stable, so
//! the reference's order of tied genes is implementation-defined).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use scllm_io::{AnnData, DataFrame};

use crate::prepare::{check_match, check_values, file_err, input_matrix, restrict_to};
use crate::vocab::{gencode_id_to_name, looks_ensembl, strip_version, GeneMatch};
use crate::{PrepOptions, Prepared, Result, RowTokenizer, TokenizeError, TokenizedCell};
use scllm_pickle::{read_pickle, DictKey, PyValue};

/// Which dictionary series a model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Series {
    /// Genecorpus-30M: no special tokens, 2,048 genes.
    V1,
    /// Genecorpus-104M: `<cls>` ... `<eos>`, 4,096 tokens, alias ids collapsed.
    V2,
}

impl Series {
    /// `TranscriptomeTokenizer`'s `model_input_size`.
    pub fn model_input_size(self) -> usize {
        match self {
            Series::V1 => 2048,
            Series::V2 => 4096,
        }
    }
}

/// Geneformer's dictionaries: token ids, gene medians, and (V2) the alias mapping and names.
#[derive(Clone, Debug)]
pub struct Dictionaries {
    pub series: Series,
    /// Ensembl id → token id (specials under their names, `<pad>` etc.).
    pub token_ids: HashMap<String, u32>,
    /// Token id → name, `None` for unused ids.
    pub tokens: Vec<Option<String>>,
    /// Ensembl id → non-zero median across the corpus.
    pub medians: HashMap<String, f64>,
    /// V2's `ensembl_mapping_dict`: an id → the id its counts are summed into.
    pub mapping: Option<HashMap<String, String>>,
    /// Gene symbol → Ensembl id (`gene_name_id_dict`), for files named by symbol.
    pub names: Option<HashMap<String, String>>,
    pub pad_id: u32,
    pub cls_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Where they came from (files, or the bundled V1 set).
    pub source: String,
}

/// The files a folder may hold, per series (Geneformer's own names).
const V2_NAMES: [(&str, &str); 2] = [("gc104M", "V2"), ("gc95M", "V2")];

static V1_TOKENS_GZ: &[u8] =
    include_bytes!("../../../resources/geneformer_v1/token_dictionary.pkl.gz");
static V1_MEDIANS_GZ: &[u8] =
    include_bytes!("../../../resources/geneformer_v1/gene_median_dictionary.pkl.gz");

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("bundled dictionary is valid gzip");
    out
}

/// A dictionary pickle (plain values and numpy scalars only; any class is refused by name).
fn read_pickle_file(path: &Path) -> Result<PyValue> {
    scllm_pickle::read_pickle_file(path, &[]).map_err(|e| TokenizeError::File {
        path: path.to_path_buf(),
        message: e.message,
    })
}

fn dict_of(v: PyValue, what: &Path) -> Result<Vec<(String, PyValue)>> {
    match v {
        PyValue::Dict(d) => Ok(d
            .into_iter()
            .filter_map(|(k, v)| match k {
                DictKey::Str(s) => Some((s, v)),
                DictKey::Int(_) => None,
            })
            .collect()),
        other => Err(file_err(
            what,
            format!("holds a {other:?} where a dictionary was expected"),
        )),
    }
}

/// The dictionary files found in (or given for) a model folder.
#[derive(Clone, Debug, Default)]
pub struct DictionaryFiles {
    pub token_dictionary: Option<PathBuf>,
    pub gene_median_dictionary: Option<PathBuf>,
    pub ensembl_mapping_dict: Option<PathBuf>,
    pub gene_name_id_dict: Option<PathBuf>,
}

impl DictionaryFiles {
    /// Geneformer's files in `dir`: the V2 set (`*_gc104M.pkl`, `*_gc95M.pkl`) or V1's
    /// `token_dictionary.pkl`, `gene_median_dictionary.pkl` (`gene_name_id_dict.pkl` too).
    pub fn find(dir: &Path) -> Self {
        let has = |n: &str| {
            let p = dir.join(n);
            p.is_file().then_some(p)
        };
        for (tag, _) in V2_NAMES {
            if let Some(t) = has(&format!("token_dictionary_{tag}.pkl")) {
                return DictionaryFiles {
                    token_dictionary: Some(t),
                    gene_median_dictionary: has(&format!("gene_median_dictionary_{tag}.pkl")),
                    ensembl_mapping_dict: has(&format!("ensembl_mapping_dict_{tag}.pkl")),
                    gene_name_id_dict: has(&format!("gene_name_id_dict_{tag}.pkl")),
                };
            }
        }
        DictionaryFiles {
            token_dictionary: has("token_dictionary.pkl"),
            gene_median_dictionary: has("gene_median_dictionary.pkl"),
            ensembl_mapping_dict: has("ensembl_mapping_dict.pkl"),
            gene_name_id_dict: has("gene_name_id_dict.pkl"),
        }
    }
}

impl Dictionaries {
    /// The dictionaries of `files`; the bundled V1 pair where neither token nor median file is
    /// given. One without the other is an error naming the missing file.
    pub fn load(files: &DictionaryFiles, folder: &Path) -> Result<Self> {
        let (token_pickle, median_pickle, source) =
            match (&files.token_dictionary, &files.gene_median_dictionary) {
                (None, None) => (
                    read_pickle(&gunzip(V1_TOKENS_GZ)).expect("bundled pickle"),
                    read_pickle(&gunzip(V1_MEDIANS_GZ)).expect("bundled pickle"),
                    "the V1 dictionaries bundled with scllm (Genecorpus-30M)".to_string(),
                ),
                (Some(t), Some(m)) => (
                    read_pickle_file(t)?,
                    read_pickle_file(m)?,
                    format!("{} and {}", t.display(), m.display()),
                ),
                (Some(t), None) => {
                    return Err(file_err(
                        folder,
                        format!(
                            "has {} but no gene median dictionary next to it (gene_median_dictionary{}.pkl: each gene's median expression, which rank-value tokenisation divides by)",
                            t.display(),
                            suffix(t)
                        ),
                    ))
                }
                (None, Some(m)) => {
                    return Err(file_err(
                        folder,
                        format!(
                            "has {} but no token dictionary next to it (token_dictionary{}.pkl: Ensembl id → token id)",
                            m.display(),
                            suffix(m)
                        ),
                    ))
                }
            };
        let tpath = files
            .token_dictionary
            .clone()
            .unwrap_or_else(|| PathBuf::from("token_dictionary.pkl"));
        let mpath = files
            .gene_median_dictionary
            .clone()
            .unwrap_or_else(|| PathBuf::from("gene_median_dictionary.pkl"));
        let mut token_ids = HashMap::new();
        let mut max_id = 0u32;
        for (k, v) in dict_of(token_pickle, &tpath)? {
            let id = v
                .as_i64()
                .filter(|&i| (0..=u32::MAX as i64).contains(&i))
                .ok_or_else(|| file_err(&tpath, format!("token `{k}` has no integer id ({v:?})")))?
                as u32;
            max_id = max_id.max(id);
            token_ids.insert(k, id);
        }
        let mut tokens = vec![None; max_id as usize + 1];
        for (k, &id) in &token_ids {
            tokens[id as usize] = Some(k.clone());
        }
        let mut medians = HashMap::new();
        for (k, v) in dict_of(median_pickle, &mpath)? {
            let m = v
                .as_f64()
                .filter(|m| m.is_finite() && *m > 0.0)
                .ok_or_else(|| {
                    file_err(&mpath, format!("gene `{k}` has no positive median ({v:?})"))
                })?;
            medians.insert(k, m);
        }
        let string_map = |p: &Option<PathBuf>| -> Result<Option<HashMap<String, String>>> {
            let Some(p) = p else { return Ok(None) };
            let mut m = HashMap::new();
            for (k, v) in dict_of(read_pickle_file(p)?, p)? {
                if let PyValue::Str(s) = v {
                    m.insert(k, s);
                }
            }
            Ok(Some(m))
        };
        let pad_id = *token_ids.get("<pad>").ok_or_else(|| {
            file_err(
                &tpath,
                "has no <pad> token: not a Geneformer token dictionary",
            )
        })?;
        let cls_id = token_ids.get("<cls>").copied();
        let eos_id = token_ids.get("<eos>").copied();
        let series = if cls_id.is_some() && eos_id.is_some() {
            Series::V2
        } else {
            Series::V1
        };
        Ok(Dictionaries {
            series,
            token_ids,
            tokens,
            medians,
            mapping: string_map(&files.ensembl_mapping_dict)?,
            names: string_map(&files.gene_name_id_dict)?,
            pad_id,
            cls_id,
            eos_id,
            source,
        })
    }

    /// Token ids span `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).and_then(|t| t.as_deref())
    }

    /// The Ensembl id each of a file's genes is counted under: `var[gene_col]`, else
    /// `var['ensembl_id']`, else the index; names that are not Ensembl ids are translated
    /// from symbols (the dictionaries' `gene_name_id_dict`, else the bundled GENCODE v44
    /// table). Returns the ids (`None`: unknown) and where they came from.
    fn ensembl_ids(
        &self,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> Result<(Vec<Option<String>>, String)> {
        let (names, mut key): (Vec<String>, String) = match gene_col {
            Some(c) => {
                let col = var.column(c).ok_or_else(|| {
                    file_err(
                        file,
                        format!(
                            "var has no column `{c}` (columns: {})",
                            var.column_names().join(", ")
                        ),
                    )
                })?;
                let v = (0..col.len())
                    .map(|i| col.get_str(i).unwrap_or_default())
                    .collect();
                (v, format!("var['{c}']"))
            }
            None => match var.column("ensembl_id") {
                Some(col) => (
                    (0..col.len())
                        .map(|i| col.get_str(i).unwrap_or_default())
                        .collect(),
                    "var['ensembl_id']".to_string(),
                ),
                None => (var.index.clone(), "var.index".to_string()),
            },
        };
        let ensembl = names.iter().filter(|n| looks_ensembl(n)).count() * 2 > names.len();
        if ensembl {
            return Ok((
                names
                    .iter()
                    .map(|n| Some(strip_version(n).to_string()))
                    .collect(),
                key,
            ));
        }
        // symbols → Ensembl ids; a symbol with several ids takes one the dictionary knows
        let by_name: HashMap<String, String> = match &self.names {
            Some(m) => {
                key.push_str(" via gene_name_id_dict");
                m.clone()
            }
            None => {
                key.push_str(" via GENCODE v44 symbol→Ensembl");
                let mut m: HashMap<String, String> = HashMap::new();
                let mut ids: Vec<(String, String)> = gencode_id_to_name().into_iter().collect();
                ids.sort();
                for (id, name) in ids {
                    let known = self.token_ids.contains_key(&id);
                    match m.get(&name) {
                        Some(prev) if self.token_ids.contains_key(prev) || !known => {}
                        _ => {
                            m.insert(name, id);
                        }
                    }
                }
                m
            }
        };
        Ok((names.iter().map(|n| by_name.get(n).cloned()).collect(), key))
    }

    /// The token of each of a file's genes (V2: after the alias mapping), `None` when the
    /// dictionaries lack the gene or its median. Errors when nothing matches, saying how to fix
    /// it.
    pub fn match_genes(
        &self,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> Result<GeneMatch> {
        let (ids, key) = self.ensembl_ids(var, gene_col, file)?;
        let token_of = |id: &str| -> Option<u32> {
            let id = match &self.mapping {
                Some(m) => m.get(id).map(|s| s.as_str())?,
                None => id,
            };
            self.medians.contains_key(id).then_some(())?;
            self.token_ids.get(id).copied()
        };
        let ids: Vec<Option<u32>> = ids
            .iter()
            .map(|i| i.as_deref().and_then(token_of))
            .collect();
        let n_matched = ids.iter().filter(|i| i.is_some()).count();
        let unmatched_examples = crate::vocab::unmatched_examples(&var.index, &ids);
        if n_matched == 0 {
            return Err(file_err(
                file,
                format!(
                    "none of its {} genes ({key}, e.g. {}) are in the Geneformer token dictionary ({}). \
                     Geneformer needs Ensembl gene ids (var['ensembl_id'], or an Ensembl index) or human \
                     gene symbols; name the column with --gene-col.",
                    ids.len(),
                    unmatched_examples.join(", "),
                    self.source
                ),
            ));
        }
        Ok(GeneMatch {
            ids,
            n_matched,
            n_genes: var.index.len(),
            key,
            unmatched_examples,
        })
    }

    /// The tokenizer of cells whose genes matched as `genes`, at most `max_len` tokens (the
    /// series' model input size when larger or `None`).
    pub fn tokenizer(&self, genes: &GeneMatch, max_len: Option<usize>) -> Result<Tokenizer> {
        let size = self.series.model_input_size();
        let max_len = max_len.map_or(size, |m| m.min(size));
        let specials = match self.series {
            Series::V1 => 0,
            Series::V2 => 2,
        };
        if max_len <= specials {
            return Err(TokenizeError::Invalid(format!(
                "max_len must be more than {specials}, got {max_len}"
            )));
        }
        let median_of: HashMap<u32, f64> = self
            .token_ids
            .iter()
            .filter_map(|(k, &id)| self.medians.get(k).map(|&m| (id, m)))
            .collect();
        // match_genes keeps only tokens with a median, so every matched column has one
        let col_median = genes
            .ids
            .iter()
            .map(|t| {
                t.and_then(|t| median_of.get(&t).copied())
                    .unwrap_or(f64::NAN)
            })
            .collect();
        Ok(Tokenizer {
            col_token: genes.ids.clone(),
            col_median,
            max_genes: max_len - specials,
            cls: self.cls_id.filter(|_| self.series == Series::V2),
            eos: self.eos_id.filter(|_| self.series == Series::V2),
            pad_id: self.pad_id,
        })
    }

    /// Tokenise every cell of `adata` (its raw counts; `obs['n_counts']` as each cell's total
    /// where present, else the sum of its stored counts).
    pub fn prepare_cells(
        &self,
        adata: &AnnData,
        file: &Path,
        opts: &PrepOptions,
    ) -> Result<Prepared> {
        use rayon::prelude::*;
        let m = input_matrix(adata, file, opts)?;
        let mut genes = self.match_genes(&adata.var, opts.gene_col.as_deref(), file)?;
        check_match(&genes, file, opts)?;
        if let Some(only) = &opts.only_genes {
            restrict_to(&mut genes, only, |g| self.token_ids.get(g).copied(), file)?;
        }
        let kind = check_values(m, file, opts)?;
        if kind != scllm_pp::ValueKind::Counts {
            return Err(file_err(
                file,
                format!(
                    "{} holds {}, but Geneformer ranks raw counts (normalised by each cell's total \
                     and the gene's corpus median): use the counts layer (--layer counts) or the raw counts",
                    opts.layer.as_deref().unwrap_or("X"),
                    kind.as_str()
                ),
            ));
        }
        let x = scllm_pp::to_csr_f32(m);
        let totals = cell_totals(adata, &x);
        let tok = self.tokenizer(&genes, Some(opts.max_len))?;
        let vals = x.data.to_f32();
        let cells = (0..x.nrows)
            .into_par_iter()
            .map(|i| {
                let r = x.range(i);
                tok.tokenize_row(&x.indices[r.clone()], &vals[r], totals.values[i])
                    .map_err(|e| {
                        file_err(file, format!("cell {} (`{}`): {e}", i, adata.obs.index[i]))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Prepared {
            cells,
            gene_match: genes,
            value_kind: kind,
            steps: format!(
                "rank-value tokens, {} cell totals, {} series",
                totals.source,
                match self.series {
                    Series::V1 => "V1",
                    Series::V2 => "V2",
                }
            ),
            pad_id: tok.pad_id,
            pad_value: 0.0,
        })
    }
}

fn suffix(p: &Path) -> String {
    let s = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    V2_NAMES
        .iter()
        .find(|(t, _)| s.ends_with(t))
        .map(|(t, _)| format!("_{t}"))
        .unwrap_or_default()
}

/// Each cell's total count over all genes and where it came from.
pub struct CellTotals {
    pub values: Vec<f64>,
    /// `obs['n_counts']` or "summed".
    pub source: &'static str,
}

/// `obs['n_counts']` when the file has it (Geneformer's input), else each row's sum.
pub fn cell_totals(adata: &AnnData, x: &scllm_io::Compressed) -> CellTotals {
    if let Some(values) = crate::prepare::obs_numbers(&adata.obs, "n_counts") {
        return CellTotals {
            values,
            source: "obs['n_counts']",
        };
    }
    let vals = x.data.to_f64();
    CellTotals {
        values: (0..x.nrows)
            .map(|i| vals[x.range(i)].iter().sum())
            .collect(),
        source: "summed",
    }
}

/// Rank-value tokens of one cell at a time.
pub struct Tokenizer {
    /// Token per column of the data (after alias mapping), and its gene's median.
    col_token: Vec<Option<u32>>,
    col_median: Vec<f64>,
    /// Genes kept, highest-ranked first.
    max_genes: usize,
    cls: Option<u32>,
    eos: Option<u32>,
    pad_id: u32,
}

impl RowTokenizer for Tokenizer {
    fn tokenize_row(&self, cols: &[u32], vals: &[f32], total: f64) -> Result<TokenizedCell> {
        // counts per token, summed over columns collapsed onto one id, in first-column order
        let mut order: Vec<(u32, f64)> = Vec::new();
        let mut counts: HashMap<u32, f64> = HashMap::new();
        for (&j, &v) in cols.iter().zip(vals) {
            let Some(t) = self.col_token.get(j as usize).copied().flatten() else {
                continue;
            };
            match counts.get_mut(&t) {
                Some(c) => *c += v as f64,
                None => {
                    counts.insert(t, v as f64);
                    order.push((t, self.col_median[j as usize]));
                }
            }
        }
        // x / n_counts * 10,000 / median, as the reference computes it (float64)
        let mut ranked: Vec<(f64, u32)> = order
            .iter()
            .map(|&(t, median)| (counts[&t] / total * 10_000.0 / median, t))
            .filter(|(x, _)| *x != 0.0 && x.is_finite())
            .collect();
        if ranked.is_empty() {
            // the reference drops such cells (V2) or fails on them; a row of output per input
            // row is kept here, so the user decides
            return Err(TokenizeError::Invalid(
                "the cell has no gene of the Geneformer vocabulary with a non-zero count, so it \
                 has no tokens; remove such cells first (`scllm check` counts them)"
                    .into(),
            ));
        }
        // highest first; a stable sort keeps column order among ties
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.truncate(self.max_genes);
        let mut genes = Vec::with_capacity(ranked.len() + 2);
        genes.extend(self.cls);
        genes.extend(ranked.iter().map(|(_, t)| *t));
        genes.extend(self.eos);
        Ok(TokenizedCell {
            values: vec![0.0; genes.len()],
            genes,
        })
    }
    fn pad_id(&self) -> u32 {
        self.pad_id
    }
    fn pad_value(&self) -> f32 {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dicts(series: Series) -> Dictionaries {
        let mut token_ids: HashMap<String, u32> = [("<pad>", 0), ("<mask>", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if series == Series::V2 {
            token_ids.insert("<cls>".into(), 2);
            token_ids.insert("<eos>".into(), 3);
        }
        for (i, g) in ["ENSG1", "ENSG2", "ENSG3", "ENSG4"].iter().enumerate() {
            token_ids.insert(g.to_string(), 4 + i as u32);
        }
        let medians = [
            ("ENSG1", 1.0),
            ("ENSG2", 2.0),
            ("ENSG3", 0.5),
            ("ENSG4", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut tokens = vec![None; 8];
        for (k, &v) in &token_ids {
            tokens[v as usize] = Some(k.clone());
        }
        Dictionaries {
            series,
            token_ids,
            tokens,
            medians,
            mapping: None,
            names: None,
            pad_id: 0,
            cls_id: (series == Series::V2).then_some(2),
            eos_id: (series == Series::V2).then_some(3),
            source: "test".into(),
        }
    }

    fn genes(ids: Vec<Option<u32>>) -> GeneMatch {
        GeneMatch {
            n_matched: ids.iter().flatten().count(),
            n_genes: ids.len(),
            ids,
            key: "test".into(),
            unmatched_examples: vec![],
        }
    }

    #[test]
    fn ranks_by_count_over_median_highest_first() {
        let d = dicts(Series::V1);
        let t = d
            .tokenizer(&genes(vec![Some(4), Some(5), Some(6), None, Some(7)]), None)
            .unwrap();
        // counts 2, 2, 1, (unmatched 9), 0: values 2/1, 2/2, 1/0.5 → ENSG1 = ENSG3 = 2 (tie,
        // column order), ENSG2 1; the zero count is dropped
        let c = t
            .tokenize_row(&[0, 1, 2, 3, 4], &[2.0, 2.0, 1.0, 9.0, 0.0], 100.0)
            .unwrap();
        assert_eq!(c.genes, vec![4, 6, 5]);
        assert!(c.values.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn v2_wraps_in_cls_and_eos_and_truncates_between() {
        let d = dicts(Series::V2);
        let t = d
            .tokenizer(&genes(vec![Some(4), Some(5), Some(6)]), Some(4))
            .unwrap();
        let c = t.tokenize_row(&[0, 1, 2], &[5.0, 1.0, 3.0], 10.0).unwrap();
        // 5/1, 1/2, 3/0.5 → ENSG3, ENSG1 kept (4 - 2 specials), ENSG2 cut
        assert_eq!(c.genes, vec![2, 6, 4, 3]);
    }

    #[test]
    fn collapsed_columns_sum_their_counts() {
        let d = dicts(Series::V2);
        // columns 0 and 2 are aliases of one gene (token 5, median 2)
        let t = d
            .tokenizer(&genes(vec![Some(5), Some(4), Some(5)]), None)
            .unwrap();
        let c = t.tokenize_row(&[0, 1, 2], &[1.0, 1.5, 3.0], 10.0).unwrap();
        // token 5: (1 + 3) / 2 = 2 > token 4: 1.5
        assert_eq!(c.genes, vec![2, 5, 4, 3]);
    }

    #[test]
    fn bundled_v1_dictionaries_read() {
        let d = Dictionaries::load(&DictionaryFiles::default(), Path::new(".")).unwrap();
        assert_eq!(d.series, Series::V1);
        assert_eq!(d.vocab_size(), 25_426);
        assert_eq!(d.token_ids["<pad>"], 0);
        assert_eq!(d.token_ids["<mask>"], 1);
        assert_eq!(d.medians.len(), 25_424);
        // ids run over the sorted Ensembl ids
        assert_eq!(d.token(2), Some("ENSG00000000003"));
    }
}
