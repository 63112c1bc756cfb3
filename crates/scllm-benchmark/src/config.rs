//! The benchmark config: one TOML file, every field checked (`deny_unknown_fields`), every path
//! resolved before any data is read.
//!
//! ```toml
//! name = "kang2018_pbmc_lodo"          # optional; default: the config file's stem
//! label = "cell_type"                  # obs column with the truth (default cell_type)
//! methods = ["logreg", "knn-pca", "correlation", "scgpt-knn", "finetune:lora"]
//! model = "models/scgpt-human"         # optional; model folder for model methods (default:
//!                                      # $SCLLM_MODEL, else the shipped models/scllm-small)
//! unknown_below = 0.5                  # optional; confidence below this predicts "Unknown"
//! seed = 0                             # seed handed to every method (default 0)
//! rare_classes = 3                     # classes in the rare-type table (default 3)
//! novel = ["B cells"]                  # optional: types removed from training, kept in the
//!                                      # query: novel-type results per method (see below)
//! coverage = 0.9                       # optional: conformal prediction sets at this coverage
//!                                      # (default 0.9 when `novel` is given)
//! unknown_quantile = 0.05              # optional: the Unknown threshold is this quantile of
//!                                      # held-out reference cells' confidence (default 0.05)
//! held_out_fraction = 0.2              # optional: share of training cells held out (default 0.2)
//!
//! [data]
//! file = "${SHARED}/kang2018_pbmc.h5ad"   # one file, split below ...
//! # train = "a.h5ad"; query = "b.h5ad"   # ... or two files (genes matched by name)
//! gene_case = "exact"                   # or "upper": match gene names case-insensitively
//! include = [{ column = "demuxlet_cls", values = ["SNG"] }]    # keep only these cells
//! exclude = [{ column = "is_duplicate", values = [true] }]     # drop these cells
//! drop_labels = ["Other"]               # drop cells with these labels (after label_map)
//! max_train_per_class = 100             # optional: subsample each training class (seeded)
//! max_query_per_class = 200             # optional: subsample each query class (seeded)
//!
//! [split]                               # one-file configs only; exactly one of:
//! holdout = { column = "donor", value = "1015" }   # query = cells with that value
//! # fraction = 0.2                      # stratified random query fraction (seed below)
//! # seed = 0
//!
//! [label_map]                           # optional: fine -> coarse labels
//! file = "${SHARED}/resources/pbmc_coarse_labels.tsv"
//! from = "label"                        # column of fine labels (default "label")
//! to = "coarse"                         # column of mapped labels (default "coarse")
//! dataset_column = "dataset"            # optional: rows apply per dataset ...
//! train_dataset = "pbmc3k"              # ... default: each data file's stem
//! query_dataset = "kang2018_pbmc"
//!
//! [options.logreg]                      # per-method options (see `method`)
//! c_grid = [0.01, 0.1, 1.0]
//!
//! [fewshot]
//! fractions = [0.1, 0.25, 0.5, 0.75, 1.0]
//! shots = [1, 2, 4, 8, 16]
//! seeds = [0, 1, 2]
//! ```
//!
//! Novel types and held-out reference cells: with `novel` or `coverage`, a stratified
//! `held_out_fraction` of the training cells (after `novel` types are removed and
//! `max_train_per_class` applied; seeded by `seed`) is held out of training. Every method trains
//! on the rest and also predicts the held-out cells; their confidence sets the `Unknown`
//! threshold (`unknown_quantile`, [`scllm_eval::novelty`]) and their per-class scores calibrate
//! the conformal sets ([`scllm_eval::conformal`]). No query label is used for either.
//!
//! Paths: relative paths resolve against the config file's folder. `${SHARED}` is the shared
//! data folder: `$SCLLM_SHARED_DATA` when set, else the first `shared/data` folder found beside
//! the config's folder or one of its ancestors (the checkout's `../shared/data`). Any other
//! `${NAME}` is the environment variable NAME (an error when unset).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{cfg_err, BenchError, Result};

/// A TOML scalar given where a cell value is meant (`"1015"`, `1015`, `true`): compared as text,
/// the way `obs` values print (`True`/`False` for booleans).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{f:.1}")
                } else {
                    f.to_string()
                }
            }
            Scalar::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// `annotation` (the default; `integration` configs are read by `integration_config`).
    pub task: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default = "default_label")]
    pub label: String,
    pub methods: Vec<String>,
    pub model: Option<String>,
    pub unknown_below: Option<f64>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_rare")]
    pub rare_classes: usize,
    /// Types removed from training and kept in the query (novel-type results per method).
    #[serde(default)]
    pub novel: Vec<String>,
    /// Target coverage of the conformal prediction sets (default 0.9 when `novel` is given).
    pub coverage: Option<f64>,
    /// Quantile of held-out confidences used as the `Unknown` threshold (default 0.05).
    pub unknown_quantile: Option<f64>,
    /// Share of the training cells held out to pick thresholds and calibrate sets (default 0.2).
    pub held_out_fraction: Option<f64>,
    pub data: DataConfig,
    pub split: Option<SplitConfig>,
    pub label_map: Option<LabelMapConfig>,
    /// Per-method option tables, keyed by method name (`[options.logreg]`, `[options."finetune:lora"]`).
    #[serde(default)]
    pub options: BTreeMap<String, toml::Table>,
    pub fewshot: Option<FewShotConfig>,
}

