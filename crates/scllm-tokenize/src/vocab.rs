//! `GeneVocab`: scGPT's `vocab.json` (`{token: id}`), and matching a dataset's genes to it by
//! symbol or, for Ensembl ids, through the GENCODE id → name map bundled with scllm.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use scllm_io::{Column, DataFrame};

use crate::{Result, TokenizeError};

/// A gene vocabulary: token strings with their ids, as scGPT's `GeneVocab` holds them (entries
/// inserted in id order, so ids are positions).
#[derive(Clone, Debug)]
pub struct GeneVocab {
    tokens: Vec<String>,
    index: HashMap<String, u32>,
    pub source: Option<PathBuf>,
}

impl GeneVocab {
    /// Read scGPT's `vocab.json`. Ids must be unique and run 0..n without gaps (torchtext's rule).
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TokenizeError::File {
            path: path.to_path_buf(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "vocabulary file not found (a scGPT model folder holds vocab.json next to args.json)".into()
            } else {
                e.to_string()
            },
        })?;
        let mut v = Self::from_json_str(&text).map_err(|m| TokenizeError::File {
            path: path.to_path_buf(),
            message: m,
        })?;
        v.source = Some(path.to_path_buf());
        Ok(v)
    }

    pub fn from_json_str(text: &str) -> std::result::Result<Self, String> {
        let map: HashMap<String, i64> = serde_json::from_str(text)
            .map_err(|e| format!("not a {{\"token\": id}} JSON object: {e}"))?;
        let mut pairs: Vec<(i64, String)> = map.into_iter().map(|(k, v)| (v, k)).collect();
        pairs.sort();
        for (pos, (id, tok)) in pairs.iter().enumerate() {
            if *id != pos as i64 {
                return Err(format!(
                    "token ids must run 0..{} without gaps or repeats; `{tok}` has id {id} at position {pos}",
                    pairs.len()
                ));
            }
        }
        Ok(Self::from_tokens(
            pairs.into_iter().map(|(_, t)| t).collect(),
        ))
    }

    pub fn from_tokens(tokens: Vec<String>) -> Self {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        GeneVocab {
            tokens,
            index,
            source: None,
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    pub fn get(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
    /// Tokens of the form `<...>` found in the file (scGPT's specials: `<pad>`, `<cls>`, `<eoc>`).
    pub fn specials(&self) -> Vec<(&str, u32)> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.starts_with('<') && t.ends_with('>'))
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect()
    }
    /// The id of a special token the model needs, or an error naming the file.
    pub fn special(&self, token: &str) -> Result<u32> {
        self.get(token).ok_or_else(|| TokenizeError::File {
            path: self.source.clone().unwrap_or_else(|| PathBuf::from("<vocab>")),
            message: format!(
                "has no `{token}` token (specials present: {}). scGPT appends <pad>, <cls>, <eoc> after the genes; use the vocab.json saved with the model",
                {
                    let s: Vec<String> = self.specials().iter().map(|(t, i)| format!("{t}={i}")).collect();
                    if s.is_empty() { "none".to_string() } else { s.join(", ") }
                }
            ),
        })
    }
    /// Append tokens that are missing, in order (what scGPT's pretraining did with its specials).
    pub fn append_missing(&mut self, tokens: &[&str]) {
        for t in tokens {
            if !self.index.contains_key(*t) {
                self.index.insert(t.to_string(), self.tokens.len() as u32);
                self.tokens.push(t.to_string());
            }
        }
    }
    pub fn to_json(&self) -> String {
        let m: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), serde_json::Value::from(i)))
            .collect();
        serde_json::to_string_pretty(&m).expect("serialisable")
    }
}

static GENCODE_GZ: &[u8] = include_bytes!("../../../resources/GENCODEv44_Gene_id2name.csv.gz");

