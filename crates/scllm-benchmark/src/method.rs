//! Methods: the [`BenchMethod`] trait, the three classical baselines, and the registry where the
//! caller plugs in model methods.
//!
//! Built in (`scllm-eval`'s baselines; log1p(CP10k) of X computed inside):
//! * `logreg`: L1 logistic regression, one-vs-rest, liblinear's solver, C by 5-fold CV.
//!   Options (`[options.logreg]`): `n_hvg` (2000; 0 = all genes), `c` (fixed C, skips CV),
//!   `c_grid` ([0.01, 0.1, 1, 10, 100]), `folds` (5), `layer`.
//! * `knn-pca`: k-NN label transfer on PCA of the log data of the train set's HVGs.
//!   Options: `k` (15), `n_pcs` (50), `n_hvg` (2000), `metric` ("cosine" | "euclidean"),
//!   `vote` ("majority" | "distance"), `layer`.
//! * `correlation`: SingleR-style Spearman correlation to per-type profiles with fine-tuning.
//!   Options: `de_n` (SingleR's default), `tune_thresh` (0.05), `fine_tune` (true), `layer`.
//!
//! Model methods — `scgpt-knn`, `finetune:<strategy>` (e.g. `finetune:head`, `finetune:lora`) —
//! are known by name but have no implementation here: the caller registers factories with
//! [`MethodRegistry::register`] / [`MethodRegistry::register_prefix`]. A config naming a model
//! method nobody registered fails before any data is read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use scllm_eval::baselines::{run_baseline_scored, BaselineOptions, Method};
use scllm_eval::class_scores::ClassScores;
use scllm_eval::correlation::CorrelationOptions;
use scllm_eval::knn::Vote;
use scllm_eval::Distance;
use scllm_io::AnnData;
use serde::Deserialize;

use crate::config::LoadedConfig;
use crate::{cfg_err, BenchError, Result};

/// What a method returns: one label per query cell, in query order.
#[derive(Clone, Debug, Default)]
pub struct Predictions {
    pub labels: Vec<String>,
    /// Per-cell confidence (probability, vote share, correlation); used by `unknown_below`, the
    /// novel-type threshold and calibration.
    pub confidence: Option<Vec<f32>>,
    /// Every class's score per cell, where the method has them: probabilities (logreg
    /// `predict_proba`, kNN vote shares, fine-tuned softmax) or similarities (correlation's
    /// Spearman ρ, which take part in conformal sets through `1 - ρ`, not in calibration).
    pub class_scores: Option<ClassScores>,
    /// Parameters fitted in this run, when only known after training (overrides
    /// [`BenchMethod::trainable_params`]).
    pub trainable_params: Option<usize>,
    /// Anything worth keeping in `results.json` (chosen C, genes used, epochs, ...).
    pub details: serde_json::Value,
    pub notes: Vec<String>,
}

impl Predictions {
    /// The first `n` cells' predictions and the rest's (the query and the held-out cells of one
    /// run); parameters, details and notes stay with the first.
    pub fn split_at(mut self, n: usize) -> (Predictions, Predictions) {
        let rest_labels = self.labels.split_off(n.min(self.labels.len()));
        let rest_conf = self
            .confidence
            .as_mut()
            .map(|c| c.split_off(n.min(c.len())));
        let rest_scores = self.class_scores.as_mut().map(|s| {
            let k = s.classes.len();
            let tail = s.values.split_off((n * k).min(s.values.len()));
            ClassScores {
                classes: s.classes.clone(),
                kind: s.kind,
                values: tail,
            }
        });
        let rest = Predictions {
            labels: rest_labels,
            confidence: rest_conf,
            class_scores: rest_scores,
            ..Default::default()
        };
        (self, rest)
    }
}

/// A cell-type annotation method the benchmark can run.
pub trait BenchMethod: Send + Sync {
    /// The name in the config and the report (`logreg`, `finetune:lora`).
    fn name(&self) -> String;
    /// Trainable (fitted) parameters, when known before running.
    fn trainable_params(&self) -> Option<usize> {
        None
    }
    /// Train on `train` (labels in `obs[label]`, every cell labeled) and predict every cell of
    /// `query`. `seed` is the config's seed (few-shot runs pass the few-shot seed).
    fn run(&self, train: &AnnData, query: &AnnData, label: &str, seed: u64) -> Result<Predictions>;
}