fn default_label() -> String {
    "cell_type".into()
}
fn default_rare() -> usize {
    3
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GeneCase {
    /// Gene names must match exactly.
    #[default]
    Exact,
    /// Gene names are upper-cased on both sides before matching (e.g. mouse `Ins1` ~ human `INS1`).
    Upper,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub file: Option<String>,
    pub train: Option<String>,
    pub query: Option<String>,
    #[serde(default)]
    pub gene_case: GeneCase,
    #[serde(default)]
    pub include: Vec<Filter>,
    #[serde(default)]
    pub exclude: Vec<Filter>,
    #[serde(default)]
    pub drop_labels: Vec<String>,
    /// At most this many training cells per class (seeded draw, after the split): keeps model
    /// methods affordable on a CPU. All cells of smaller classes stay.
    pub max_train_per_class: Option<usize>,
    /// At most this many query cells per class (seeded draw, after the split).
    pub max_query_per_class: Option<usize>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub column: String,
    pub values: Vec<Scalar>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub holdout: Option<Holdout>,
    pub fraction: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    pub column: String,
    pub value: Scalar,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMapConfig {
    pub file: String,
    #[serde(default = "default_from")]
    pub from: String,
    #[serde(default = "default_to")]
    pub to: String,
    pub dataset_column: Option<String>,
    pub train_dataset: Option<String>,
    pub query_dataset: Option<String>,
}
fn default_from() -> String {
    "label".into()
}
fn default_to() -> String {
    "coarse".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FewShotConfig {
    #[serde(default)]
    pub fractions: Vec<f64>,
    #[serde(default)]
    pub shots: Vec<usize>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}
fn default_seeds() -> Vec<u64> {
    vec![0, 1, 2]
}

/// How the data is split, after validation.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitPlan {
    Holdout {
        file: PathBuf,
        column: String,
        value: String,
    },
    Fraction {
        file: PathBuf,
        fraction: f64,
        seed: u64,
    },
    TwoFiles {
        train: PathBuf,
        query: PathBuf,
    },
}

/// A config with its paths resolved and its fields checked.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The config file as given.
    pub path: PathBuf,
    /// Its folder, against which relative paths resolve.
    pub dir: PathBuf,
    /// The file's text (echoed into the report).
    pub text: String,
    pub config: BenchConfig,
    pub plan: SplitPlan,
    pub label_map: Option<PathBuf>,
    pub model: Option<PathBuf>,
}

impl LoadedConfig {
    /// The config file's display name, for messages.
    pub fn file(&self) -> String {
        self.path.display().to_string()
    }
    /// Whether training cells are held out (`novel` or `coverage` given).
    pub fn held_out_mode(&self) -> bool {
        !self.config.novel.is_empty() || self.config.coverage.is_some()
    }
    /// The conformal coverage in held-out mode.
    pub fn coverage(&self) -> Option<f64> {
        self.held_out_mode().then(|| {
            self.config
                .coverage
                .unwrap_or(scllm_eval::conformal::DEFAULT_COVERAGE)
        })
    }
    pub fn unknown_quantile(&self) -> f64 {
        self.config
            .unknown_quantile
            .unwrap_or(scllm_eval::novelty::UNKNOWN_QUANTILE)
    }
    pub fn held_out_fraction(&self) -> f64 {
        self.config
            .held_out_fraction
            .unwrap_or(scllm_eval::held_out::HELD_OUT_FRACTION)
    }
    /// `name`, or the config file's stem.
    pub fn name(&self) -> String {
        self.config.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "benchmark".into())
        })
    }
}

/// The shared data folder `${SHARED}` stands for (see the module docs), if any.
pub fn shared_data_dir(start: &Path) -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("SCLLM_SHARED_DATA") {
        return Some(PathBuf::from(v));
    }
    let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
    for a in start.ancestors() {
        let c = a.join("shared").join("data");
        if c.is_dir() {
            return Some(c);
        }
    }
    None
}

