//! The model verbs of scllm, for any model family: each is one job struct and one function
//! (the CLI parses its arguments into the job; the Python package will build the same jobs).
//!
//! * [`embed`]: cell embeddings into `obsm`, in memory or streamed.
//! * [`check`]: the preflight: genes matched, what X holds against what the model needs.
//! * [`convert`]: a checkpoint's load report, and the weights saved as safetensors.
//! * [`finetune`]: adapt a model to labelled cells with one of six strategies; parameter counts.
//! * [`annotate`]: predict cell types of a query with a saved adapter.
//! * [`cellplm_annotation`]: `finetune` and `annotate` for CellPLM, whose cells attend to each
//!   other in sets (transductive fine-tuning, set-wise prediction).
//! * [`bench_methods`]: the model methods of `scllm benchmark` (zero-shot kNN, fine-tuning).
//! * [`integration_bench`]: `task = "integration"` benchmarks: models' zero-shot embeddings
//!   beside PCA and Harmony, scored with the scIB metrics.
//!
//! The model folder's family is detected ([`scllm_models::open_folder`]); each verb is written
//! once, generically over [`scllm_models::ModelFolder`] (the token families); CellPLM takes the
//! set-wise paths.

pub mod annotate;
pub mod annotate_job;
pub mod annotation_output;
pub mod bench_methods;
pub mod cellplm_annotation;
pub mod cells;
pub mod check;
pub mod convert;
pub mod device;
pub mod embed;
pub mod error;
pub mod finetune;
pub mod finetune_request;
pub mod integration_bench;
pub mod learning_curves;
pub mod model_cache;
pub mod model_dir;
pub mod precision_check;
pub mod strategy_counts;

pub use error::{bad, is_bad_input, one_line, BadInput};
