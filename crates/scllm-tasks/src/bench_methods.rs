//! The model methods of `scllm benchmark`, for any family: `embed-knn` (alias `scgpt-knn`:
//! zero-shot cell embeddings with cosine kNN label transfer, the scPEFT paper's "native" baseline)
//! and `finetune:<strategy>` (fine-tune on the training cells, predict the query); and the
//! benchmark run itself with its pictures. CellPLM folders take the set-wise paths of `embed`,
//! `finetune` and `annotate` (docs/models/cellplm.md §7): the cells of one attention set attend
//! to each other.

use std::path::{Path, PathBuf};

use scllm_benchmark::method::BaselineMethod;
use scllm_benchmark::{
    load_config, run_benchmark, write_report, BenchError, BenchMethod, BenchmarkReport,
    MethodRegistry, MethodSpec, Predictions, RunOptions,
};
use scllm_eval::baselines::{BaselineOptions, Method};
use scllm_io::{AnnData, Matrix, Values};
use scllm_models::cellplm::prepare::ANNOTATION_HVG;
use scllm_models::cellplm::{
    embed_anndata, is_cellplm_dir, CellPlmFolder, GroupBy, SetOptions, OBSM_KEY,
};
use scllm_models::{
    with_folder, CellModel, ModelFolder, PeftConfig, Precision, Strategy, TokenOptions,
};
use scllm_tokenize::PrepOptions;
use scllm_train::SplitSpec;
use serde_json::json;

use crate::annotate::{annotate_cells, QueryOptions};
use crate::cellplm_annotation::{
    predict_cellplm, set_train_config, train_cellplm, CellPlmFinetuneJob,
};
use crate::finetune::{finetune_on, train_config, FinetuneSpec};

/// What the model methods call the cells they are given, in messages.
const TRAIN_CELLS: &str = "<benchmark training cells>";
const QUERY_CELLS: &str = "<benchmark query cells>";

/// The `n_hvg` option of the model methods: train and query restricted to the training cells'
/// `n` most variable genes (scanpy's `seurat` flavour on log-normalised values, as the baselines
/// pick theirs), so that every expressed one fits in `n + 1` tokens. The reference tutorials feed
/// scGPT such a matrix (1,200-3,000 HVGs) rather than a random sample of all expressed genes,
/// which often misses the few marker genes. `None`: all genes.
pub fn hvg_subset(
    train: &AnnData,
    query: &AnnData,
    n: Option<usize>,
) -> anyhow::Result<(AnnData, AnnData)> {
    let Some(n) = n.filter(|&n| n < train.n_vars()) else {
        return Ok((train.clone(), query.clone()));
    };
    anyhow::ensure!(n > 0, "n_hvg must be at least 1");
    let log = scllm_eval::anndata_input::log_normalized(train, None)?;
    let keep =
        scllm_eval::baselines::select_hvg(&log.x, &log.genes, n, scllm_pp::HvgFlavor::Seurat)?;
    let pos: std::collections::HashMap<&str, usize> = query
        .var
        .index
        .iter()
        .enumerate()
        .map(|(j, g)| (g.as_str(), j))
        .collect();
    let qkeep: Vec<usize> = keep
        .iter()
        .filter_map(|&j| pos.get(train.var.index[j].as_str()).copied())
        .collect();
    Ok((train.select_vars(&keep), query.select_vars(&qkeep)))
}

/// The attention sets of a CellPLM run, for the training and the query cells alike: the
/// option `group_by` (an `obs` column, or `none`: all cells one set), else `obs['batch']` where
/// the cells have it, else all cells one set (the reference's rule, as `scllm embed`); the
/// option `batch_size` cuts each group into sets of at most that many cells (as the CLI's
/// `--batch-size` for CellPLM).
fn set_options(group: Option<&str>, batch_size: Option<usize>) -> SetOptions {
    SetOptions {
        group_by: GroupBy::from_flag(group),
        batch_size,
    }
}

/// Refuse the first option that is set but does not apply to `models` (the error names the
/// method already).
fn refuse_options(models: &str, why: &str, opts: &[(bool, &str)]) -> anyhow::Result<()> {
    crate::error::refuse_flags(opts, |name| {
        format!("option `{name}` does not apply to {models} ({why})")
    })
}