/// What a factory gets to build a method from the config.
#[derive(Clone, Debug)]
pub struct MethodSpec {
    /// The name as written in `methods` (`finetune:lora`).
    pub name: String,
    /// For prefix registrations, the part after the prefix (`lora`).
    pub strategy: Option<String>,
    /// `[options."<name>"]`, empty when absent.
    pub options: toml::Table,
    /// The config's `model` directory, resolved.
    pub model: Option<PathBuf>,
    /// The config file (for error messages) and its folder (to resolve paths in options).
    pub config_file: PathBuf,
    pub config_dir: PathBuf,
}

/// Builds a method from its spec.
pub type MethodFactory = Box<dyn Fn(&MethodSpec) -> Result<Box<dyn BenchMethod>> + Send + Sync>;

/// Model method names the benchmark knows; they need an implementation registered by the caller.
pub const MODEL_METHODS: &[&str] = &["scgpt-knn", "finetune:<strategy>"];
/// The built-in baselines.
pub const BASELINES: &[&str] = &["logreg", "knn-pca", "correlation"];

/// Name → factory. [`MethodRegistry::with_baselines`] holds the three baselines.
pub struct MethodRegistry {
    exact: BTreeMap<String, MethodFactory>,
    prefix: BTreeMap<String, MethodFactory>,
}

impl Default for MethodRegistry {
    fn default() -> Self {
        Self::with_baselines()
    }
}

impl MethodRegistry {
    pub fn empty() -> Self {
        MethodRegistry {
            exact: BTreeMap::new(),
            prefix: BTreeMap::new(),
        }
    }
    /// The registry with `logreg`, `knn-pca` and `correlation`.
    pub fn with_baselines() -> Self {
        let mut r = Self::empty();
        for (name, kind) in [
            ("logreg", Method::Logreg),
            ("knn-pca", Method::Knn),
            ("correlation", Method::Correlation),
        ] {
            r.register(name, move |spec: &MethodSpec| {
                Ok(Box::new(BaselineMethod::from_spec(kind, spec)?) as Box<dyn BenchMethod>)
            });
        }
        r
    }
    /// Register (or replace) the method `name`, e.g. `scgpt-knn`.
    pub fn register<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&MethodSpec) -> Result<Box<dyn BenchMethod>> + Send + Sync + 'static,
    {
        self.exact.insert(name.to_string(), Box::new(factory));
    }
    /// Register every method named `<prefix><strategy>`, e.g. prefix `finetune:`; the factory gets
    /// the strategy in [`MethodSpec::strategy`] and may refuse strategies it does not know.
    pub fn register_prefix<F>(&mut self, prefix: &str, factory: F)
    where
        F: Fn(&MethodSpec) -> Result<Box<dyn BenchMethod>> + Send + Sync + 'static,
    {
        self.prefix.insert(prefix.to_string(), Box::new(factory));
    }
    /// Every name a config may use: baselines, registered names and the known model methods.
    pub fn known_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.exact.keys().cloned().collect();
        v.extend(self.prefix.keys().map(|p| format!("{p}<strategy>")));
        for m in MODEL_METHODS {
            if !v.iter().any(|x| x == m) {
                v.push(m.to_string());
            }
        }
        v
    }
    fn lookup(&self, name: &str) -> Option<(&MethodFactory, Option<String>)> {
        if let Some(f) = self.exact.get(name) {
            return Some((f, None));
        }
        self.prefix.iter().find_map(|(p, f)| {
            name.strip_prefix(p.as_str())
                .filter(|s| !s.is_empty())
                .map(|s| (f, Some(s.to_string())))
        })
    }
    fn is_known_model_method(name: &str) -> bool {
        name == "scgpt-knn"
            || name
                .strip_prefix("finetune:")
                .is_some_and(|s| !s.is_empty())
    }
    /// Build every method of the config, in order; errors name the config file and field.
    pub fn instantiate(&self, lc: &LoadedConfig) -> Result<Vec<Box<dyn BenchMethod>>> {
        let cfg = lc.file();
        let mut out = Vec::new();
        for (i, name) in lc.config.methods.iter().enumerate() {
            let Some((factory, strategy)) = self.lookup(name) else {
                if Self::is_known_model_method(name) {
                    return Err(cfg_err(format!(
                        "{cfg}: field `methods[{i}]`: `{name}` is a model method, and no implementation of it is registered in this build (registered: {}); run it through `scllm benchmark`, which registers the model methods, or remove it",
                        self.exact.keys().cloned().chain(self.prefix.keys().map(|p| format!("{p}<strategy>"))).collect::<Vec<_>>().join(", ")
                    )));
                }
                return Err(cfg_err(format!(
                    "{cfg}: field `methods[{i}]`: unknown method `{name}`; known methods: {}",
                    self.known_names().join(", ")
                )));
            };
            // without `model`, the factory picks its default (scllm: $SCLLM_MODEL, else the
            // shipped model) or says what is missing
            let spec = MethodSpec {
                name: name.clone(),
                strategy,
                options: lc.config.options.get(name).cloned().unwrap_or_default(),
                model: lc.model.clone(),
                config_file: lc.path.clone(),
                config_dir: lc.dir.clone(),
            };
            let m = factory(&spec).map_err(|e| match e {
                BenchError::Config(s) if !s.starts_with(&cfg) => {
                    cfg_err(format!("{cfg}: field `options.{name}`: {s}"))
                }
                e => e,
            })?;
            out.push(m);
        }
        Ok(out)
    }
}