/// Expand `${SHARED}` / `${NAME}` and resolve a relative path against `dir`.
pub fn resolve_path(raw: &str, dir: &Path, cfg: &str, field: &str) -> Result<PathBuf> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(p) = rest.find("${") {
        out.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        let end = after.find('}').ok_or_else(|| {
            cfg_err(format!(
                "{cfg}: field `{field}`: `{raw}` has an unclosed `${{`"
            ))
        })?;
        let var = &after[..end];
        let val = if var == "SHARED" {
            shared_data_dir(dir)
                .ok_or_else(|| {
                    cfg_err(format!(
                        "{cfg}: field `{field}`: `${{SHARED}}` found no shared data folder: set SCLLM_SHARED_DATA to the folder holding the .h5ad files (no `shared/data` beside {} or its ancestors)",
                        dir.display()
                    ))
                })?
                .display()
                .to_string()
        } else {
            std::env::var(var).map_err(|_| {
                cfg_err(format!(
                    "{cfg}: field `{field}`: `${{{var}}}` is not set in the environment"
                ))
            })?
        };
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let p = PathBuf::from(out);
    Ok(if p.is_absolute() { p } else { dir.join(p) })
}

fn must_exist(p: &Path, cfg: &str, field: &str) -> Result<()> {
    if !p.exists() {
        return Err(cfg_err(format!(
            "{cfg}: field `{field}`: file not found: {}",
            p.display()
        )));
    }
    Ok(())
}

/// The fields of novel types, held-out cells and conformal sets (their data is checked later,
/// when the split is built).
fn check_novelty_fields(c: &BenchConfig, cfg: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in c.novel.iter().enumerate() {
        if !seen.insert(t) {
            return Err(cfg_err(format!(
                "{cfg}: field `novel[{i}]`: `{t}` is listed twice"
            )));
        }
        if c.data.drop_labels.contains(t) {
            return Err(cfg_err(format!(
                "{cfg}: field `novel[{i}]`: `{t}` is also in `data.drop_labels`, so no cell of it would reach the query; remove it from one of them"
            )));
        }
    }
    if let Some(v) = c.coverage {
        if !(v > 0.0 && v < 1.0) {
            return Err(cfg_err(format!(
                "{cfg}: field `coverage`: {v} must be strictly between 0 and 1 (e.g. 0.9)"
            )));
        }
    }
    if let Some(q) = c.unknown_quantile {
        if !(0.0..1.0).contains(&q) {
            return Err(cfg_err(format!(
                "{cfg}: field `unknown_quantile`: {q} must be in [0, 1) (e.g. 0.05: about 5% of known cells called Unknown)"
            )));
        }
    }
    if let Some(f) = c.held_out_fraction {
        if !(f > 0.0 && f < 1.0) {
            return Err(cfg_err(format!(
                "{cfg}: field `held_out_fraction`: {f} must be strictly between 0 and 1 (e.g. 0.2)"
            )));
        }
    }
    let held_out = !c.novel.is_empty() || c.coverage.is_some();
    if !held_out && (c.unknown_quantile.is_some() || c.held_out_fraction.is_some()) {
        return Err(cfg_err(format!(
            "{cfg}: field `{}`: only used with `novel` or `coverage`; add one of them or remove it",
            if c.unknown_quantile.is_some() {
                "unknown_quantile"
            } else {
                "held_out_fraction"
            }
        )));
    }
    Ok(())
}

/// Read, parse and check a config; resolves paths and checks that the files exist.
/// Method names are checked against a registry by [`crate::MethodRegistry::instantiate`].
pub fn load_config(path: impl AsRef<Path>) -> Result<LoadedConfig> {
    let path = path.as_ref().to_path_buf();
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    parse_config(&text, &path)
}

