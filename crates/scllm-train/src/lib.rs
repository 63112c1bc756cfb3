//! Fine-tuning for cell-type annotation, as scGPT's `Tutorial_Annotation` and scPEFT do it, on
//! burn's autodiff device.
//!
//! * [`data`]: an `.h5ad` and a label column to tokenised cells and class ids (genes matched to
//!   the model's vocabulary, `normalize_total` 1e4, `log1p` when X holds counts, per-cell binning,
//!   `<cls>` with value 0, expressed genes only, at most `max_len` tokens with the reference's
//!   gene sampling).
//! * [`split`]: validation cells by a column value (`donor=1015`) or a stratified random fraction.
//! * [`sampler`]: class weights `(1 - n_c/N)²`, the class-balanced `WeightedRandomSampler`, a
//!   seedable RNG whose state is saved with a checkpoint, and epoch batches grouped by length.
//! * [`trainer`]: Adam/AdamW, StepLR or cosine with warm-up, global gradient-norm clipping,
//!   (weighted) cross-entropy, early stopping, the best model kept, and exact resume from
//!   `OUT/checkpoint/`; a progress bar and `OUT/train_log.jsonl`.
//! * [`predict`]: class ids, softmax confidence and cell embeddings on the inference device.
//!
//! The model side is one small trait, [`CellClassifier`]: anything that gives class logits and
//! the cell embedding for a padded batch trains here (scGPT with or without adapters). What
//! trains is what has `require_grad`: freeze with `Module::no_grad` and re-enable parts.

pub mod data;
pub mod error;
pub mod predict;
pub mod pretrain;
pub mod sampler;
pub mod split;
pub mod trainer;

pub use data::{prepare_cells, AnnotationData, LabelOptions, PrepOptions, Prepared};
pub use error::{Result, TrainError};
pub use predict::{predict, PredictOptions, Prediction};
pub use pretrain::{pretrain, PretrainConfig, PretrainRun, PretrainSummary, StepLog};
pub use sampler::{class_counts, class_weights, SplitMix64, WeightedSampler};
pub use split::{Split, SplitSpec};
pub use trainer::{
    evaluate, load_module, macro_f1, save_module, train, CellClassifier, Classified, EarlyStopping,
    EpochLog, OptimizerKind, Schedule, TrainConfig, TrainData, TrainOutcome, Verdict,
};

pub use scllm_models::scgpt::BatchInput;