/// Parse an options table into `T` (`deny_unknown_fields`), with the field named on error.
pub fn parse_options<T: for<'de> Deserialize<'de>>(spec: &MethodSpec) -> Result<T> {
    let t = spec.options.clone();
    toml::Value::Table(t).try_into::<T>().map_err(|e| {
        cfg_err(format!(
            "{}: field `options.{}`: {}",
            spec.config_file.display(),
            spec.name,
            e.to_string().trim_end().replace('\n', " ")
        ))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogregOptions {
    n_hvg: Option<usize>,
    c: Option<f64>,
    c_grid: Option<Vec<f64>>,
    folds: Option<usize>,
    layer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnnOptions {
    k: Option<usize>,
    n_pcs: Option<usize>,
    n_hvg: Option<usize>,
    metric: Option<String>,
    vote: Option<String>,
    layer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrOptions {
    de_n: Option<usize>,
    tune_thresh: Option<f64>,
    fine_tune: Option<bool>,
    layer: Option<String>,
}

/// One of `scllm-eval`'s baselines, run through [`run_baseline_scored`].
pub struct BaselineMethod {
    name: String,
    opts: BaselineOptions,
}

impl BaselineMethod {
    pub fn new(name: &str, opts: BaselineOptions) -> Self {
        BaselineMethod {
            name: name.to_string(),
            opts,
        }
    }
    fn from_spec(kind: Method, spec: &MethodSpec) -> Result<Self> {
        let mut o = BaselineOptions::new(kind, "");
        let cfgf = spec.config_file.display().to_string();
        let bad =
            |f: &str, m: String| cfg_err(format!("{cfgf}: field `options.{}.{f}`: {m}", spec.name));
        match kind {
            Method::Logreg => {
                let p: LogregOptions = parse_options(spec)?;
                if let Some(v) = p.n_hvg {
                    o.n_hvg = v;
                }
                if let Some(c) = p.c {
                    if c <= 0.0 {
                        return Err(bad("c", format!("{c} must be positive")));
                    }
                    o.c = Some(c);
                }
                if let Some(g) = p.c_grid {
                    if g.is_empty() || g.iter().any(|&c| c <= 0.0) {
                        return Err(bad(
                            "c_grid",
                            "give positive values, e.g. [0.01, 0.1, 1, 10, 100]".into(),
                        ));
                    }
                    o.c_grid = g;
                }
                if let Some(f) = p.folds {
                    if f < 2 {
                        return Err(bad("folds", format!("{f}: needs at least 2")));
                    }
                    o.folds = f;
                }
                o.layer = p.layer;
            }
            Method::Knn => {
                let p: KnnOptions = parse_options(spec)?;
                if let Some(k) = p.k {
                    if k == 0 {
                        return Err(bad("k", "must be at least 1".into()));
                    }
                    o.k = k;
                }
                if let Some(v) = p.n_pcs {
                    o.n_pcs = v.max(1);
                }
                if let Some(v) = p.n_hvg {
                    o.n_hvg = v;
                }
                if let Some(m) = p.metric {
                    o.metric = match m.as_str() {
                        "cosine" => Distance::Cosine,
                        "euclidean" => Distance::Euclidean,
                        other => {
                            return Err(bad(
                                "metric",
                                format!("`{other}`: use cosine or euclidean"),
                            ))
                        }
                    };
                }
                if let Some(v) = p.vote {
                    o.vote = v.parse::<Vote>().map_err(|e| bad("vote", e))?;
                }
                o.layer = p.layer;
            }
            Method::Correlation => {
                let p: CorrOptions = parse_options(spec)?;
                let mut c = CorrelationOptions::default();
                c.de_n = p.de_n.or(c.de_n);
                if let Some(t) = p.tune_thresh {
                    c.tune_thresh = t;
                }
                if let Some(f) = p.fine_tune {
                    c.fine_tune = f;
                }
                o.correlation = c;
                o.layer = p.layer;
            }
        }
        Ok(BaselineMethod::new(&spec.name, o))
    }
}

fn smallest_class(labels: &[String]) -> usize {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for l in labels {
        *m.entry(l).or_insert(0) += 1;
    }
    m.values().copied().min().unwrap_or(0)
}

impl BenchMethod for BaselineMethod {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn run(&self, train: &AnnData, query: &AnnData, label: &str, seed: u64) -> Result<Predictions> {
        let mut opts = self.opts.clone();
        opts.label = label.to_string();
        opts.seed = seed;
        opts.unknown_below = None; // the runner applies `unknown_below` to every method alike
        let mut notes = Vec::new();
        if opts.method == Method::Logreg && opts.c.is_none() {
            // small (few-shot) training sets: fewer folds, or a fixed C when CV is impossible
            let tl = crate::train_query_split::labels_of(train, label);
            let minc = smallest_class(&tl);
            if minc < 2 {
                opts.c = Some(1.0);
                notes.push(format!(
                    "logreg: a class has {minc} training cell(s): cross-validation impossible, C fixed at 1.0"
                ));
            } else if minc < opts.folds {
                notes.push(format!(
                    "logreg: smallest class has {minc} training cells: {minc}-fold CV instead of {}-fold",
                    opts.folds
                ));
                opts.folds = minc;
            }
        }
        let mut q = query.clone();
        // the baseline scores the query itself when it carries the label; the runner scores instead
        q.obs.remove(label);
        let (s, scores) = run_baseline_scored(train, &mut q, &opts)
            .map_err(|e| BenchError::Method(format!("{}: {e}", self.name)))?;
        let labels: Vec<String> = q
            .obs
            .column("predicted_cell_type")
            .map(|c| {
                c.to_strings()
                    .into_iter()
                    .map(|s| s.unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let confidence = match q.obs.column("prediction_confidence") {
            Some(scllm_io::Column::F32(v)) => Some(v.clone()),
            _ => None,
        };
        let nc = s.classes.len();
        let p = &s.params;
        let getu = |k: &str| p.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        let fitted = match opts.method {
            // one weight per gene plus an intercept, per one-vs-rest problem
            Method::Logreg => Some((s.n_genes + 1) * nc),
            // PCA loadings (n_pcs x genes); the neighbours themselves are stored data
            Method::Knn => getu("n_pcs").map(|k| k * s.n_genes),
            // one median profile per type over the marker genes
            Method::Correlation => getu("n_marker_genes").map(|g| g * nc),
        };
        notes.extend(s.notes.iter().cloned());
        Ok(Predictions {
            labels,
            confidence,
            class_scores: Some(scores),
            trainable_params: fitted,
            details: serde_json::json!({
                "params": s.params,
                "n_genes": s.n_genes,
                "n_genes_in_query": s.n_genes_in_query,
                "train_seconds": s.train_seconds,
                "predict_seconds": s.predict_seconds,
                "cv": s.cv,
            }),
            notes,
        })
    }
}
