//! The model methods of `task = "integration"` benchmarks and their run: `embed` (the zero-shot
//! cell embedding of the config's `model`, else the shipped default of `scllm embed`) and
//! `embed:<model folder>` (any family; a relative folder resolves against the config's). The
//! cells are embedded as `scllm embed` embeds a file's (CellPLM: attention sets by
//! `obs['batch']` when the cells have it, else `group_by`). `finetune:<strategy>`: the
//! embedding of the config's model fine-tuned on the cells' labels (`FinetuneEmbedding`).

use std::path::PathBuf;

use scllm_benchmark::integration::{
    run_integration, write_integration_report, Embedded, EmbeddingContext, EmbeddingMethod,
    EmbeddingRegistry, IntegrationReport,
};
use scllm_benchmark::integration_config::{load_integration, LoadedIntegration};
use scllm_models::{Precision, Strategy};

use crate::bench_methods::{BenchmarkJob, FinetuneMethod, FinetuneOptions};
use crate::embed::{embed_in_memory, EmbedJob};

const KEY: &str = "X_benchmark";

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EmbedOptions {
    batch_size: Option<usize>,
    max_len: Option<usize>,
    /// CellPLM: the obs column of the attention sets (`none`: all cells one set).
    group_by: Option<String>,
    precision: Option<Precision>,
}

struct ModelEmbedding {
    model: PathBuf,
    opts: EmbedOptions,
}

impl EmbeddingMethod for ModelEmbedding {
    fn embed(&self, ctx: &EmbeddingContext) -> Result<Embedded, String> {
        let mut a = ctx.cells.clone();
        a.source = Some(PathBuf::from("<benchmark cells>"));
        let mut job = EmbedJob::new(
            PathBuf::from("<benchmark cells>"),
            PathBuf::new(),
            self.model.clone(),
        );
        job.obsm_key = Some(KEY.into());
        job.progress = false;
        job.seed = ctx.seed;
        if let Some(b) = self.opts.batch_size {
            job.batch_size = b;
            job.set_size = Some(b);
        }
        job.max_len = self.opts.max_len;
        job.group_by = self.opts.group_by.clone();
        job.precision = self.opts.precision.unwrap_or_default();
        let out = embed_in_memory(&job, &mut a).map_err(|e| crate::error::one_line(&e))?;
        let m = a
            .obsm_get(KEY)
            .ok_or_else(|| "the model wrote no embedding".to_string())?;
        let (rows, dims) = m.shape();
        let x: Vec<f32> = m.to_dense_f64().into_iter().map(|v| v as f32).collect();
        if rows != ctx.cells.n_obs() {
            return Err(format!(
                "{rows} embedded rows for {} cells",
                ctx.cells.n_obs()
            ));
        }
        Ok(Embedded {
            x,
            dims,
            details: serde_json::json!({
                "model": self.model.display().to_string(),
                "embed": out.summary,
            }),
        })
    }
}

/// `finetune:<strategy>`: the embedding of a model fine-tuned on these cells' labels (every
/// cell, a stratified 10 % for validation; the annotation benchmark's training), as `annotate`
/// writes it (`obsm[..._adapted]`). Like scANVI in scIB it has seen the labels the
/// bio-conservation metrics score, so its report says `uses_labels`: not a zero-shot result.
struct FinetuneEmbedding(FinetuneMethod);

impl EmbeddingMethod for FinetuneEmbedding {
    fn embed(&self, ctx: &EmbeddingContext) -> Result<Embedded, String> {
        let a = self
            .0
            .adapt(ctx.cells, ctx.cells, ctx.label_column, ctx.seed)
            .map_err(|e| format!("{}: {}", self.0.spec_name, crate::error::one_line(&e)))?;
        if a.embeddings.len() != ctx.cells.n_obs() * a.dim {
            return Err(format!(
                "{}: {} embedding values for {} cells of {} dimensions",
                self.0.spec_name,
                a.embeddings.len(),
                ctx.cells.n_obs(),
                a.dim
            ));
        }
        Ok(Embedded {
            x: a.embeddings,
            dims: a.dim,
            details: serde_json::json!({
                "model": self.0.model.display().to_string(),
                "strategy": self.0.strategy.as_str(),
                "uses_labels": true,
                "finetune": a.predictions.details,
            }),
        })
    }
}

/// `pca`, `harmony`, `embed`, `embed:<folder>` and `finetune:<strategy>`.
pub fn integration_registry() -> EmbeddingRegistry {
    let mut reg = EmbeddingRegistry::builtin();
    let build = |name: &str, opts: Option<&toml::Table>, lc: &LoadedIntegration| {
        let model = match name.strip_prefix("embed:") {
            Some(p) => {
                let p = PathBuf::from(p);
                if p.is_absolute() {
                    p
                } else {
                    lc.dir.join(p)
                }
            }
            None => crate::model_dir::resolve_for_embedding(lc.model.as_deref())
                .map_err(|e| format!("{e:#}; or set `model = \"DIR\"` in the config"))?,
        };
        scllm_models::folder::detect(&model).map_err(|e| format!("{}: {e}", model.display()))?;
        let opts: EmbedOptions = match opts {
            Some(t) => t.clone().try_into().map_err(|e| format!("{e}"))?,
            None => EmbedOptions::default(),
        };
        Ok(Box::new(ModelEmbedding { model, opts }) as Box<dyn EmbeddingMethod>)
    };
    reg.add("embed", Box::new(build));
    reg.add("embed:", Box::new(build));
    reg.add(
        "finetune:",
        Box::new(
            |name: &str, opts: Option<&toml::Table>, lc: &LoadedIntegration| {
                let strategy: Strategy = name["finetune:".len()..].parse()?;
                // as `scllm finetune`: the config's model, else the shipped scGPT
                let model = crate::model_dir::resolve(lc.model.as_deref())
                    .map_err(|e| format!("{e:#}; or set `model = \"DIR\"` in the config"))?;
                let opts: FinetuneOptions = match opts {
                    Some(t) => t.clone().try_into().map_err(|e| format!("{e}"))?,
                    None => FinetuneOptions::default(),
                };
                Ok(Box::new(FinetuneEmbedding(FinetuneMethod {
                    spec_name: name.to_string(),
                    model,
                    strategy,
                    opts,
                })) as Box<dyn EmbeddingMethod>)
            },
        ),
    );
    reg
}

/// Runs an integration config and writes its report; returns it with the files written.
pub fn integration_benchmark(
    job: &BenchmarkJob,
) -> anyhow::Result<(IntegrationReport, Vec<PathBuf>)> {
    let lc = load_integration(&job.config)?;
    let report = run_integration(&lc, &integration_registry(), job.progress)?;
    let files = write_integration_report(&report, &job.output)?;
    Ok((report, files))
}
