//! One fine-tuning request as a user states it (`scllm finetune`'s flags, `scllm.tl.finetune`'s
//! arguments): the family's reference settings with the user's overrides, resolved into the
//! family's job and run, on a file's cells or on cells the caller holds.

use std::path::PathBuf;

use scllm_models::cellplm::prepare::ANNOTATION_HVG;
use scllm_models::{Family, Strategy};
use scllm_train::SplitSpec;

use crate::bad;
use crate::cellplm_annotation::{finetune_cellplm, set_train_config, CellPlmFinetuneJob};
use crate::cells::Cells;
use crate::finetune::{finetune, peft_config, train_config, FinetuneJob};

/// What to fine-tune and how; `None` leaves the family's reference default.
#[derive(Clone, Debug)]
pub struct FinetuneRequest {
    /// The base model folder (any family); never modified.
    pub model: PathBuf,
    /// Geneformer: a folder with the model's dictionary pickles.
    pub dictionaries: Option<PathBuf>,
    /// The labelled cells' file (with [`Cells::Memory`]: their name in messages).
    pub train: PathBuf,
    /// `obs` column with the cell types.
    pub label: String,
    pub method: Strategy,
    /// Output folder for the adapter.
    pub output: PathBuf,
    /// Validate on the cells with this obs value (`COLUMN=VALUE`), else on a stratified random
    /// `val_fraction` of the cells.
    pub val_by: Option<String>,
    pub val_fraction: f64,
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub patience: Option<usize>,
    pub max_len: Option<usize>,
    pub min_cells_per_class: Option<usize>,
    pub gene_col: Option<String>,
    pub adapter_ratio: Option<f64>,
    pub lora_r: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub prefix_tokens: Option<usize>,
    pub layers: Option<Vec<usize>>,
    pub freeze_layers: Option<usize>,
    /// Continue an interrupted run from `output/checkpoint`.
    pub resume: bool,
    pub seed: u64,
    /// CellPLM: the `obs` column whose groups are attention sets.
    pub group_by: Option<String>,
    /// CellPLM: the number of most variable genes read (0: all of the model's list).
    pub hvg: Option<usize>,
    pub progress: bool,
}

impl FinetuneRequest {
    /// A request with `scllm finetune`'s defaults.
    pub fn new(
        model: PathBuf,
        train: PathBuf,
        label: String,
        method: Strategy,
        output: PathBuf,
    ) -> Self {
        FinetuneRequest {
            model,
            dictionaries: None,
            train,
            label,
            method,
            output,
            val_by: None,
            val_fraction: 0.1,
            epochs: None,
            lr: None,
            batch_size: None,
            patience: None,
            max_len: None,
            min_cells_per_class: None,
            gene_col: None,
            adapter_ratio: None,
            lora_r: None,
            lora_alpha: None,
            prefix_tokens: None,
            layers: None,
            freeze_layers: None,
            resume: false,
            seed: 0,
            group_by: None,
            hvg: None,
            progress: true,
        }
    }

    fn peft(&self) -> scllm_models::PeftConfig {
        peft_config(
            self.method,
            self.adapter_ratio,
            self.lora_r,
            self.lora_alpha,
            self.prefix_tokens,
            self.layers.clone(),
            self.freeze_layers,
        )
    }

    /// The flags that define the run (the seed, and the split: a column's value or a fraction),
    /// saved with the checkpoint so that `--resume` refuses other ones.
    fn run_flags(&self) -> Vec<(String, String)> {
        let split = match &self.val_by {
            Some(v) => ("--val-by".to_string(), v.clone()),
            None => ("--val-fraction".to_string(), self.val_fraction.to_string()),
        };
        vec![("--seed".into(), self.seed.to_string()), split]
    }

    fn split(&self) -> anyhow::Result<SplitSpec> {
        Ok(match &self.val_by {
            Some(v) => SplitSpec::parse_val_by(v)?,
            None => {
                if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
                    return Err(bad(format!(
                        "--val-fraction must be in (0, 1), got {}",
                        self.val_fraction
                    )));
                }
                SplitSpec::stratified(self.val_fraction, self.seed)
            }
        })
    }
}

/// Fine-tune as `req` says on `cells` (the file `req.train`, or the caller's) and save the
/// adapter in `req.output`. Returns the summary (its `family` says which family's it is).
pub fn run_finetune(req: &FinetuneRequest, cells: Cells) -> anyhow::Result<serde_json::Value> {
    let split = req.split()?;
    if scllm_models::folder::detect(&req.model)? == Family::CellPlm {
        return run_cellplm(req, split, cells);
    }
    for (set, flag) in [
        (req.group_by.is_some(), "--group-by"),
        (req.hvg.is_some(), "--hvg"),
    ] {
        if set {
            return Err(bad(format!(
                "{flag} applies to CellPLM models only (cells attending to each other in sets)"
            )));
        }
    }
    let folder = crate::model_dir::open(&req.model, None, req.dictionaries.as_deref())?;
    let (n_layers, max_len) = scllm_models::with_folder!(&folder, |f| {
        use scllm_models::ModelFolder;
        (
            f.n_layers(),
            req.max_len.unwrap_or_else(|| f.finetune_max_len()),
        )
    });
    let mut tc = train_config(
        folder.family(),
        n_layers,
        req.method,
        req.epochs,
        req.lr,
        req.batch_size,
        req.patience,
        max_len,
        req.seed,
    );
    tc.out_dir = Some(req.output.clone());
    tc.resume = req.resume;
    tc.run_flags = req.run_flags();
    tc.progress = req.progress;
    finetune(
        &FinetuneJob {
            model: req.model.clone(),
            train: req.train.clone(),
            label: req.label.clone(),
            method: req.method,
            peft: req.peft(),
            output: req.output.clone(),
            split,
            train_config: tc,
            max_len: Some(max_len),
            dictionaries: req.dictionaries.clone(),
            min_cells_per_class: req.min_cells_per_class,
            gene_col: req.gene_col.clone(),
        },
        cells,
    )
}

/// A CellPLM folder: the annotation pipeline's transductive training (docs/models/cellplm.md
/// §5) with the user's overrides.
fn run_cellplm(
    req: &FinetuneRequest,
    split: SplitSpec,
    cells: Cells,
) -> anyhow::Result<serde_json::Value> {
    let unsupported = [
        (req.max_len.is_some(), "--max-len"),
        (req.gene_col.is_some(), "--gene-col"),
        (req.dictionaries.is_some(), "--dictionaries"),
        (req.resume, "--resume"),
    ];
    crate::error::refuse_flags(&unsupported, |flag| {
        format!(
            "{flag} is not supported for CellPLM models (cells are the tokens, matched by \
             var.index; a run is not resumable yet)"
        )
    })?;
    let tc = set_train_config(req.epochs, req.lr, req.patience, req.seed, req.progress);
    finetune_cellplm(
        &CellPlmFinetuneJob {
            model: req.model.clone(),
            train: req.train.clone(),
            label: req.label.clone(),
            method: req.method,
            peft: req.peft(),
            output: req.output.clone(),
            split,
            group_by: req.group_by.clone(),
            set_size: req.batch_size,
            train_config: tc,
            hvg: req.hvg.unwrap_or(ANNOTATION_HVG),
            min_cells_per_class: req.min_cells_per_class,
        },
        cells,
    )
}