/// The rules every config's `methods` and `[options.NAME]` follow: at least one method, none
/// twice, no options table for a method that is not listed (`example`: a methods list to
/// suggest).
pub(crate) fn check_methods(
    cfg: &str,
    methods: &[String],
    options: &BTreeMap<String, toml::Table>,
    example: &str,
) -> Result<()> {
    if methods.is_empty() {
        return Err(cfg_err(format!(
            "{cfg}: field `methods`: empty; name at least one method, e.g. methods = {example}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for m in methods {
        if !seen.insert(m) {
            return Err(cfg_err(format!(
                "{cfg}: field `methods`: `{m}` is listed twice"
            )));
        }
    }
    for k in options.keys() {
        if !methods.contains(k) {
            return Err(cfg_err(format!(
                "{cfg}: field `options.{k}`: `{k}` is not in `methods` ({}); remove the table or add the method",
                methods.join(", ")
            )));
        }
    }
    Ok(())
}

/// [`load_config`] on text already read (`path` names it and anchors relative paths).
pub fn parse_config(text: &str, path: &Path) -> Result<LoadedConfig> {
    let cfg = path.display().to_string();
    let config: BenchConfig = toml::from_str(text).map_err(|e| {
        cfg_err(format!(
            "{cfg}: {}",
            e.to_string().trim_end().replace('\n', "\n  ")
        ))
    })?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));

    check_methods(
        &cfg,
        &config.methods,
        &config.options,
        "[\"logreg\", \"knn-pca\", \"correlation\"]",
    )?;
    if let Some(t) = config.unknown_below {
        if !t.is_finite() {
            return Err(cfg_err(format!(
                "{cfg}: field `unknown_below`: must be a finite number"
            )));
        }
    }
    check_novelty_fields(&config, &cfg)?;
    let d = &config.data;
    let plan = match (&d.file, &d.train, &d.query) {
        (Some(f), None, None) => {
            let file = resolve_path(f, &dir, &cfg, "data.file")?;
            must_exist(&file, &cfg, "data.file")?;
            let s = config.split.as_ref().ok_or_else(|| {
                cfg_err(format!(
                    "{cfg}: field `split`: missing; with one data file give `[split]` with `holdout = {{ column = \"donor\", value = \"1015\" }}` or `fraction = 0.2`"
                ))
            })?;
            match (&s.holdout, s.fraction) {
                (Some(h), None) => {
                    if s.seed.is_some() {
                        return Err(cfg_err(format!(
                            "{cfg}: field `split.seed`: only used with `split.fraction`; remove it"
                        )));
                    }
                    SplitPlan::Holdout {
                        file,
                        column: h.column.clone(),
                        value: h.value.as_text(),
                    }
                }
                (None, Some(f)) => {
                    if !(f > 0.0 && f < 1.0) {
                        return Err(cfg_err(format!(
                            "{cfg}: field `split.fraction`: {f} must be strictly between 0 and 1 (the query's share of the cells)"
                        )));
                    }
                    SplitPlan::Fraction {
                        file,
                        fraction: f,
                        seed: s.seed.unwrap_or(config.seed),
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(cfg_err(format!(
                        "{cfg}: field `split`: give either `holdout` or `fraction`, not both"
                    )))
                }
                (None, None) => {
                    return Err(cfg_err(format!(
                        "{cfg}: field `split`: empty; give `holdout = {{ column = ..., value = ... }}` or `fraction = 0.2`"
                    )))
                }
            }
        }
        (None, Some(t), Some(q)) => {
            if config.split.is_some() {
                return Err(cfg_err(format!(
                    "{cfg}: field `split`: not used with `data.train` + `data.query` (the two files are the split); remove it"
                )));
            }
            let train = resolve_path(t, &dir, &cfg, "data.train")?;
            let query = resolve_path(q, &dir, &cfg, "data.query")?;
            must_exist(&train, &cfg, "data.train")?;
            must_exist(&query, &cfg, "data.query")?;
            SplitPlan::TwoFiles { train, query }
        }
        _ => {
            return Err(cfg_err(format!(
            "{cfg}: field `data`: give either `file` (with a [split]) or both `train` and `query`"
        )))
        }
    };
    let label_map = match &config.label_map {
        Some(m) => {
            let p = resolve_path(&m.file, &dir, &cfg, "label_map.file")?;
            must_exist(&p, &cfg, "label_map.file")?;
            Some(p)
        }
        None => None,
    };
    let model = match &config.model {
        Some(m) => {
            let p = resolve_path(m, &dir, &cfg, "model")?;
            must_exist(&p, &cfg, "model")?;
            Some(p)
        }
        None => None,
    };
    for (k, v) in [
        ("max_train_per_class", d.max_train_per_class),
        ("max_query_per_class", d.max_query_per_class),
    ] {
        if v == Some(0) {
            return Err(cfg_err(format!(
                "{cfg}: field `data.{k}`: 0 keeps no cell; give at least 1 or remove it"
            )));
        }
    }
    if let Some(fs) = &config.fewshot {
        if fs.fractions.is_empty() && fs.shots.is_empty() {
            return Err(cfg_err(format!(
                "{cfg}: field `fewshot`: give `fractions = [...]` and/or `shots = [...]`"
            )));
        }
        if let Some(f) = fs.fractions.iter().find(|&&f| !(f > 0.0 && f <= 1.0)) {
            return Err(cfg_err(format!(
                "{cfg}: field `fewshot.fractions`: {f} must be in (0, 1]"
            )));
        }
        if fs.shots.contains(&0) {
            return Err(cfg_err(format!(
                "{cfg}: field `fewshot.shots`: 0 cells per class trains nothing; use k >= 1"
            )));
        }
        if fs.seeds.is_empty() {
            return Err(cfg_err(format!(
                "{cfg}: field `fewshot.seeds`: empty; give at least one seed"
            )));
        }
    }
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        dir,
        text: text.to_string(),
        config,
        plan,
        label_map,
        model,
    })
}
