//! Offline entity extraction tied to scllm's own identifiers: genes from the scGPT vocabulary,
//! cell types from PanglaoDB plus scllm's PBMC labels, a model registry, dataset accessions and
//! named datasets, and metric keys shared with scllm's benchmark reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{PapersError, Result};

pub const ENV_RESOURCES_DIR: &str = "SCLLM_RESOURCES_DIR";
const GENE_VOCAB_FILE: &str = "default_gene_vocab.json";
const PANGLAO_FILE: &str = "PanglaoDB_markers_27_Mar_2020.tsv";

const BUILTIN_GENES: &str = include_str!("data/genes_builtin.txt");
const BUILTIN_CELL_TYPES: &str = include_str!("data/cell_types_panglaodb.txt");

/// Gene symbols that are also English words, acronyms or metric names in methods papers.
const GENE_STOPLIST: &[&str] = &[
    "SET", "CAT", "MAX", "REST", "IMPACT", "CLOCK", "PC", "NMI", "ACE", "BAD", "BID", "CAPS",
    "COPE", "MET", "POLE", "RAN", "REL", "SHE", "SON", "STAR", "TANK", "WAS", "ITCH", "GAN", "MAL",
    "GPT", "MS", "CLS", "CAMP", "PIP", "SRC", "BORA", "COIL", "HELLS", "MICE", "PIGS", "SNAP",
    "STAT", "TUB", "NUMB", "CPM", "IDS", "ARC", "CAST", "SIM", "SKI", "TAT", "HIS", "PER", "APR",
    "OMG", "CHAT", "TEC", "TAX", "SPEN", "GAL",
];

/// scllm model ids and the names papers use for them.
pub const MODELS: &[(&str, &str, &[&str])] = &[
    ("scgpt", "scGPT", &["scgpt"]),
    ("geneformer", "Geneformer", &["geneformer"]),
    ("scbert", "scBERT", &["scbert"]),
    ("cellplm", "CellPLM", &["cellplm"]),
    ("scfoundation", "scFoundation", &["scfoundation"]),
    ("uce", "UCE", &["uce", "universal cell embeddings"]),
    ("genept", "GenePT", &["genept"]),
    ("nicheformer", "Nicheformer", &["nicheformer"]),
    ("scprint", "scPRINT", &["scprint"]),
    ("scmulan", "scMulan", &["scmulan"]),
    ("xtrimogene", "xTrimoGene", &["xtrimogene"]),
    ("tgpt", "tGPT", &["tgpt"]),
    ("cellfm", "CellFM", &["cellfm"]),
    ("scvi", "scVI", &["scvi", "scvi tools"]),
    ("scanvi", "scANVI", &["scanvi"]),
    ("harmony", "Harmony", &["harmony"]),
    ("seurat", "Seurat", &["seurat"]),
    ("celltypist", "CellTypist", &["celltypist"]),
    ("singler", "SingleR", &["singler"]),
    (
        "logreg",
        "Logistic regression",
        &[
            "logistic regression",
            "logreg",
            "l1 regularized logistic regression",
            "l1 regularised logistic regression",
        ],
    ),
    (
        "knn",
        "k-NN",
        &["knn", "k nearest neighbors", "k nearest neighbours"],
    ),
    ("pca", "PCA", &["pca"]),
];

/// Named datasets, keyed like scllm's benchmark datasets where one exists.
pub const NAMED_DATASETS: &[(&str, &str, &[&str])] = &[
    ("pbmc3k", "PBMC 3k", &["pbmc3k", "pbmc 3k"]),
    ("pbmc10k", "PBMC 10k", &["pbmc10k", "pbmc 10k"]),
    (
        "pbmc68k",
        "PBMC 68k (Zheng68K)",
        &[
            "pbmc68k",
            "pbmc 68k",
            "zheng68k",
            "zheng 68k",
            "pbmc68k reduced",
        ],
    ),
    (
        "kang2018_pbmc",
        "Kang 2018 PBMC",
        &["kang2018", "kang2018 pbmc"],
    ),
    ("pbmc_3chem", "PBMC 3 chemistries", &["pbmc 3chem"]),
    ("wu2020_tcells", "Wu 2020 T cells", &["wu2020 tcells"]),
    ("tabula_sapiens", "Tabula Sapiens", &["tabula sapiens"]),
    ("tabula_muris", "Tabula Muris", &["tabula muris"]),
    (
        "hpancreas",
        "hPancreas",
        &["hpancreas", "human pancreas dataset"],
    ),
    (
        "cellxgene_census",
        "CELLxGENE Census",
        &["cellxgene census", "cellxgene"],
    ),
    (
        "human_cell_atlas",
        "Human Cell Atlas",
        &["human cell atlas"],
    ),
    (
        "norman2019",
        "Norman 2019 Perturb-seq",
        &["norman dataset", "norman et al"],
    ),
    (
        "adamson2016",
        "Adamson 2016 Perturb-seq",
        &["adamson dataset", "adamson et al"],
    ),
];

