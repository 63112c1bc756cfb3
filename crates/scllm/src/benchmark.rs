//! `scllm benchmark CONFIG.toml -o REPORT_DIR`: every method of a config on one split (and the
//! few-shot settings), scored the same way, with a results table, JSON, predictions and pictures.
//! The engine is `scllm-benchmark`; this file registers the model methods and draws the pictures.

use std::path::{Path, PathBuf};

use clap::Args;
use scllm_benchmark::method::BaselineMethod;
use scllm_benchmark::{
    load_config, render_main_table, run_benchmark, write_report, BenchMethod, BenchmarkReport,
    MethodRegistry, MethodSpec, Predictions, RunOptions,
};
use scllm_eval::run::{BaselineOptions, Method};
use scllm_io::{AnnData, Matrix, Values};

#[derive(Args, Debug)]
#[command(
    after_help = "The config names the data, the label column, the split (a held-out \
obs value, a stratified fraction, or two files), the methods and their options, and optionally \
few-shot settings; see configs/README.md. Methods: logreg, knn-pca, correlation (baselines), \
scgpt-knn (kNN on the model's <cls> embeddings), finetune:<strategy> (full, head, prefix, lora, \
token-prompt, encoder-prompt). REPORT_DIR receives results.json, results.md (the main table, \
the rare-type table, few-shot tables), predictions.tsv and pictures (confusion matrix and \
per-class F1 per method, PNG and SVG).\n\n\
Example (the committed fixtures, seconds on 2 cores):\n  \
scllm benchmark configs/tiny_kang_fixture.toml -o report/\n  \
scllm benchmark configs/kang2018_pbmc_lodo.toml -o kang_report/ --no-fewshot --json"
)]
pub struct BenchmarkArgs {
    /// Benchmark config (TOML)
    pub config: PathBuf,
    /// Report folder
    #[arg(short, long)]
    pub output: PathBuf,
    /// Skip the few-shot settings of the config
    #[arg(long)]
    pub no_fewshot: bool,
    /// Print results.json instead of the table
    #[arg(long)]
    pub json: bool,
}