/// Refuse `group_by` for the token families.
fn token_family_options(group: &Option<String>) -> anyhow::Result<()> {
    refuse_options(
        "this model",
        "only CellPLM's cells attend to each other; this model embeds each cell on its own",
        &[(group.is_some(), "group_by")],
    )
}

/// Sets `m` to the method's inference precision (default f32); returns what the results
/// record of it: the precision and the kernel its products run on.
fn set_precision<M: CellModel>(
    m: &mut M,
    p: Option<Precision>,
) -> anyhow::Result<serde_json::Value> {
    let p = p.unwrap_or_default();
    let kernel = scllm_models::nn::precision::kernel(p).map_err(crate::bad)?;
    m.set_precision(p);
    Ok(json!({"precision": p, "kernel": kernel}))
}

/// `embed-knn` / `scgpt-knn`.
struct EmbedKnn {
    name: String,
    model: PathBuf,
    knn: KnnOptions,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KnnOptions {
    k: Option<usize>,
    max_len: Option<usize>,
    /// Cells per forward pass; CellPLM: the most cells of one attention set.
    batch_size: Option<usize>,
    n_hvg: Option<usize>,
    /// CellPLM: the `obs` column of the attention sets (see [`set_options`]).
    group_by: Option<String>,
    /// Number format of the model's products at inference (embedding, prediction; training
    /// stays f32): `scllm_models::nn::precision`.
    precision: Option<Precision>,
}

impl EmbedKnn {
    /// Cosine kNN label transfer from the training cells' `obsm[key]` to the query's.
    fn transfer(
        &self,
        train: &AnnData,
        query: &AnnData,
        key: &str,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions> {
        let mut o = BaselineOptions::new(Method::Knn, label);
        o.use_rep = Some(key.into());
        o.k = self.knn.k.unwrap_or(15);
        o.seed = seed;
        Ok(BaselineMethod::new(&self.name, o).run(train, query, label, seed)?)
    }
}

/// A model method: its name, its model folder, and what it does with the folder's family.
trait ModelMethod: Send + Sync {
    fn method_name(&self) -> &str;
    fn model(&self) -> &Path;
    /// Trainable parameters, when known before running.
    fn known_trainable(&self) -> Option<usize> {
        None
    }
    fn run_with<F: ModelFolder>(
        &self,
        folder: &F,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions>;
    /// The method on a CellPLM folder (set-wise).
    fn run_cellplm(
        &self,
        folder: &CellPlmFolder,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions>;
}

/// A [`ModelMethod`] as the benchmark runs it: the folder opened, its family dispatched.
struct OnModel<T>(T);

impl<T: ModelMethod> BenchMethod for OnModel<T> {
    fn name(&self) -> String {
        self.0.method_name().to_string()
    }
    fn trainable_params(&self) -> Option<usize> {
        self.0.known_trainable()
    }
    fn run(
        &self,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> scllm_benchmark::Result<Predictions> {
        let m = &self.0;
        let err = |e: anyhow::Error| BenchError::Method(format!("{}: {e:#}", m.method_name()));
        if is_cellplm_dir(m.model()) {
            let folder = CellPlmFolder::open(m.model()).map_err(|e| err(e.into()))?;
            return m
                .run_cellplm(&folder, train, query, label, seed)
                .map_err(err);
        }
        let folder =
            scllm_models::open_folder(m.model(), &Default::default()).map_err(|e| err(e.into()))?;
        with_folder!(&folder, |f| m.run_with(f, train, query, label, seed)).map_err(err)
    }
}

impl ModelMethod for EmbedKnn {
    fn method_name(&self) -> &str {
        &self.name
    }
    fn model(&self) -> &Path {
        &self.model
    }
    fn known_trainable(&self) -> Option<usize> {
        Some(0)
    }
    fn run_with<F: ModelFolder>(
        &self,
        folder: &F,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions> {
        token_family_options(&self.knn.group_by)?;
        let dev = scllm_models::device(scllm_models::DeviceKind::Cpu)?;
        let (mut m, _) = folder.load(0, false, &dev)?;
        let precision = set_precision(&mut m, self.knn.precision)?;
        let topts = TokenOptions {
            max_len: self.knn.max_len.or(self.knn.n_hvg.map(|n| n + 1)),
            seed,
        };
        let bs = self.knn.batch_size.unwrap_or(64);
        let key = folder.embedding().obsm_key;
        let (mut tr, mut qu) = hvg_subset(train, query, self.knn.n_hvg)?;
        crate::embed::embed_into(folder, &m, &mut tr, key, &topts, bs, &dev)?;
        crate::embed::embed_into(folder, &m, &mut qu, key, &topts, bs, &dev)?;
        let mut p = self.transfer(&tr, &qu, key, label, seed)?;
        p.details["precision"] = precision;
        Ok(p)
    }
    /// The latent means of `scllm embed` (set-wise) for the training and the query cells.
    fn run_cellplm(
        &self,
        folder: &CellPlmFolder,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions> {
        refuse_options(
            "CellPLM models",
            "cells are the tokens",
            &[(self.knn.max_len.is_some(), "max_len")],
        )?;
        let dev = scllm_models::device(scllm_models::DeviceKind::Cpu)?;
        let (mut m, _) = folder.load(&dev)?;
        let precision = set_precision(&mut m, self.knn.precision)?;
        let opts = set_options(self.knn.group_by.as_deref(), self.knn.batch_size);
        let (mut tr, mut qu) = hvg_subset(train, query, self.knn.n_hvg)?;
        let mut described = Vec::new();
        for (a, name) in [(&mut tr, TRAIN_CELLS), (&mut qu, QUERY_CELLS)] {
            let e = embed_anndata(
                &m,
                &folder.config.gene_list,
                a,
                Path::new(name),
                &opts,
                &dev,
            )?;
            described.push(format!("{}; {}", e.genes.summary(), e.sets.describe()));
            a.set_obsm(
                OBSM_KEY,
                Matrix::Dense {
                    nrows: a.n_obs(),
                    ncols: e.dim,
                    data: Values::F32(e.latent),
                },
            );
        }
        let mut p = self.transfer(&tr, &qu, OBSM_KEY, label, seed)?;
        p.details["cellplm"] = json!({"train": described[0], "query": described[1]});
        p.details["precision"] = precision;
        Ok(p)
    }
}

/// `finetune:<strategy>`: fine-tune on the training cells (validation: a stratified 10% of
/// them), predict the query. Integration benchmarks take its adapted embeddings of the query
/// ([`FinetuneMethod::adapt`]).
pub(crate) struct FinetuneMethod {
    pub(crate) spec_name: String,
    pub(crate) model: PathBuf,
    pub(crate) strategy: Strategy,
    pub(crate) opts: FinetuneOptions,
}

/// A fine-tuned model's predictions of the query cells and its cell embeddings of them (the
/// adapted model's, as `annotate` writes them to `obsm`).
pub(crate) struct Adapted {
    pub(crate) predictions: Predictions,
    /// Row-major `[n, dim]`.
    pub(crate) embeddings: Vec<f32>,
    pub(crate) dim: usize,
}

#[derive(serde::Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct FinetuneOptions {
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    patience: Option<usize>,
    max_len: Option<usize>,
    val_fraction: Option<f64>,
    /// Restrict to the training cells' n most variable genes (see [`hvg_subset`]). CellPLM:
    /// the annotation pipeline's selection (seurat_v3 on the counts, default 3000; 0: every gene
    /// of the model's list), as `finetune --hvg`.
    n_hvg: Option<usize>,
    /// CellPLM: the `obs` column of the attention sets (see [`set_options`]).
    group_by: Option<String>,
    /// Number format of the model's products at inference (embedding, prediction; training
    /// stays f32): `scllm_models::nn::precision`.
    precision: Option<Precision>,
}

impl ModelMethod for FinetuneMethod {
    fn method_name(&self) -> &str {
        &self.spec_name
    }
    fn model(&self) -> &Path {
        &self.model
    }
    fn run_with<F: ModelFolder>(
        &self,
        folder: &F,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions> {
        Ok(self
            .adapt_with(folder, train, query, label, seed)?
            .predictions)
    }
    fn run_cellplm(
        &self,
        folder: &CellPlmFolder,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Predictions> {
        Ok(self
            .adapt_cellplm(folder, train, query, label, seed)?
            .predictions)
    }
}

impl FinetuneMethod {
    /// Fine-tune on `train`, then predict and embed `query`, whatever the model's family.
    pub(crate) fn adapt(
        &self,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Adapted> {
        if is_cellplm_dir(&self.model) {
            let folder = CellPlmFolder::open(&self.model)?;
            return self.adapt_cellplm(&folder, train, query, label, seed);
        }
        let folder = scllm_models::open_folder(&self.model, &Default::default())?;
        with_folder!(&folder, |f| self.adapt_with(f, train, query, label, seed))
    }

    fn adapt_with<F: ModelFolder>(
        &self,
        folder: &F,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Adapted> {
        let o = &self.opts;
        token_family_options(&o.group_by)?;
        let max_len = o
            .max_len
            .or(o.n_hvg.map(|n| n + 1))
            .unwrap_or_else(|| folder.finetune_max_len());
        let (train, query) = hvg_subset(train, query, o.n_hvg)?;
        let mut tc = train_config(
            folder.family(),
            folder.n_layers(),
            self.strategy,
            o.epochs,
            o.lr,
            o.batch_size,
            o.patience,
            max_len,
            seed,
        );
        tc.progress = false;
        let split = SplitSpec::stratified(o.val_fraction.unwrap_or(0.1), seed);
        let prep = PrepOptions {
            max_len,
            seed,
            ..PrepOptions::default()
        };
        let mut ft = finetune_on(
            folder,
            &train,
            Path::new(TRAIN_CELLS),
            &FinetuneSpec {
                label,
                method: self.strategy,
                peft: &PeftConfig::default(),
                split: &split,
                train: &tc,
                prep: &prep,
                min_cells_per_class: Some(2),
            },
        )?;
        ft.summary["precision"] = set_precision(&mut ft.model, o.precision)?;
        let ann = annotate_cells(
            folder,
            &ft.model,
            &ft.data.classes,
            &query,
            Path::new(QUERY_CELLS),
            &QueryOptions {
                max_len,
                batch_size: 64,
                gene_col: None,
                seed,
                progress: false,
                only_genes: ft.meta.genes.clone(),
            },
        )?;
        Ok(Adapted {
            predictions: Predictions {
                labels: ann.labels,
                confidence: Some(ann.confidence),
                // softmax over the fine-tuned classes: calibration and conformal sets read them
                class_scores: Some(scllm_eval::class_scores::ClassScores {
                    classes: ft.data.classes.clone(),
                    kind: scllm_eval::class_scores::ScoreKind::Probability,
                    values: ann.probabilities,
                }),
                trainable_params: ft.summary["trainable_params"].as_u64().map(|v| v as usize),
                details: ft.summary,
                notes: vec![],
            },
            embeddings: ann.embeddings,
            dim: ann.dim,
        })
    }

    /// `finetune`'s transductive training on the training cells (all of them in their sets,
    /// the validation split out of the loss), then `annotate`'s set-wise prediction of the query.
    fn adapt_cellplm(
        &self,
        folder: &CellPlmFolder,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> anyhow::Result<Adapted> {
        let o = &self.opts;
        refuse_options(
            "CellPLM models",
            "cells are the tokens",
            &[(o.max_len.is_some(), "max_len")],
        )?;
        // the pipeline's settings (as `scllm finetune`) with the options' overrides
        let tc = set_train_config(o.epochs, o.lr, o.patience, seed, false);
        let job = CellPlmFinetuneJob {
            model: self.model.clone(),
            train: PathBuf::from(TRAIN_CELLS),
            label: label.to_string(),
            method: self.strategy,
            peft: PeftConfig::default(),
            // nothing is written: the model stays in memory
            output: PathBuf::new(),
            split: SplitSpec::stratified(o.val_fraction.unwrap_or(0.1), seed),
            group_by: o.group_by.clone(),
            set_size: o.batch_size,
            train_config: tc,
            hvg: o.n_hvg.unwrap_or(ANNOTATION_HVG),
            min_cells_per_class: Some(2),
        };
        let mut t = train_cellplm(folder, train, &job)?;
        t.summary["precision"] = set_precision(&mut t.model, o.precision)?;
        let p = predict_cellplm(
            &t.model,
            &t.meta,
            &folder.config.gene_list,
            query,
            Path::new(QUERY_CELLS),
            &set_options(o.group_by.as_deref(), o.batch_size),
            false,
        )?;
        let mut details = t.summary;
        details["query_sets"] = json!(p.sets.describe());
        let labels = p.labels(&t.meta);
        let pr = p.prediction;
        Ok(Adapted {
            predictions: Predictions {
                labels,
                confidence: Some(pr.confidence),
                class_scores: Some(scllm_eval::class_scores::ClassScores {
                    classes: t.meta.labels.clone(),
                    kind: scllm_eval::class_scores::ScoreKind::Probability,
                    values: pr.probabilities,
                }),
                trainable_params: details["trainable_params"].as_u64().map(|v| v as usize),
                details,
                notes: vec![],
            },
            embeddings: pr.embeddings,
            dim: pr.dim,
        })
    }
}

/// The config's `model`, else `$SCLLM_MODEL`, else the shipped small model.
fn model_dir(spec: &MethodSpec) -> scllm_benchmark::Result<PathBuf> {
    match &spec.model {
        Some(m) => Ok(m.clone()),
        None => crate::model_dir::resolve(None).map_err(|e| {
            BenchError::Config(format!(
                "{}: method `{}` needs a model: {e:#}; or set `model = \"DIR\"` in the config",
                spec.config_file.display(),
                spec.name
            ))
        }),
    }
}

/// The baselines plus the model methods.
pub fn registry() -> MethodRegistry {
    let mut reg = MethodRegistry::with_baselines();
    for name in ["embed-knn", "scgpt-knn"] {
        reg.register(name, |spec: &MethodSpec| {
            Ok(Box::new(OnModel(EmbedKnn {
                name: spec.name.clone(),
                model: model_dir(spec)?,
                knn: scllm_benchmark::method::parse_options(spec)?,
            })) as Box<dyn BenchMethod>)
        });
    }
    reg.register_prefix("finetune:", |spec: &MethodSpec| {
        let strategy: Strategy =
            spec.strategy
                .as_deref()
                .unwrap_or("")
                .parse()
                .map_err(|e: String| {
                    BenchError::Config(format!(
                        "{}: method `{}`: {e}",
                        spec.config_file.display(),
                        spec.name
                    ))
                })?;
        Ok(Box::new(OnModel(FinetuneMethod {
            spec_name: spec.name.clone(),
            model: model_dir(spec)?,
            strategy,
            opts: scllm_benchmark::method::parse_options(spec)?,
        })) as Box<dyn BenchMethod>)
    });
    reg
}

/// One `scllm benchmark` run.
#[derive(Clone, Debug)]
pub struct BenchmarkJob {
    pub config: PathBuf,
    /// Report folder.
    pub output: PathBuf,
    pub skip_fewshot: bool,
    pub progress: bool,
}

/// Run every method of the config, write the report (results.json, results.md,
/// predictions.tsv, pictures) and return it with the files written.
pub fn benchmark(job: &BenchmarkJob) -> anyhow::Result<(BenchmarkReport, Vec<PathBuf>)> {
    let cfg = load_config(&job.config)?;
    let reg = registry();
    let report = run_benchmark(
        &cfg,
        &reg,
        &RunOptions {
            progress: job.progress,
            skip_fewshot: job.skip_fewshot,
        },
    )?;
    let files = write_report(&report, &job.output, Some(&pictures))?;
    Ok((report, files))
}

/// Confusion matrix and per-class F1 of every method that ran; the reliability diagram of those
/// with probabilities.
fn pictures(r: &BenchmarkReport, dir: &Path) -> scllm_benchmark::Result<Vec<PathBuf>> {
    use scllm_eval::plot::{plot_confusion_report, plot_per_class_f1_report, plot_reliability};
    let mut out = Vec::new();
    let fail = |e: scllm_eval::EvalError| BenchError::Method(format!("pictures: {e}"));
    for m in &r.methods {
        let Some(c) = &m.metrics else { continue };
        let stem = scllm_eval::plot::file_stem(&m.name);
        for ext in ["png", "svg"] {
            let name = format!("confusion_{stem}.{ext}");
            plot_confusion_report(
                dir.join(&name),
                c,
                &format!("{}: {} (row-normalised)", r.name, m.name),
            )
            .map_err(fail)?;
            out.push(PathBuf::from(name));
            let name = format!("f1_{stem}.{ext}");
            plot_per_class_f1_report(
                dir.join(&name),
                c,
                &format!("{}: {} F1 per class", r.name, m.name),
            )
            .map_err(fail)?;
            out.push(PathBuf::from(name));
            if let Some(cal) = &m.calibration {
                let name = format!("reliability_{stem}.{ext}");
                plot_reliability(
                    dir.join(&name),
                    cal,
                    &format!("{}: {} reliability (known types)", r.name, m.name),
                )
                .map_err(fail)?;
                out.push(PathBuf::from(name));
            }
        }
    }
    Ok(out)
}