/// Ensembl gene id (version suffix ignored) → gene symbol, from the bundled GENCODE v44 table.
pub fn gencode_id_to_name() -> HashMap<String, String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(GENCODE_GZ)
        .read_to_string(&mut s)
        .expect("bundled GENCODE table is valid gzip");
    s.lines()
        .filter_map(|l| l.split_once(','))
        .map(|(id, name)| (strip_version(id).to_string(), name.trim().to_string()))
        .collect()
}

/// An Ensembl id without its version suffix (`ENSG00000141510.17` → `ENSG00000141510`).
pub fn strip_version(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// Whether a gene name is a human or mouse Ensembl gene id.
pub fn looks_ensembl(name: &str) -> bool {
    name.starts_with("ENSG") || name.starts_with("ENSMUSG")
}

/// How each of a dataset's genes maps onto the vocabulary.
#[derive(Clone, Debug)]
pub struct GeneMatch {
    /// Vocabulary id per gene (column of X), `None` when absent.
    pub ids: Vec<Option<u32>>,
    pub n_matched: usize,
    pub n_genes: usize,
    /// Where names came from: `var.index`, `var['col']`, or `... via GENCODE`.
    pub key: String,
    pub unmatched_examples: Vec<String>,
}

/// The first five of `names` whose id is `None`: what a gene-match error or report shows.
pub fn unmatched_examples<S: AsRef<str>>(names: &[S], ids: &[Option<u32>]) -> Vec<String> {
    names
        .iter()
        .zip(ids)
        .filter(|(_, i)| i.is_none())
        .take(5)
        .map(|(n, _)| n.as_ref().to_string())
        .collect()
}

impl GeneMatch {
    /// Columns of X whose genes are in the vocabulary, in column order.
    pub fn matched_columns(&self) -> Vec<usize> {
        (0..self.ids.len())
            .filter(|&j| self.ids[j].is_some())
            .collect()
    }
    pub fn summary(&self) -> String {
        format!(
            "{} of {} genes matched the vocabulary (by {})",
            self.n_matched, self.n_genes, self.key
        )
    }
}

/// The gene symbols of a dataset's columns: `var[gene_col]` or the index, Ensembl ids (ENSG…)
/// translated through GENCODE v44 when most names are Ensembl ids. Returns the names as stored,
/// the symbols, and where they came from.
pub fn gene_symbols(
    var: &DataFrame,
    gene_col: Option<&str>,
    file: &Path,
) -> Result<(Vec<String>, Vec<String>, String)> {
    let (names, mut key): (Vec<String>, String) = match gene_col {
        None => (var.index.clone(), "var.index".into()),
        Some(c) => {
            let col = var.column(c).ok_or_else(|| TokenizeError::File {
                path: file.to_path_buf(),
                message: format!(
                    "var has no column `{c}` (columns: {})",
                    var.column_names().join(", ")
                ),
            })?;
            let v: Vec<String> = (0..col.len())
                .map(|i| col.get_str(i).unwrap_or_default())
                .collect();
            (v, format!("var['{c}']"))
        }
    };
    let ensembl = names.iter().filter(|n| looks_ensembl(n)).count() * 2 > names.len();
    let symbols: Vec<String> = if ensembl {
        let map = gencode_id_to_name();
        key.push_str(" via GENCODE v44 Ensembl→symbol");
        names
            .iter()
            .map(|n| {
                map.get(strip_version(n))
                    .cloned()
                    .unwrap_or_else(|| n.clone())
            })
            .collect()
    } else {
        names.clone()
    };
    Ok((names, symbols, key))
}

/// Match genes to the vocabulary. `gene_col`: a `var` column holding symbols (default: the index).
/// Ensembl ids (ENSG…) are translated to symbols through GENCODE first. Errors when nothing
/// matches, and says how to fix it.
pub fn match_genes(
    var: &DataFrame,
    vocab: &GeneVocab,
    gene_col: Option<&str>,
    file: &Path,
) -> Result<GeneMatch> {
    let (names, symbols, key) = gene_symbols(var, gene_col, file)?;
    let ids: Vec<Option<u32>> = symbols.iter().map(|s| vocab.get(s)).collect();
    let n_matched = ids.iter().filter(|i| i.is_some()).count();
    let unmatched_examples = unmatched_examples(&names, &ids);
    if n_matched == 0 {
        let hint = match (gene_col, var.column("gene_symbol").is_some() || var.column("gene_name").is_some()) {
            (None, true) => " The var table has a symbol column: pass --gene-col gene_symbol (or gene_name).",
            _ => " Genes must be HGNC symbols (e.g. CD3E) or Ensembl ids (ENSG…); pick the right column with --gene-col.",
        };
        return Err(TokenizeError::File {
            path: file.to_path_buf(),
            message: format!(
                "none of its {} genes ({}, e.g. {}) are in the vocabulary{}.{hint}",
                names.len(),
                key,
                unmatched_examples.join(", "),
                vocab
                    .source
                    .as_ref()
                    .map(|p| format!(" {}", p.display()))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(GeneMatch {
        ids,
        n_matched,
        n_genes: names.len(),
        key,
        unmatched_examples,
    })
}

/// `scllm preprocess --vocab FILE`: the genes of a file matched to a scGPT `vocab.json`, for
/// the preprocessing recipe (which cannot depend on this crate: it is the other way round).
pub struct VocabJson;

impl scllm_pp::recipe::VocabMatcher for VocabJson {
    fn match_vocab(
        &self,
        vocab: &Path,
        var: &DataFrame,
        gene_col: Option<&str>,
        file: &Path,
    ) -> std::result::Result<scllm_pp::recipe::VocabMatch, Box<dyn std::error::Error + Send + Sync>>
    {
        let v = GeneVocab::from_json_file(vocab)?;
        let m = match_genes(var, &v, gene_col, file)?;
        Ok(scllm_pp::recipe::VocabMatch {
            summary: m.summary(),
            ids: m.ids,
        })
    }
}

/// Labels of a categorical/string column, for printing and class lists.
pub fn column_labels(col: &Column) -> Vec<Option<String>> {
    col.to_strings()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_reads_ids_in_order_and_reports_specials() {
        let v = GeneVocab::from_json_str(r#"{"B": 1, "A": 0, "<pad>": 2, "<cls>": 3}"#).unwrap();
        assert_eq!(v.token(0), Some("A"));
        assert_eq!(v.special("<pad>").unwrap(), 2);
        assert_eq!(v.specials(), vec![("<pad>", 2), ("<cls>", 3)]);
        let e = v.special("<eoc>").unwrap_err().to_string();
        assert!(e.contains("<eoc>") && e.contains("<pad>=2"), "{e}");
        assert!(
            GeneVocab::from_json_str(r#"{"A": 0, "B": 2}"#).is_err(),
            "gaps are refused"
        );
        let mut v2 = GeneVocab::from_json_str(r#"{"A": 0}"#).unwrap();
        v2.append_missing(&["<pad>", "<cls>", "<eoc>"]);
        assert_eq!(v2.get("<eoc>"), Some(3));
        let back = GeneVocab::from_json_str(&v2.to_json()).unwrap();
        assert_eq!(back.tokens(), v2.tokens());
    }

    #[test]
    fn ensembl_ids_match_through_gencode() {
        let v = GeneVocab::from_tokens(vec!["DDX11L1".into(), "WASH7P".into()]);
        let var = DataFrame::new(vec![
            "ENSG00000223972.5".into(),
            "ENSG00000227232".into(),
            "ENSG_UNKNOWN".into(),
        ]);
        let m = match_genes(&var, &v, None, Path::new("x.h5ad")).unwrap();
        assert_eq!(m.ids, vec![Some(0), Some(1), None]);
        assert!(m.key.contains("GENCODE"));
    }

    #[test]
    fn no_overlap_is_a_clear_error() {
        let v = GeneVocab::from_tokens(vec!["CD3E".into()]);
        let var = DataFrame::new(vec!["foo".into(), "bar".into()]);
        let e = match_genes(&var, &v, None, Path::new("q.h5ad"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("q.h5ad") && e.contains("none of its 2 genes"),
            "{e}"
        );
    }
}
