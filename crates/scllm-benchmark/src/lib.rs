//! The engine behind `scllm benchmark CONFIG.toml -o REPORT_DIR`: one TOML file says which data,
//! which split, which methods and which few-shot settings; the runner builds the split once, runs
//! every method (timing it and reading its peak memory), scores it with `scllm-eval`'s
//! scikit-learn-parity metrics, and writes `results.json`, `results.md` and `predictions.tsv`.
//!
//! * [`config`]: the TOML schema ([`BenchConfig`]), path resolution (`${SHARED}`), validation.
//! * [`train_query_split`]: reading the files and building train / query sets ([`Split`]).
//! * [`method`]: the [`BenchMethod`] trait, the built-in baselines (`logreg`, `knn-pca`,
//!   `correlation`) and the [`MethodRegistry`] where the caller plugs in model methods
//!   (`scgpt-knn`, `finetune:<strategy>`).
//! * [`fewshot`]: stratified subsampling (fractions, k shots per class) and mean ± 95% CI.
//! * [`runner`]: [`run_benchmark`]; [`memory`]: what "peak memory" means here.
//! * `task = "integration"` configs: [`integration_config`] (schema) and [`integration`] (the
//!   embedding methods `pca` and `harmony`, the scIB metrics of each, the report).
//! * [`report`]: the report files and [`render_main_table`] for the CLI to print.
//! * Novel types and uncertainty (configs with `novel` / `coverage`): [`uncertainty`] (per
//!   method: calibration, novel-type results, conformal sets) and [`uncertainty_tables`] (their
//!   `results.md` sections); [`stack_cells`] lets a method predict query and held-out cells in one
//!   run.

pub mod config;
pub mod fewshot;
pub mod integration;
pub mod integration_config;
pub mod memory;
pub mod method;
pub mod report;
pub mod runner;
pub mod stack_cells;
pub mod train_query_split;
pub mod uncertainty;
pub mod uncertainty_tables;

pub use config::{load_config, BenchConfig, LoadedConfig};
pub use method::{BenchMethod, MethodFactory, MethodRegistry, MethodSpec, Predictions};
pub use report::{
    render_fewshot_tables, render_main_table, render_markdown, render_rare_table, write_report,
    BenchmarkReport, PictureHook,
};
pub use runner::{run_benchmark, RunOptions};
pub use train_query_split::{build_split, Split};

/// What went wrong, in words a user can act on: messages name the config file and the field.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The config (or the data it points at) cannot be used as given.
    #[error("{0}")]
    Config(String),
    /// A method failed while running.
    #[error("{0}")]
    Method(String),
    #[error(transparent)]
    Eval(#[from] scllm_eval::EvalError),
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

impl BenchError {
    /// A problem with the config or its data (exit 2), not a failure of scllm.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            BenchError::Config(_) | BenchError::Eval(_) | BenchError::Io(_)
        )
    }
}

pub(crate) fn cfg_err(msg: impl Into<String>) -> BenchError {
    BenchError::Config(msg.into())
}