/// Accession prefixes; the id is the prefix followed by digits.
const ACCESSION_PREFIXES: &[&str] = &[
    "GSE", "GSM", "SRP", "SRX", "ERP", "DRP", "PRJNA", "PRJEB", "PRJDB", "E-MTAB-", "E-GEOD-",
];

/// Metric keys as scllm's benchmark reports write them, with the spellings papers use.
pub const METRICS: &[(&str, &str, bool, &[&str])] = &[
    ("ari", "ARI", true, &["ari", "adjusted rand index"]),
    (
        "nmi",
        "NMI",
        true,
        &[
            "nmi",
            "normalized mutual information",
            "normalised mutual information",
        ],
    ),
    (
        "asw",
        "ASW",
        true,
        &[
            "asw",
            "average silhouette width",
            "silhouette",
            "silhouette score",
        ],
    ),
    ("avg_bio", "AvgBIO", true, &["avgbio", "avg bio"]),
    ("accuracy", "Accuracy", true, &["accuracy", "acc"]),
    (
        "macro_f1",
        "Macro F1",
        true,
        &[
            "macro f1",
            "f1 macro",
            "macro f1 score",
            "macro averaged f1",
        ],
    ),
    ("f1", "F1", true, &["f1", "f1 score"]),
    ("precision", "Precision", true, &["precision"]),
    ("recall", "Recall", true, &["recall"]),
    ("auroc", "AUROC", true, &["auroc", "auc", "roc auc"]),
    ("kbet", "kBET", true, &["kbet"]),
    ("ilisi", "iLISI", true, &["ilisi"]),
    ("clisi", "cLISI", false, &["clisi"]),
    (
        "pearson",
        "Pearson r",
        true,
        &["pearson", "pearson r", "pearson correlation"],
    ),
    ("pearson_delta", "Pearson delta", true, &["pearson delta"]),
    (
        "spearman",
        "Spearman rho",
        true,
        &["spearman", "spearman correlation"],
    ),
    ("mse", "MSE", false, &["mse", "mean squared error"]),
];

/// Cell types that scllm's PBMC benchmarks label but PanglaoDB does not name, and common
/// spellings of PanglaoDB types.
const CELL_TYPE_ALIASES: &[(&str, &[&str])] = &[
    (
        "CD4+ T cells",
        &[
            "cd4 t cells",
            "cd4 t cell",
            "cd4 positive t cells",
            "memory cd4 t",
            "naive cd4 t",
        ],
    ),
    (
        "CD8+ T cells",
        &["cd8 t cells", "cd8 t cell", "cd8 positive t cells", "cd8 t"],
    ),
    (
        "CD14+ monocytes",
        &["cd14 monocytes", "cd14 monocyte", "cd14 mono"],
    ),
    (
        "CD16+ monocytes",
        &[
            "cd16 monocytes",
            "fcgr3a monocytes",
            "fcgr3a mono",
            "cd16 mono",
        ],
    ),
    (
        "NK cells",
        &["natural killer cells", "natural killer cell", "nk cell"],
    ),
    (
        "T regulatory cells",
        &["regulatory t cells", "regulatory t cell", "tregs", "treg"],
    ),
    (
        "T cytotoxic cells",
        &["cytotoxic t cells", "cytotoxic t cell", "ctls"],
    ),
    ("T helper cells", &["helper t cells", "helper t cell"]),
    ("T memory cells", &["memory t cells", "memory t cell"]),
    ("T cells naive", &["naive t cells", "naive t cell"]),
    ("B cells memory", &["memory b cells", "memory b cell"]),
    ("B cells naive", &["naive b cells", "naive b cell"]),
    ("Plasmacytoid dendritic cells", &["pdcs", "pdc"]),
    ("Dendritic cells", &["dcs"]),
    (
        "Hematopoietic stem cells",
        &["hscs", "haematopoietic stem cells"],
    ),
];

