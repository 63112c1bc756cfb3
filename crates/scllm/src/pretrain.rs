//! `scllm pretrain`: scGPT-style masked expression modelling on many `.h5ad` files.

use std::path::PathBuf;

use clap::Args;
use scllm_train::cellplm_pretrain::{pretrain_cellplm, CellPlmPretrainConfig};
use scllm_train::{pretrain, PretrainConfig, PretrainRun};

#[derive(Args, Debug)]
#[command(
    after_help = "Objectives as scGPT's pretraining: masked value prediction (GEP: masked \
MSE of the expression decoder over the masked positions, mask ratio drawn per step from \
[train] mask_ratios, default 0.25/0.5/0.75; never <cls> or padding) plus the cell-embedding \
objective (GEPC, the MVC head). Input: expressed genes only, per-cell binning, <cls> first with \
value -2, genes sampled to [data] max_len. Cells stream from the files through a shuffle \
buffer (bounded memory); [data] exclude leaves out test cells (e.g. \
\"kang2018_pbmc.h5ad:donor=1015\"). Warm-up then cosine learning rate, global gradient clipping, \
checkpoints every [train] checkpoint_every steps; --resume continues exactly. MODEL_DIR receives \
args.json, vocab.json, best_model.pt (loads in the reference scgpt too), model.safetensors, \
pretrain_log.jsonl and loss_curve.png. A config with [model] family = \"cellplm\" pretrains \
CellPLM (masked-feature NB autoencoding, docs/models/cellplm.md), checkpointed and resumable the \
same way, into cellplm.config.json + cellplm.best.ckpt.\n\n\
Example:\n  \
scllm pretrain --data ../shared/data --config configs/pretrain_small.toml -o models/scllm-small\n  \
scllm pretrain --data a.h5ad b.h5ad --config cfg.toml -o out/ --resume"
)]
pub struct PretrainArgs {
    /// .h5ad files or folders of them
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Pretraining config (TOML: `[model]`, `[data]`, `[train]`)
    #[arg(long)]
    pub config: PathBuf,
    /// Model folder to write
    #[arg(short, long)]
    pub output: PathBuf,
    /// Continue from OUTPUT/checkpoint
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps in this call (the run can be resumed)
    #[arg(long)]
    pub max_steps_now: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// The run the flags describe, with either family's config.
fn run_of<'a, C>(a: &'a PretrainArgs, config: &'a C) -> PretrainRun<'a, C> {
    PretrainRun {
        config,
        inputs: &a.data,
        out: &a.output,
        resume: a.resume,
        progress: !a.json,
        stop_after_steps: a.max_steps_now,
    }
}

pub fn run(a: PretrainArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .map_err(|e| scllm_tasks::bad(format!("{}: cannot read: {e}", a.config.display())))?;
    if CellPlmPretrainConfig::names_cellplm(&text) {
        return run_cellplm(&a);
    }
    let cfg = PretrainConfig::from_toml_file(&a.config)?;
    let s = pretrain(&run_of(&a, &cfg))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        eprintln!(
            "{} steps, {} cells ({:.1} cells/s this call), final loss {:.4}; {} parameters, vocab {}; {}",
            s.steps,
            s.cells,
            s.cells_per_s,
            s.final_loss.unwrap_or(f64::NAN),
            s.parameters,
            s.vocab_size,
            if s.finished {
                format!("model in {}", a.output.display())
            } else {
                format!("checkpoint in {}/checkpoint (continue with --resume)", a.output.display())
            }
        );
    }
    Ok(())
}

/// `[model] family = "cellplm"`: CellPLM's masked NB autoencoding (docs/models/cellplm.md §7.7).
fn run_cellplm(a: &PretrainArgs) -> anyhow::Result<()> {
    let cfg = CellPlmPretrainConfig::from_toml_file(&a.config)?;
    let s = pretrain_cellplm(&run_of(a, &cfg))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        eprintln!(
            "{} steps, {} cells seen in {:.0} s, final loss {:.3}; {} parameters, {} genes; {}",
            s.steps,
            s.cells_seen,
            s.seconds,
            s.final_loss.unwrap_or(f64::NAN),
            s.parameters,
            s.genes,
            if s.finished {
                format!("model in {}", s.output)
            } else {
                format!(
                    "checkpoint in {}/checkpoint (continue with --resume)",
                    s.output
                )
            }
        );
    }
    Ok(())
}