/// `scgpt-knn`: cells embedded by the model (`<cls>`, as `scllm embed`), labels transferred by
/// cosine kNN: the zero-shot "native scLLM" baseline of the scPEFT paper's Table 2.
struct ScGptKnn {
    model: PathBuf,
    knn: BenchKnnOptions,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BenchKnnOptions {
    k: Option<usize>,
    max_len: Option<usize>,
    batch_size: Option<usize>,
    n_hvg: Option<usize>,
}

/// The `n_hvg` option of the model methods: train and query restricted to the training cells'
/// `n` most variable genes (scanpy's `seurat` flavour on log-normalised values, as the baselines
/// pick theirs), so that every expressed one fits in `n + 1` tokens. The reference tutorials feed
/// scGPT such a matrix (1,200-3,000 HVGs) rather than a random sample of all expressed genes,
/// which often misses the few marker genes. `None`: all genes.
pub(crate) fn hvg_subset(
    train: &AnnData,
    query: &AnnData,
    n: Option<usize>,
) -> anyhow::Result<(AnnData, AnnData)> {
    let Some(n) = n.filter(|&n| n < train.n_vars()) else {
        return Ok((train.clone(), query.clone()));
    };
    anyhow::ensure!(n > 0, "n_hvg must be at least 1");
    let log = scllm_eval::data::log_normalized(train, None)?;
    let keep = scllm_eval::run::select_hvg(&log.x, &log.genes, n, scllm_pp::HvgFlavor::Seurat)?;
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

fn embed_into(
    a: &mut AnnData,
    m: &scllm_models::ScGptModel,
    max_len: usize,
    bs: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let x = scllm_pp::to_csr_f32(a.x()?);
    let genes = scllm_tokenize::match_genes(&a.var, &m.vocab, None, Path::new("<benchmark data>"))?;
    let opts = scllm_models::embed::EmbedOptions {
        max_len,
        batch_size: bs,
        max_batch_tokens: bs * max_len,
        seed,
        ..Default::default()
    };
    let mut e = scllm_models::embed::Embedder::new(m, &genes, opts)?;
    let d = m.config.embsize;
    let mut emb = vec![0f32; x.nrows * d];
    e.embed_block(&x, &mut emb, &mut |_| {})?;
    a.obsm.retain(|(k, _)| k != "X_scGPT");
    a.set_obsm(
        "X_scGPT",
        Matrix::Dense {
            nrows: x.nrows,
            ncols: d,
            data: Values::F32(emb),
        },
    );
    Ok(())
}

impl BenchMethod for ScGptKnn {
    fn name(&self) -> String {
        "scgpt-knn".into()
    }
    fn trainable_params(&self) -> Option<usize> {
        Some(0)
    }
    fn run(
        &self,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> scllm_benchmark::Result<Predictions> {
        let err =
            |e: anyhow::Error| scllm_benchmark::BenchError::Method(format!("scgpt-knn: {e:#}"));
        let dev = scllm_models::device(scllm_models::DeviceKind::Cpu).map_err(|e| err(e.into()))?;
        let m = scllm_models::ScGptModel::load(
            &self.model,
            &scllm_models::LoadOptions::default(),
            &dev,
        )
        .map_err(|e| err(e.into()))?;
        let (max_len, bs) = (
            self.knn
                .max_len
                .or(self.knn.n_hvg.map(|n| n + 1))
                .unwrap_or(1200),
            self.knn.batch_size.unwrap_or(64),
        );
        let (mut tr, mut qu) = hvg_subset(train, query, self.knn.n_hvg).map_err(err)?;
        embed_into(&mut tr, &m, max_len, bs, seed).map_err(err)?;
        embed_into(&mut qu, &m, max_len, bs, seed).map_err(err)?;
        let mut o = BaselineOptions::new(Method::Knn, label);
        o.use_rep = Some("X_scGPT".into());
        o.k = self.knn.k.unwrap_or(15);
        o.seed = seed;
        BaselineMethod::new("scgpt-knn", o).run(&tr, &qu, label, seed)
    }
}

/// The config's `model`, else `$SCLLM_MODEL`, else the shipped small model.
pub(crate) fn model_dir(spec: &MethodSpec) -> scllm_benchmark::Result<PathBuf> {
    match &spec.model {
        Some(m) => Ok(m.clone()),
        None => crate::model_dir(None).map_err(|e| {
            scllm_benchmark::BenchError::Config(format!(
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
    reg.register("scgpt-knn", |spec: &MethodSpec| {
        Ok(Box::new(ScGptKnn {
            model: model_dir(spec)?,
            knn: scllm_benchmark::method::parse_options(spec)?,
        }) as Box<dyn BenchMethod>)
    });
    crate::finetune::register_benchmark_methods(&mut reg);
    reg
}

/// Confusion matrix and per-class F1 of every method that ran.
fn pictures(r: &BenchmarkReport, dir: &Path) -> scllm_benchmark::Result<Vec<PathBuf>> {
    use scllm_eval::plot::{plot_confusion_report, plot_per_class_f1_report};
    let mut out = Vec::new();
    let fail =
        |e: scllm_eval::EvalError| scllm_benchmark::BenchError::Method(format!("pictures: {e}"));
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
        }
    }
    Ok(out)
}

pub fn run(args: BenchmarkArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let reg = registry();
    let report = run_benchmark(
        &cfg,
        &reg,
        &RunOptions {
            progress: !args.json,
            skip_fewshot: args.no_fewshot,
        },
    )?;
    let files = write_report(&report, &args.output, Some(&pictures))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render_main_table(&report));
        eprintln!("report: {} ({} files)", args.output.display(), files.len());
    }
    let failed = report.failures();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|m| m.name.as_str()).collect();
        anyhow::bail!(
            "{} method(s) failed: {} (see results.json for why; the others' results were written)",
            failed.len(),
            names.join(", ")
        );
    }
    Ok(())
}
