//! `scllm finetune` (adapt a scGPT model to a labelled reference with one of six strategies) and
//! `scllm annotate` (predict cell types of a query with the adapted model).

use std::path::{Path, PathBuf};

use clap::Args;
use scllm_benchmark::{BenchMethod, MethodRegistry, MethodSpec, Predictions};
use scllm_io::{read_h5ad, write_h5ad, AnnData, Column, Compression, Matrix, Values};
use scllm_models::burn::module::Module;
use scllm_models::{
    count_params, load_adapter, read_adapter_meta, save_adapter, sha256_file, AdapterMeta,
    LoadOptions, PeftConfig, ScGptBuild, ScGptConfig, ScGptModel, Strategy,
};
use scllm_tokenize::GeneVocab;
use scllm_train::{
    predict, train, AnnotationData, LabelOptions, PredictOptions, PrepOptions, SplitSpec,
    TrainConfig, TrainData,
};
use serde_json::json;

use crate::bad;

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Strategies (He et al. 2024, scPEFT): full (every weight), head (the \
classifier only), prefix (64 learned tokens per layer after <cls>), lora (rank 8 on q and v), \
token-prompt (an adapter in the value encoder), encoder-prompt (two adapters in each of layers \
0-5). The base weights never change: the adapter (adapter.safetensors + adapter.json with the \
strategy, labels, genes and the base checkpoint's SHA-256) is saved in OUT with train_log.jsonl, \
learning_curves.png and a resumable checkpoint/. Defaults: full and head train as scGPT's \
Tutorial_Annotation (Adam lr 1e-4, batch 32, 10 epochs, StepLR 0.9); the adapters as scPEFT \
(lr 5e-5, batch 50, 20 epochs, patience 15, class-weighted loss, class-balanced sampler).\n\n\
Example:\n  \
scllm finetune --model scGPT_human --train ref.h5ad --label cell_type --method encoder-prompt \\\n    \
--val-by donor=1015 -o adapters/encoder_prompt\n  \
scllm finetune --model scGPT_human --method lora --n-classes 8 --dry-run --json\n  \
scllm annotate --model scGPT_human --adapter adapters/encoder_prompt query.h5ad -o annotated.h5ad"
)]
pub struct FinetuneArgs {
    /// Model folder (args.json, vocab.json, best_model.pt; default: the shipped
    /// models/scllm-small, or $SCLLM_MODEL)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Labelled reference .h5ad
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// obs column with the cell types
    #[arg(long, default_value = "cell_type")]
    pub label: String,
    /// full | head | prefix | lora | token-prompt | encoder-prompt
    #[arg(long)]
    pub method: Strategy,
    /// Output folder for the adapter
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Validate on the cells with this obs value (e.g. donor=1015)
    #[arg(long, value_name = "COLUMN=VALUE", conflicts_with = "val_fraction")]
    pub val_by: Option<String>,
    /// Validate on a stratified random fraction of the cells
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Stop after this many epochs worse than the best validation loss
    #[arg(long)]
    pub patience: Option<usize>,
    /// Longest cell in tokens, <cls> included (scPEFT: 2001)
    #[arg(long, default_value_t = 2001)]
    pub max_len: usize,
    /// Leave out classes with fewer cells (otherwise a class with one cell is an error)
    #[arg(long)]
    pub min_cells_per_class: Option<usize>,
    /// var column with gene symbols (default: the index)
    #[arg(long)]
    pub gene_col: Option<String>,
    /// Adapter bottleneck as a fraction of d (scPEFT: 0.25)
    #[arg(long)]
    pub adapter_ratio: Option<f64>,
    /// LoRA rank
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha (scaling alpha/r)
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Prefix tokens per layer
    #[arg(long)]
    pub prefix_tokens: Option<usize>,
    /// Layers that get adapters (encoder-prompt, lora, prefix), e.g. 0,1,2
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// Continue an interrupted run from OUT/checkpoint
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Count trainable and total parameters of every strategy, without training (needs only
    /// args.json and vocab.json)
    #[arg(long)]
    pub dry_run: bool,
    /// Classes of the head for --dry-run without --train
    #[arg(long)]
    pub n_classes: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

fn peft_config(a: &FinetuneArgs) -> PeftConfig {
    let mut p = PeftConfig::default();
    if let Some(r) = a.adapter_ratio {
        p.adapter_mlp_ratio = r;
    }
    if let Some(r) = a.lora_r {
        p.lora_r = r;
    }
    if let Some(x) = a.lora_alpha {
        p.lora_alpha = x;
    }
    if let Some(n) = a.prefix_tokens {
        p.prefix_tokens = n;
    }
    if let Some(l) = &a.layers {
        match a.method {
            Strategy::EncoderPrompt => p.encoder_prompt_layers = Some(l.clone()),
            Strategy::Lora => p.lora_layers = Some(l.clone()),
            Strategy::Prefix => p.prefix_layers = Some(l.clone()),
            _ => {}
        }
    }
    p
}

/// `args.json` and `vocab.json` of a model folder (specials appended as the loader does).
fn model_files(dir: &Path) -> anyhow::Result<(ScGptConfig, GeneVocab)> {
    if !dir.is_dir() {
        return Err(bad(format!(
            "{}: not a model folder (expected args.json, vocab.json and best_model.pt)",
            dir.display()
        )));
    }
    let cfg = ScGptConfig::from_json_file(dir.join("args.json"))?;
    let mut vocab = GeneVocab::from_json_file(dir.join("vocab.json"))?;
    vocab.append_missing(&[cfg.pad_token.as_str(), "<cls>", "<eoc>"]);
    Ok((cfg, vocab))
}

/// The training settings of a strategy (the references' defaults), with the user's overrides.
pub fn train_config(
    method: Strategy,
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    patience: Option<usize>,
    max_len: usize,
    seed: u64,
) -> TrainConfig {
    let mut c = if method.freezes_backbone() && method != Strategy::Head {
        TrainConfig::scpeft()
    } else {
        TrainConfig::default()
    };
    if let Some(e) = epochs {
        c.epochs = e;
    }
    if let Some(l) = lr {
        c.lr = l;
    }
    if let Some(b) = batch_size {
        c.batch_size = b;
        c.eval_batch_size = b;
    }
    if patience.is_some() {
        c.patience = patience;
    }
    c.max_batch_tokens = c.batch_size * max_len;
    c.seed = seed;
    c
}

fn dry_run(a: &FinetuneArgs, model: &Path) -> anyhow::Result<()> {
    let (cfg, vocab) = model_files(model)?;
    let n_cls = match (a.n_classes, &a.train) {
        (Some(n), _) => n,
        (None, Some(t)) => {
            let adata = read_h5ad(t)?;
            let col = adata.obs_column(&a.label).map_err(|_| {
                bad(format!(
                    "{}: obs has no label column `{}` (columns: {})",
                    t.display(),
                    a.label,
                    adata.obs.column_names().join(", ")
                ))
            })?;
            let set: std::collections::BTreeSet<String> =
                (0..adata.n_obs()).filter_map(|i| col.get_str(i)).collect();
            set.len()
        }
        (None, None) => {
            return Err(bad(
                "--dry-run needs the number of classes: pass --n-classes N or --train REF.h5ad",
            ))
        }
    };
    let build = ScGptBuild {
        ntoken: vocab.len(),
        pad_id: vocab.special(&cfg.pad_token)? as usize,
        n_cls,
        do_mvc: false,
    };
    let peft = peft_config(a);
    let mut rows = Vec::new();
    for s in Strategy::ALL {
        let (t, total) = count_params(&cfg, &build, s, &peft)?;
        rows.push(json!({"method": s.as_str(), "trainable": t, "total": total,
                         "trainable_fraction": t as f64 / total as f64,
                         "chosen": s == a.method}));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": model.display().to_string(), "n_classes": n_cls,
                "vocab_size": vocab.len(), "strategies": rows}))?
        );
    } else {
        println!(
            "{} ({} layers, d {}, vocab {}), {n_cls} classes:",
            model.display(),
            cfg.nlayers,
            cfg.embsize,
            vocab.len()
        );
        println!(
            "  {:<15} {:>12} {:>12} {:>8}",
            "method", "trainable", "total", "%"
        );
        for r in &rows {
            println!(
                "  {:<15} {:>12} {:>12} {:>7.2}%{}",
                r["method"].as_str().unwrap_or(""),
                r["trainable"],
                r["total"],
                100.0 * r["trainable_fraction"].as_f64().unwrap_or(0.0),
                if r["chosen"] == true {
                    "  <- --method"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// What [`finetune_on`] produced.
pub struct Finetuned {
    pub model: scllm_models::ScGpt,
    pub meta: AdapterMeta,
    pub data: AnnotationData,
    pub outcome_summary: serde_json::Value,
}

/// Fine-tune the model in `model_dir` on `adata`'s labelled cells.
#[allow(clippy::too_many_arguments)]
pub fn finetune_on(
    model_dir: &Path,
    adata: &AnnData,
    file: &Path,
    label: &str,
    method: Strategy,
    peft: &PeftConfig,
    split: &SplitSpec,
    cfg_train: &TrainConfig,
    prep_max_len: usize,
    gene_col: Option<String>,
    min_cells_per_class: Option<usize>,
) -> anyhow::Result<Finetuned> {
    let (cfg, vocab) = model_files(model_dir)?;
    let mut prep = PrepOptions::for_model(&cfg);
    prep.max_len = prep_max_len;
    prep.gene_col = gene_col;
    prep.seed = cfg_train.seed;
    let mut lopts = LabelOptions::new(label);
    lopts.min_cells_per_class = min_cells_per_class;
    let data = AnnotationData::from_anndata(adata, file, &vocab, &cfg, &prep, &lopts)?;
    let sp = data.split(split)?;
    let weights = scllm_models::find_weights(model_dir)?;
    let sha = sha256_file(&weights)?;
    let base_dev = burn_device();
    base_dev.seed(cfg_train.seed);
    let base = ScGptModel::load(
        model_dir,
        &LoadOptions {
            n_cls: data.n_classes(),
            do_mvc: false,
            strict: false,
            weights: Some(weights),
        },
        &base_dev,
    )?;
    let mut m = base.model.with_peft(method, peft, &base_dev)?.train();
    m.apply_trainability();
    let td = TrainData::new(&data, &sp);
    let out = train(m, &td, cfg_train, &base_dev.clone().autodiff())?;
    let best = out.best;
    let genes: Vec<String> = data
        .gene_match
        .ids
        .iter()
        .filter_map(|i| i.and_then(|i| vocab.token(i).map(|s| s.to_string())))
        .collect();
    let meta = AdapterMeta::for_model(&best, &cfg, data.classes.clone(), Some(genes), sha);
    let (trainable, total) = best.param_counts();
    let summary = json!({
        "split": sp.description, "train_cells": sp.train.len(), "val_cells": sp.val.len(),
        "classes": data.classes, "best_epoch": out.best_epoch, "best_val_loss": out.best_val_loss,
        "best_val_acc": out.history.iter().find(|h| h.epoch == out.best_epoch).map(|h| h.val_acc),
        "epochs_run": out.history.len(), "stopped_early": out.stopped_early,
        "interrupted": out.interrupted, "resumed_from": out.resumed_from,
        "trainable_params": trainable, "total_params": total,
        "data": data.summary(),
    });
    Ok(Finetuned {
        model: best,
        meta,
        data,
        outcome_summary: summary,
    })
}

fn burn_device() -> scllm_models::Device {
    scllm_models::Device::flex()
}

pub fn run_finetune(a: FinetuneArgs) -> anyhow::Result<()> {
    let model = crate::model_dir(a.model.as_deref())?;
    if a.dry_run {
        return dry_run(&a, &model);
    }
    let train_file = a
        .train
        .clone()
        .ok_or_else(|| bad("--train REF.h5ad is required (only --dry-run works without it)"))?;
    let out_dir = a
        .output
        .clone()
        .ok_or_else(|| bad("-o ADAPTER_DIR is required"))?;
    let split = match &a.val_by {
        Some(v) => SplitSpec::parse_val_by(v)?,
        None => {
            if !(a.val_fraction > 0.0 && a.val_fraction < 1.0) {
                return Err(bad(format!(
                    "--val-fraction must be in (0, 1), got {}",
                    a.val_fraction
                )));
            }
            SplitSpec::stratified(a.val_fraction, a.seed)
        }
    };
    let mut tc = train_config(
        a.method,
        a.epochs,
        a.lr,
        a.batch_size,
        a.patience,
        a.max_len,
        a.seed,
    );
    tc.out_dir = Some(out_dir.clone());
    tc.resume = a.resume;
    tc.progress = !a.json;
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| bad(format!("{}: cannot create: {e}", out_dir.display())))?;
    let t0 = std::time::Instant::now();
    let adata = read_h5ad(&train_file)?;
    let ft = finetune_on(
        &model,
        &adata,
        &train_file,
        &a.label,
        a.method,
        &peft_config(&a),
        &split,
        &tc,
        a.max_len,
        a.gene_col.clone(),
        a.min_cells_per_class,
    )?;
    save_adapter(&ft.model, &out_dir, &ft.meta)?;
    let log = out_dir.join("train_log.jsonl");
    let mut pictures = Vec::new();
    if let Ok(recs) = scllm_eval::plot::read_training_log(&log) {
        let p = out_dir.join("learning_curves.png");
        if scllm_eval::plot::plot_learning_curves(
            &p,
            &recs,
            &format!("finetune {} on {}", a.method, train_file.display()),
        )
        .is_ok()
        {
            pictures.push(p.display().to_string());
        }
    }
    let mut s = ft.outcome_summary;
    s["method"] = json!(a.method.as_str());
    s["adapter"] = json!(out_dir.display().to_string());
    s["seconds"] = json!(t0.elapsed().as_secs_f64());
    s["pictures"] = json!(pictures);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        eprintln!(
            "{}: best epoch {} (validation loss {:.4}, accuracy {:.4}); {} of {} parameters trained; adapter in {}",
            a.method,
            s["best_epoch"],
            s["best_val_loss"].as_f64().unwrap_or(f64::NAN),
            s["best_val_acc"].as_f64().unwrap_or(f64::NAN),
            s["trainable_params"],
            s["total_params"],
            out_dir.display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(after_help = "Writes obs['predicted_cell_type'] (categorical), \
obs['prediction_confidence'] (float32, softmax probability of the prediction) and the adapted \
model's <cls> embeddings in obsm (default key X_scGPT_adapted). With --unknown-below P, cells \
whose confidence is below P are labelled Unknown (a type the reference lacks is the usual \
reason). The adapter must have been trained on this base model: its recorded SHA-256 of the \
base weights is checked.\n\n\
Example:\n  \
scllm finetune --model scGPT_human --train ref.h5ad --method encoder-prompt -o ad/\n  \
scllm annotate --model scGPT_human --adapter ad/ query.h5ad -o annotated.h5ad --unknown-below 0.5\n  \
scllm evaluate annotated.h5ad --truth cell_type --pred predicted_cell_type")]
pub struct AnnotateArgs {
    /// Query .h5ad
    pub query: PathBuf,
    /// Base model folder (default: the shipped models/scllm-small, or $SCLLM_MODEL)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adapter folder written by `scllm finetune`
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Label cells whose confidence is below P as `Unknown`
    #[arg(long, value_name = "P")]
    pub unknown_below: Option<f64>,
    /// obsm key for the adapted model's cell embeddings
    #[arg(long, default_value = "X_scGPT_adapted")]
    pub obsm_key: String,
    #[arg(long, default_value_t = 2001)]
    pub max_len: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long)]
    pub gene_col: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

/// Load the base and attach a saved adapter (hash-checked).
pub fn load_adapted(
    model: &Path,
    adapter: &Path,
) -> anyhow::Result<(scllm_models::ScGpt, AdapterMeta, ScGptConfig, GeneVocab)> {
    let (cfg, vocab) = model_files(model)?;
    let meta = read_adapter_meta(adapter)?;
    let weights = scllm_models::find_weights(model)?;
    let sha = sha256_file(&weights)?;
    let dev = burn_device();
    let base = ScGptModel::load(
        model,
        &LoadOptions {
            n_cls: meta.n_cls,
            do_mvc: false,
            strict: false,
            weights: Some(weights),
        },
        &dev,
    )?;
    let (m, meta) = load_adapter(base.model, adapter, &sha, &dev)?;
    Ok((m, meta, cfg, vocab))
}

/// How query cells are tokenised and batched.
pub struct QueryOptions {
    pub max_len: usize,
    pub batch_size: usize,
    pub gene_col: Option<String>,
    pub seed: u64,
    pub progress: bool,
    /// Tokenize over these genes only: the adapter's training genes (`adapter.json` `genes`), so
    /// query cells see the gene set, and hence the per-cell bins, the model was trained on.
    pub only_genes: Option<Vec<String>>,
}

/// Per query cell: the predicted label, its probability and the adapted `<cls>` embedding.
pub struct Annotation {
    pub labels: Vec<String>,
    pub confidence: Vec<f32>,
    /// Row-major `[n, dim]`.
    pub embeddings: Vec<f32>,
    pub dim: usize,
    /// Genes the query cells were tokenized over.
    pub n_genes: usize,
}

/// Predict the cells of `adata` (tokenised as the model expects) with the adapted model `m`.
pub fn annotate_cells(
    m: &scllm_models::ScGpt,
    classes: &[String],
    adata: &AnnData,
    file: &Path,
    (cfg, vocab): (&ScGptConfig, &GeneVocab),
    q: &QueryOptions,
) -> anyhow::Result<Annotation> {
    let mut prep = PrepOptions::for_model(cfg);
    prep.max_len = q.max_len;
    prep.gene_col = q.gene_col.clone();
    prep.seed = q.seed;
    prep.only_genes = q.only_genes.clone();
    let p = scllm_train::data::prepare_cells(adata, file, vocab, cfg, &prep)?;
    let mut po = PredictOptions::new(p.pad_id, p.pad_value);
    po.batch_size = q.batch_size;
    po.max_batch_tokens = q.batch_size * q.max_len;
    po.progress = q.progress;
    let pr = predict(m, &p.cells, &po, &burn_device())?;
    Ok(Annotation {
        labels: pr
            .class_ids
            .iter()
            .map(|&c| classes[c as usize].clone())
            .collect(),
        confidence: pr.confidence,
        embeddings: pr.embeddings,
        dim: pr.dim,
        n_genes: p.gene_match.n_matched,
    })
}

pub fn run_annotate(a: AnnotateArgs) -> anyhow::Result<()> {
    let adapter = a.adapter.clone().ok_or_else(|| {
        bad("--adapter ADAPTER_DIR is required: a base model has no trained classifier. Train one with `scllm finetune`, or transfer labels zero-shot with `scllm embed` then `scllm baseline knn --use-rep X_scGPT`")
    })?;
    if let Some(p) = a.unknown_below {
        if !(0.0..=1.0).contains(&p) {
            return Err(bad(format!("--unknown-below must be in [0, 1], got {p}")));
        }
    }
    let t0 = std::time::Instant::now();
    let model = crate::model_dir(a.model.as_deref())?;
    let (m, meta, cfg, vocab) = load_adapted(&model, &adapter)?;
    let mut adata = read_h5ad(&a.query)?;
    let ann = annotate_cells(
        &m,
        &meta.labels,
        &adata,
        &a.query,
        (&cfg, &vocab),
        &QueryOptions {
            max_len: a.max_len,
            batch_size: a.batch_size,
            gene_col: a.gene_col.clone(),
            seed: a.seed,
            progress: !a.json,
            only_genes: meta.genes.clone(),
        },
    )?;
    let n_genes = ann.n_genes;
    let (mut labels, conf, emb, d) = (ann.labels, ann.confidence, ann.embeddings, ann.dim);
    let mut n_unknown = 0;
    if let Some(p) = a.unknown_below {
        for (l, &c) in labels.iter_mut().zip(&conf) {
            if (c as f64) < p {
                *l = "Unknown".into();
                n_unknown += 1;
            }
        }
    }
    let n = adata.n_obs();
    let opt: Vec<Option<String>> = labels.iter().cloned().map(Some).collect();
    adata
        .obs
        .set("predicted_cell_type", Column::categorical_from(&opt));
    adata
        .obs
        .set("prediction_confidence", Column::F32(conf.clone()));
    adata.obsm.retain(|(k, _)| k != &a.obsm_key);
    adata.set_obsm(
        &a.obsm_key,
        Matrix::Dense {
            nrows: n,
            ncols: d,
            data: Values::F32(emb),
        },
    );
    write_h5ad(&adata, &a.output, Compression::None)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in &labels {
        *counts.entry(l.clone()).or_default() += 1;
    }
    let s = json!({
        "query": a.query.display().to_string(), "output": a.output.display().to_string(),
        "cells": n, "strategy": meta.strategy.as_str(), "classes": meta.labels,
        "genes_used": n_genes,
        "unknown": n_unknown, "predicted_counts": counts,
        "mean_confidence": conf.iter().map(|&c| c as f64).sum::<f64>() / n.max(1) as f64,
        "obsm_key": a.obsm_key, "seconds": t0.elapsed().as_secs_f64(),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        eprintln!(
            "annotated {n} cells with the {} adapter ({} Unknown) → {}",
            meta.strategy,
            n_unknown,
            a.output.display()
        );
        for (k, v) in &counts {
            eprintln!("  {k:<30} {v}");
        }
    }
    Ok(())
}

/// `finetune:<strategy>` in `scllm benchmark`: fine-tune on the training cells (validation: a
/// stratified 10% of them), predict the query.
struct FinetuneMethod {
    spec_name: String,
    model: PathBuf,
    strategy: Strategy,
    opts: BenchFinetuneOptions,
}

#[derive(serde::Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct BenchFinetuneOptions {
    epochs: Option<usize>,
    lr: Option<f64>,
    batch_size: Option<usize>,
    patience: Option<usize>,
    max_len: Option<usize>,
    val_fraction: Option<f64>,
    /// Restrict to the training cells' n most variable genes (see `benchmark::hvg_subset`).
    n_hvg: Option<usize>,
}

impl BenchMethod for FinetuneMethod {
    fn name(&self) -> String {
        self.spec_name.clone()
    }
    fn run(
        &self,
        train: &AnnData,
        query: &AnnData,
        label: &str,
        seed: u64,
    ) -> scllm_benchmark::Result<Predictions> {
        let err = |e: anyhow::Error| {
            scllm_benchmark::BenchError::Method(format!("{}: {e:#}", self.spec_name))
        };
        let o = &self.opts;
        let max_len = o.max_len.or(o.n_hvg.map(|n| n + 1)).unwrap_or(2001);
        let (train, query) = crate::benchmark::hvg_subset(train, query, o.n_hvg).map_err(err)?;
        let (train, query) = (&train, &query);
        let mut tc = train_config(
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
        let ft = finetune_on(
            &self.model,
            train,
            Path::new("<benchmark training cells>"),
            label,
            self.strategy,
            &PeftConfig::default(),
            &split,
            &tc,
            max_len,
            None,
            Some(2),
        )
        .map_err(err)?;
        let (cfg, vocab) = model_files(&self.model).map_err(err)?;
        let ann = annotate_cells(
            &ft.model,
            &ft.data.classes,
            query,
            Path::new("<benchmark query cells>"),
            (&cfg, &vocab),
            &QueryOptions {
                max_len,
                batch_size: 64,
                gene_col: None,
                seed,
                progress: false,
                only_genes: ft.meta.genes.clone(),
            },
        )
        .map_err(err)?;
        Ok(Predictions {
            labels: ann.labels,
            confidence: Some(ann.confidence),
            trainable_params: ft.outcome_summary["trainable_params"]
                .as_u64()
                .map(|v| v as usize),
            details: ft.outcome_summary,
            notes: vec![],
        })
    }
}

pub fn register_benchmark_methods(reg: &mut MethodRegistry) {
    reg.register_prefix("finetune:", |spec: &MethodSpec| {
        let strategy: Strategy =
            spec.strategy
                .as_deref()
                .unwrap_or("")
                .parse()
                .map_err(|e: String| {
                    scllm_benchmark::BenchError::Config(format!(
                        "{}: method `{}`: {e}",
                        spec.config_file.display(),
                        spec.name
                    ))
                })?;
        let model = crate::benchmark::model_dir(spec)?;
        Ok(Box::new(FinetuneMethod {
            spec_name: spec.name.clone(),
            model,
            strategy,
            opts: scllm_benchmark::method::parse_options(spec)?,
        }) as Box<dyn BenchMethod>)
    });
}
