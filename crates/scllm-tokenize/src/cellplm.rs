//! CellPLM's input (docs/models/cellplm.md §2, §3.1): each cell is one token, the sum of its
//! genes' embeddings weighted by `log1p` of the raw count (no library-size normalisation). Genes
//! are matched by Ensembl id against the checkpoint config's `gene_list`; a file named by
//! symbols is translated through the bundled GENCODE v44 table (the reference queries the
//! `mygene` web service instead).

use std::collections::HashMap;
use std::path::Path;

use scllm_io::DataFrame;

use crate::prepare::file_err;
use crate::vocab::{gencode_id_to_name, looks_ensembl, strip_version, GeneMatch};
use crate::{Result, RowTokenizer, TokenizedCell};

/// The position of each of a file's genes in `gene_list` (the model's gene table rows).
///
/// As the reference (`CellPLM/pipeline/__init__.py`, `common_preprocess`): `var.index` is
/// matched as stored; only when none of it matches are the names read as symbols (here through
/// GENCODE v44) or, for versioned Ensembl ids, with the version removed. A gene listed twice in
/// the file counts twice, as in the reference.
pub fn match_gene_list(var: &DataFrame, gene_list: &[String], file: &Path) -> Result<GeneMatch> {
    let pos: HashMap<&str, u32> = gene_list
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i as u32))
        .collect();
    let names = &var.index;
    let direct: Vec<Option<u32>> = names.iter().map(|n| pos.get(n.as_str()).copied()).collect();
    let (ids, key) = if direct.iter().any(|i| i.is_some()) {
        (direct, "var.index (Ensembl ids)".to_string())
    } else if names.iter().filter(|n| looks_ensembl(n)).count() * 2 > names.len() {
        (
            names
                .iter()
                .map(|n| pos.get(strip_version(n)).copied())
                .collect(),
            "var.index (Ensembl ids, version removed)".to_string(),
        )
    } else {
        // a symbol with several ids takes one that is in the gene list
        let mut by_name: HashMap<String, String> = HashMap::new();
        let mut pairs: Vec<(String, String)> = gencode_id_to_name().into_iter().collect();
        pairs.sort();
        for (id, name) in pairs {
            let known = pos.contains_key(id.as_str());
            match by_name.get(&name) {
                Some(prev) if pos.contains_key(prev.as_str()) || !known => {}
                _ => {
                    by_name.insert(name, id);
                }
            }
        }
        (
            names
                .iter()
                .map(|n| by_name.get(n).and_then(|id| pos.get(id.as_str()).copied()))
                .collect(),
            "var.index via GENCODE v44 symbol→Ensembl".to_string(),
        )
    };
    let n_matched = ids.iter().filter(|i| i.is_some()).count();
    let unmatched_examples = crate::vocab::unmatched_examples(names, &ids);
    if n_matched == 0 {
        return Err(file_err(
            file,
            format!(
                "none of its {} genes ({key}, e.g. {}) is in the CellPLM checkpoint's gene_list \
                 ({} Ensembl ids, e.g. {}). CellPLM needs human Ensembl gene ids or symbols in \
                 var.index.",
                names.len(),
                unmatched_examples.join(", "),
                gene_list.len(),
                gene_list
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(GeneMatch {
        ids,
        n_matched,
        n_genes: names.len(),
        key,
        unmatched_examples,
    })
}

/// One cell as CellPLM's embedder reads it: the gene-table row of each matched stored entry and
/// `log1p` of its raw count (entries of unmatched genes dropped).
pub struct CellPlmTokenizer {
    ids: Vec<Option<u32>>,
}

impl CellPlmTokenizer {
    pub fn new(genes: &GeneMatch) -> Self {
        CellPlmTokenizer {
            ids: genes.ids.clone(),
        }
    }
}

impl RowTokenizer for CellPlmTokenizer {
    fn tokenize_row(&self, cols: &[u32], vals: &[f32], _total: f64) -> Result<TokenizedCell> {
        let mut genes = Vec::with_capacity(cols.len());
        let mut values = Vec::with_capacity(cols.len());
        for (&c, &v) in cols.iter().zip(vals) {
            if let Some(Some(id)) = self.ids.get(c as usize) {
                genes.push(*id);
                values.push(v.ln_1p());
            }
        }
        Ok(TokenizedCell { genes, values })
    }
    fn pad_id(&self) -> u32 {
        0
    }
    fn pad_value(&self) -> f32 {
        0.0
    }
}
