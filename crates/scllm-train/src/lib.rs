//! Fine-tuning for cell-type annotation, as scGPT's `Tutorial_Annotation`, scPEFT and
//! Geneformer's `Classifier` do it, on burn's autodiff device, for any model family.
//!
//! * [`labelled`]: an AnnData and a label column to a family's tokenised cells and class ids.
//! * [`validation`]: validation cells by a column value (`donor=1015`) or a stratified random
//!   fraction.
//! * [`sampler`]: class weights `(1 - n_c/N)²`, the class-balanced `WeightedRandomSampler`, a
//!   seedable RNG whose state is saved with a checkpoint, and epoch batches grouped by length.
//! * [`trainer`]: Adam/AdamW, StepLR or cosine with warm-up, global gradient-norm clipping,
//!   (weighted) cross-entropy, early stopping, the best model kept, and exact resume from
//!   `OUT/checkpoint/`; a progress bar and `OUT/train_log.jsonl`.
//! * [`predict`](mod@predict): class ids, softmax confidence and cell embeddings on the inference device.
//! * [`pretrain`](mod@pretrain): scGPT-style masked-expression pretraining.
//!
//! The model side is [`scllm_models::TokenModel`]: any token family's model with a classifier head
//! trains here. What trains is what has `require_grad` (set by `scllm_models::peft::attach`).

pub mod cellplm_pretrain;
pub mod error;
pub mod labelled;
pub mod predict;
pub mod pretrain;
pub mod sampler;
pub mod trainer;
pub mod transductive;
pub mod validation;

pub use error::{Result, TrainError};
pub use labelled::{AnnotationData, LabelOptions};
pub use predict::{predict, PredictOptions, Prediction};
pub use pretrain::{pretrain, PretrainConfig, PretrainRun, PretrainSummary, StepLog};
pub use sampler::{class_counts, class_weights, SplitMix64, WeightedSampler};
pub use trainer::{
    evaluate, load_module, macro_f1, read_train_log, save_module, train, EarlyStopping, EpochLog,
    OptimizerKind, Schedule, TrainConfig, TrainData, TrainOutcome, Verdict,
};
pub use transductive::{train_sets, SetTrainConfig, SetTrainData, SetTrainOutcome};
pub use validation::{Split, SplitSpec};