/// Where a vocabulary came from, so a user knows whether the full resources were found.
#[derive(Debug, Clone, Serialize)]
pub struct VocabularySource {
    pub genes: String,
    pub gene_count: usize,
    pub cell_types: String,
    pub cell_type_count: usize,
}

/// Entity mentions in one piece of text, by canonical id, with counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mentions {
    pub genes: BTreeMap<String, u32>,
    pub cell_types: BTreeMap<String, u32>,
    pub models: BTreeMap<String, u32>,
    pub datasets: BTreeMap<String, u32>,
    pub metrics: BTreeMap<String, u32>,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        self.genes.is_empty()
            && self.cell_types.is_empty()
            && self.models.is_empty()
            && self.datasets.is_empty()
            && self.metrics.is_empty()
    }
}

/// Phrases (as lowercase alphanumeric word lists) indexed by their first word; longest first.
#[derive(Default)]
struct PhraseIndex {
    by_first: HashMap<String, Vec<(Vec<String>, String)>>,
}

impl PhraseIndex {
    fn add(&mut self, phrase: &str, id: &str) {
        let words = words_lower(phrase);
        let Some(first) = words.first().cloned() else {
            return;
        };
        let list = self.by_first.entry(first).or_default();
        if list.iter().any(|(w, _)| *w == words) {
            return; // first writer wins: a curated alias never overrides a canonical name
        }
        list.push((words, id.to_string()));
        list.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
    }

    /// Greedy longest match, left to right.
    fn find(&self, words: &[String], out: &mut BTreeMap<String, u32>) {
        let mut i = 0;
        while i < words.len() {
            let hit = self.by_first.get(&words[i]).and_then(|cands| {
                cands
                    .iter()
                    .find(|(p, _)| words[i..].starts_with(p))
                    .map(|(p, id)| (p.len(), id))
            });
            match hit {
                Some((len, id)) => {
                    *out.entry(id.clone()).or_default() += 1;
                    i += len;
                }
                None => i += 1,
            }
        }
    }

    /// The id a whole phrase names, if any (for user input such as `--cell-type "t cell"`).
    fn lookup(&self, phrase: &str) -> Option<String> {
        let words = words_lower(phrase);
        self.by_first
            .get(words.first()?)?
            .iter()
            .find(|(p, _)| *p == words)
            .map(|(_, id)| id.clone())
    }
}

