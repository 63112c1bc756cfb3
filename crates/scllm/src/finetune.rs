//! `scllm finetune`: arguments into a [`FinetuneRequest`] (or a dry run), printing. The work is
//! `scllm_tasks::finetune_request`.

use std::path::PathBuf;

use clap::Args;
use scllm_models::Strategy;
use scllm_tasks::cells::Cells;
use scllm_tasks::finetune::{dry_run, peft_config};
use scllm_tasks::finetune_request::{run_finetune, FinetuneRequest};
use scllm_tasks::{bad, model_dir};
use serde_json::json;

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
    /// Model folder of any family (scGPT: args.json, vocab.json, best_model.pt; Geneformer:
    /// config.json and weights; default: the shipped models/scllm-small, or $SCLLM_MODEL)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Geneformer: a folder holding the model's dictionary pickles (token_dictionary.pkl,
    /// gene_median_dictionary.pkl, or the V2 *_gc104M.pkl set; default: the model folder, else
    /// the V1 dictionaries bundled with scllm)
    #[arg(long, value_name = "DIR")]
    pub dictionaries: Option<PathBuf>,
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
    /// Longest cell in tokens, special tokens included (default: the family's: scGPT 2001 as
    /// scPEFT, Geneformer its model input size)
    #[arg(long)]
    pub max_len: Option<usize>,
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
    /// Never train layers 0..K (Geneformer's freeze_layers; any strategy)
    #[arg(long, value_name = "K")]
    pub freeze_layers: Option<usize>,
    /// Continue an interrupted run from OUT/checkpoint
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Count trainable and total parameters of every strategy, without training (reads the
    /// folder's configuration and vocabulary, not its weights)
    #[arg(long)]
    pub dry_run: bool,
    /// Classes of the head for --dry-run without --train
    #[arg(long)]
    pub n_classes: Option<usize>,
    /// CellPLM: obs column whose groups are attention sets (default: `batch` where the file has
    /// it; `none`: all cells one set); --batch-size N then cuts groups into sets of at most N
    /// cells. Every labelled cell attends in its set; only training cells feed the loss
    #[arg(long, value_name = "COL")]
    pub group_by: Option<String>,
    /// CellPLM: read the N most variable genes of the training file (seurat_v3; the pipeline's
    /// 3000); 0 reads every gene of the model's list
    #[arg(long, value_name = "N")]
    pub hvg: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

fn peft_of(a: &FinetuneArgs) -> scllm_models::PeftConfig {
    peft_config(
        a.method,
        a.adapter_ratio,
        a.lora_r,
        a.lora_alpha,
        a.prefix_tokens,
        a.layers.clone(),
        a.freeze_layers,
    )
}

fn folder_options(a: &FinetuneArgs) -> scllm_models::FolderOptions {
    scllm_models::FolderOptions {
        weights: None,
        dictionaries: a.dictionaries.clone(),
    }
}

fn run_dry(a: &FinetuneArgs, model: &std::path::Path) -> anyhow::Result<()> {
    let n_cls = match (a.n_classes, &a.train) {
        (Some(n), _) => n,
        (None, Some(t)) => {
            let adata = scllm_io::read_h5ad(t)?;
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
    let (describe, rows) = dry_run(model, &folder_options(a), n_cls, &peft_of(a))?;
    if a.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("serialisable");
                v["chosen"] = json!(r.method == a.method);
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": model.display().to_string(), "description": describe,
                "n_classes": n_cls, "strategies": rows}))?
        );
    } else {
        println!("{} ({describe}), {n_cls} classes:", model.display());
        println!(
            "  {:<15} {:>12} {:>12} {:>8}",
            "method", "trainable", "total", "%"
        );
        for r in &rows {
            println!(
                "  {:<15} {:>12} {:>12} {:>7.2}%{}",
                r.method.as_str(),
                r.trainable,
                r.total,
                100.0 * r.trainable_fraction,
                if r.method == a.method {
                    "  <- --method"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

pub fn run(a: FinetuneArgs) -> anyhow::Result<()> {
    let model = model_dir::resolve(a.model.as_deref())?;
    if a.dry_run {
        return run_dry(&a, &model);
    }
    let train = a
        .train
        .clone()
        .ok_or_else(|| bad("--train REF.h5ad is required (only --dry-run works without it)"))?;
    let output = a
        .output
        .clone()
        .ok_or_else(|| bad("-o ADAPTER_DIR is required"))?;
    let s = run_finetune(
        &FinetuneRequest {
            model,
            dictionaries: a.dictionaries.clone(),
            train,
            label: a.label.clone(),
            method: a.method,
            output: output.clone(),
            val_by: a.val_by.clone(),
            val_fraction: a.val_fraction,
            epochs: a.epochs,
            lr: a.lr,
            batch_size: a.batch_size,
            patience: a.patience,
            max_len: a.max_len,
            min_cells_per_class: a.min_cells_per_class,
            gene_col: a.gene_col.clone(),
            adapter_ratio: a.adapter_ratio,
            lora_r: a.lora_r,
            lora_alpha: a.lora_alpha,
            prefix_tokens: a.prefix_tokens,
            layers: a.layers.clone(),
            freeze_layers: a.freeze_layers,
            resume: a.resume,
            seed: a.seed,
            group_by: a.group_by.clone(),
            hvg: a.hvg,
            progress: !a.json,
        },
        Cells::File,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    // CellPLM picks its best epoch by validation macro-F1, the token families by loss
    let best = match s["best_val_macro_f1"].as_f64() {
        Some(f1) => format!("validation macro-F1 {f1:.4}"),
        None => format!(
            "validation loss {:.4}",
            s["best_val_loss"].as_f64().unwrap_or(f64::NAN)
        ),
    };
    eprintln!(
        "{}: best epoch {} ({best}, accuracy {:.4}); {} of {} parameters trained; adapter in {}",
        a.method,
        s["best_epoch"],
        s["best_val_acc"].as_f64().unwrap_or(f64::NAN),
        s["trainable_params"],
        s["total_params"],
        output.display()
    );
    Ok(())
}
