//! The model methods of `scllm benchmark`, for any family: `embed-knn` (alias `scgpt-knn`:
//! zero-shot cell embeddings with cosine kNN label transfer, the scPEFT paper's "native" baseline)
//! and `finetune:<strategy>` (fine-tune on the training cells, predict the query); and the
//! benchmark run itself with its pictures.

use std::path::{Path, PathBuf};

use scllm_benchmark::method::BaselineMethod;
use scllm_benchmark::{
    load_config, run_benchmark, write_report, BenchError, BenchMethod, BenchmarkReport,
    MethodRegistry, MethodSpec, Predictions, RunOptions,
};
use scllm_eval::baselines::{BaselineOptions, Method};
use scllm_io::AnnData;
use scllm_models::{with_folder, ModelFolder, PeftConfig, Strategy, TokenOptions};
use scllm_tokenize::PrepOptions;
use scllm_train::SplitSpec;

use crate::annotate::{annotate_cells, QueryOptions};
use crate::finetune::{finetune_on, train_config, FinetuneSpec};

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
    batch_size: Option<usize>,
    n_hvg: Option<usize>,
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
        let dev = scllm_models::device(scllm_models::DeviceKind::Cpu)?;
        let (m, _) = folder.load(0, false, &dev)?;
        let topts = TokenOptions {
            max_len: self.knn.max_len.or(self.knn.n_hvg.map(|n| n + 1)),
            seed,
        };
        let bs = self.knn.batch_size.unwrap_or(64);
        let key = folder.embedding().obsm_key;
        let (mut tr, mut qu) = hvg_subset(train, query, self.knn.n_hvg)?;
        crate::embed::embed_into(folder, &m, &mut tr, key, &topts, bs, &dev)?;
        crate::embed::embed_into(folder, &m, &mut qu, key, &topts, bs, &dev)?;
        let mut o = BaselineOptions::new(Method::Knn, label);
        o.use_rep = Some(key.into());
        o.k = self.knn.k.unwrap_or(15);
        o.seed = seed;
        Ok(BaselineMethod::new(&self.name, o).run(&tr, &qu, label, seed)?)
    }
}

/// `finetune:<strategy>`: fine-tune on the training cells (validation: a stratified 10% of
/// them), predict the query.
struct FinetuneMethod {
    spec_name: String,
    model: PathBuf,
    strategy: Strategy,
    opts: FinetuneOptions,
}

#[derive(serde::Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct FinetuneOptions {
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    patience: Option<usize>,
    max_len: Option<usize>,
    val_fraction: Option<f64>,
    /// Restrict to the training cells' n most variable genes (see [`hvg_subset`]).
    n_hvg: Option<usize>,
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
        let o = &self.opts;
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
        let ft = finetune_on(
            folder,
            &train,
            Path::new("<benchmark training cells>"),
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
        let ann = annotate_cells(
            folder,
            &ft.model,
            &ft.data.classes,
            &query,
            Path::new("<benchmark query cells>"),
            &QueryOptions {
                max_len,
                batch_size: 64,
                gene_col: None,
                seed,
                progress: false,
                only_genes: ft.meta.genes.clone(),
            },
        )?;
        Ok(Predictions {
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
        let stem: String = m
            .name
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '-' {
                    ch
                } else {
                    '_'
                }
            })
            .collect();
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