/// Lowercase alphanumeric words; `CD4+ T-cells` → `cd4 t cells`.
fn words_lower(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Dictionary-based extractor.
pub struct Vocabulary {
    genes: HashSet<String>,
    cell_types: PhraseIndex,
    models: PhraseIndex,
    named_datasets: PhraseIndex,
    metrics: PhraseIndex,
    pub source: VocabularySource,
}

impl Vocabulary {
    /// The built-in lists only (what tests and a fresh clone without resources use).
    pub fn builtin() -> Self {
        let genes = BUILTIN_GENES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string);
        let cell_types: Vec<String> = BUILTIN_CELL_TYPES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let gene_source = "built-in (PanglaoDB canonical markers in the scGPT vocabulary)";
        Self::from_lists(
            genes,
            gene_source,
            cell_types,
            "built-in (PanglaoDB cell types)",
        )
    }

    fn from_lists(
        genes: impl Iterator<Item = String>,
        gene_source: &str,
        cell_types: Vec<String>,
        cell_type_source: &str,
    ) -> Self {
        let stop: HashSet<&str> = GENE_STOPLIST.iter().copied().collect();
        // Two-letter symbols (GC, HR, SD, …) collide with abbreviations far more often than not.
        let genes: HashSet<String> = genes
            .filter(|g| g.len() >= 3 && !stop.contains(g.as_str()) && !g.starts_with('<'))
            .collect();
        let mut ct = PhraseIndex::default();
        for label in &cell_types {
            for variant in cell_type_variants(label) {
                ct.add(&variant, label);
            }
        }
        for (canonical, aliases) in CELL_TYPE_ALIASES {
            for variant in cell_type_variants(canonical) {
                ct.add(&variant, canonical);
            }
            for alias in *aliases {
                ct.add(alias, canonical);
            }
        }
        let mut models = PhraseIndex::default();
        for (id, name, aliases) in MODELS {
            models.add(name, id);
            for a in *aliases {
                models.add(a, id);
            }
        }
        let mut named_datasets = PhraseIndex::default();
        for (id, name, aliases) in NAMED_DATASETS {
            named_datasets.add(name, id);
            for a in *aliases {
                named_datasets.add(a, id);
            }
        }
        let mut metrics = PhraseIndex::default();
        for (id, name, _, aliases) in METRICS {
            metrics.add(name, id);
            for a in *aliases {
                metrics.add(a, id);
            }
        }
        let cell_type_count = cell_types.len() + CELL_TYPE_ALIASES.len();
        Vocabulary {
            source: VocabularySource {
                genes: gene_source.to_string(),
                gene_count: genes.len(),
                cell_types: cell_type_source.to_string(),
                cell_type_count,
            },
            genes,
            cell_types: ct,
            models,
            named_datasets,
            metrics,
        }
    }

    /// The full scGPT vocabulary and PanglaoDB table from `dir`, or from the first of
    /// `$SCLLM_RESOURCES_DIR`, `shared/data/resources`, `../shared/data/resources` that has them;
    /// the built-in lists otherwise. An explicit `dir` that lacks the files is an error.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let candidates: Vec<PathBuf> = match dir {
            Some(d) => {
                if !d.join(GENE_VOCAB_FILE).is_file() {
                    return Err(PapersError::File {
                        path: d.join(GENE_VOCAB_FILE),
                        message: "not found; pass a --resources folder holding the scGPT gene vocabulary, or leave it out to use the built-in list".into(),
                    });
                }
                vec![d.to_path_buf()]
            }
            None => std::env::var(ENV_RESOURCES_DIR)
                .ok()
                .map(PathBuf::from)
                .into_iter()
                .chain([
                    PathBuf::from("shared/data/resources"),
                    PathBuf::from("../shared/data/resources"),
                ])
                .collect(),
        };
        let Some(found) = candidates
            .iter()
            .find(|d| d.join(GENE_VOCAB_FILE).is_file())
        else {
            return Ok(Self::builtin());
        };
        let vocab_path = found.join(GENE_VOCAB_FILE);
        let raw = std::fs::read_to_string(&vocab_path).map_err(|e| PapersError::File {
            path: vocab_path.clone(),
            message: e.to_string(),
        })?;
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&raw).map_err(|e| PapersError::File {
                path: vocab_path.clone(),
                message: format!("not a JSON object of gene symbol → id ({e})"),
            })?;
        let panglao_path = found.join(PANGLAO_FILE);
        let (cell_types, ct_source) = match std::fs::read_to_string(&panglao_path) {
            Ok(tsv) => (
                panglao_cell_types(&tsv),
                format!("{} (cell type column)", panglao_path.display()),
            ),
            Err(_) => {
                let b = Self::builtin();
                return Ok(Self::from_lists(
                    map.into_iter().map(|(k, _)| k),
                    &vocab_path.display().to_string(),
                    BUILTIN_CELL_TYPES
                        .lines()
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_string)
                        .collect(),
                    &b.source.cell_types,
                ));
            }
        };
        Ok(Self::from_lists(
            map.into_iter().map(|(k, _)| k),
            &vocab_path.display().to_string(),
            cell_types,
            &ct_source,
        ))
    }

    pub fn extract(&self, text: &str) -> Mentions {
        let mut m = Mentions::default();
        for token in gene_tokens(text) {
            if self.genes.contains(token) {
                *m.genes.entry(token.to_string()).or_default() += 1;
            } else if token.contains('-') {
                // IL-6 → IL6, but HLA-DRA stays as written (found above).
                let joined = token.replace('-', "");
                if self.genes.contains(&joined) {
                    *m.genes.entry(joined).or_default() += 1;
                }
            }
        }
        let words = words_lower(text);
        self.cell_types.find(&words, &mut m.cell_types);
        self.models.find(&words, &mut m.models);
        self.named_datasets.find(&words, &mut m.datasets);
        self.metrics.find(&words, &mut m.metrics);
        for acc in accessions(text) {
            *m.datasets.entry(acc).or_default() += 1;
        }
        m
    }

    pub fn cell_type_id(&self, phrase: &str) -> Option<String> {
        self.cell_types.lookup(phrase)
    }
    pub fn model_id(&self, phrase: &str) -> Option<String> {
        self.models.lookup(phrase)
    }
    pub fn metric_id(&self, phrase: &str) -> Option<String> {
        let cleaned: String = phrase
            .replace(['↑', '↓', '%'], " ")
            .replace("(macro)", "macro");
        self.metrics.lookup(&cleaned)
    }
    pub fn dataset_id(&self, phrase: &str) -> Option<String> {
        let accs = accessions(phrase);
        if accs.len() == 1 {
            return accs.into_iter().next();
        }
        self.named_datasets.lookup(phrase)
    }
    pub fn is_gene(&self, symbol: &str) -> bool {
        self.genes.contains(symbol)
    }
}

pub fn model_name(id: &str) -> &str {
    MODELS
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, n, _)| *n)
        .unwrap_or(id)
}
pub fn metric_name(id: &str) -> &str {
    METRICS
        .iter()
        .find(|(i, ..)| *i == id)
        .map(|(_, n, ..)| *n)
        .unwrap_or(id)
}
pub fn metric_higher_is_better(id: &str) -> Option<bool> {
    METRICS
        .iter()
        .find(|(i, ..)| *i == id)
        .map(|(_, _, h, _)| *h)
}
pub fn dataset_name(id: &str) -> &str {
    NAMED_DATASETS
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, n, _)| *n)
        .unwrap_or(id)
}

fn panglao_cell_types(tsv: &str) -> Vec<String> {
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = header.iter().position(|h| *h == "cell type").unwrap_or(2);
    let set: std::collections::BTreeSet<String> = lines
        .filter_map(|l| l.split('\t').nth(col))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    set.into_iter().collect()
}

/// Spellings of a PanglaoDB label: `T cells naive` → `naive T cells`, `Macrophages` → `macrophage`.
fn cell_type_variants(label: &str) -> Vec<String> {
    let base = match (label.find(" ("), label.ends_with(')')) {
        (Some(i), true) => label[..i].to_string(),
        _ => label.to_string(),
    };
    let mut out = vec![label.to_string()];
    let words: Vec<&str> = base.split_whitespace().collect();
    // "T cells naive" / "B cells memory": the qualifier goes first in prose.
    if words.len() == 3 && words[1] == "cells" {
        out.push(format!("{} {} cells", words[2], words[0]));
        out.push(format!("{} {} cell", words[2], words[0]));
    }
    if let Some(stem) = base.strip_suffix(" cells") {
        out.push(format!("{stem} cell"));
    } else if let Some(stem) = base.strip_suffix('s') {
        if stem.len() > 3 {
            out.push(stem.to_string());
        }
        out.push(base.clone());
    } else {
        out.push(base.clone());
    }
    out
}

/// Candidate gene tokens: runs of ASCII letters, digits, `-` and `.`, trimmed of punctuation.
fn gene_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .map(|t| t.trim_matches(|c| c == '-' || c == '.'))
        .filter(|t| t.len() >= 3 && t.bytes().any(|b| b.is_ascii_uppercase()))
}

/// GEO/SRA/ENA/ArrayExpress accessions: a known prefix followed by digits.
pub fn accessions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        let token = token.trim_matches('-');
        for prefix in ACCESSION_PREFIXES {
            if let Some(rest) = token.strip_prefix(prefix) {
                if rest.len() >= 3 && rest.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(token.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_vocabulary_finds_genes_cell_types_models_and_accessions() {
        let v = Vocabulary::builtin();
        let m = v.extract(
            "CD4+ T-cells and CD14+ monocytes expressed IL-7R; scGPT and Geneformer were \
             benchmarked on GSE123456 and PBMC 10k by ARI. The SET of cells was large.",
        );
        assert!(
            m.cell_types.contains_key("CD4+ T cells"),
            "{:?}",
            m.cell_types
        );
        assert!(m.cell_types.contains_key("CD14+ monocytes"));
        assert!(!m.cell_types.contains_key("T cells"), "longest match wins");
        assert!(m.models.contains_key("scgpt") && m.models.contains_key("geneformer"));
        assert!(m.datasets.contains_key("GSE123456") && m.datasets.contains_key("pbmc10k"));
        assert!(m.metrics.contains_key("ari"));
        assert!(!m.genes.contains_key("SET"), "stop-listed word");
        assert_eq!(v.cell_type_id("t cell").as_deref(), Some("T cells"));
        assert_eq!(v.metric_id("Macro-F1 ↑").as_deref(), Some("macro_f1"));
    }

    #[test]
    fn variants_cover_plural_and_qualifier_order() {
        let v = cell_type_variants("T cells naive");
        assert!(v.contains(&"naive T cells".to_string()));
        assert!(cell_type_variants("Macrophages").contains(&"Macrophage".to_string()));
    }
}
