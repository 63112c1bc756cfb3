//! `task = "integration"` configs: one file of several batches, methods that each produce an
//! embedding of all its cells, the scIB metrics of every embedding (scllm-integrate).
//!
//! ```toml
//! task = "integration"
//! name = "kang2018_pbmc_integration"     # optional; default: the config file's stem
//! label = "cell_type"                    # obs column with the cell types (default cell_type)
//! batch = "donor"                        # obs column with the batches
//! methods = ["pca", "harmony", "embed"]  # see `integration`
//! model = "models/scllm-small"           # optional: the model of `embed` (default: shipped)
//! seed = 0
//! n_hvg = 2000                           # genes of the PCA (seurat HVGs of log1p CP10k)
//! leiden = false                         # also Leiden NMI/ARI
//!
//! [data]
//! file = "${SHARED}/kang2018_pbmc.h5ad"
//! include = [{ column = "demuxlet_cls", values = ["SNG"] }]
//! exclude = []
//! drop_labels = []
//! max_cells_per_batch = 1000              # optional: a seeded draw per batch
//!
//! [options.embed]                        # per-method options
//! batch_size = 64
//! ```
//!
//! Paths resolve as in annotation configs (`${SHARED}`, relative to the config's folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{check_methods, resolve_path, Filter};
use crate::{cfg_err, BenchError, Result};

/// The config's task: annotation (the default) or integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Annotation,
    Integration,
}

/// The `task` a config's text names (`annotation` when absent); unknown tasks are refused.
pub fn task_of(text: &str, path: &Path) -> Result<Task> {
    let cfg = path.display().to_string();
    let t: toml::Table = toml::from_str(text).map_err(|e| {
        cfg_err(format!(
            "{cfg}: {}",
            e.to_string().trim_end().replace('\n', "\n  ")
        ))
    })?;
    match t.get("task") {
        None => Ok(Task::Annotation),
        Some(toml::Value::String(s)) if s == "annotation" => Ok(Task::Annotation),
        Some(toml::Value::String(s)) if s == "integration" => Ok(Task::Integration),
        Some(other) => Err(cfg_err(format!(
            "{cfg}: field `task`: {other} is not a task; use \"annotation\" (the default) or \"integration\""
        ))),
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    pub task: String,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default = "default_label")]
    pub label: String,
    pub batch: String,
    pub methods: Vec<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_hvg")]
    pub n_hvg: usize,
    #[serde(default)]
    pub leiden: bool,
    pub data: IntegrationData,
    #[serde(default)]
    pub options: BTreeMap<String, toml::Table>,
}

fn default_label() -> String {
    "cell_type".into()
}
fn default_hvg() -> usize {
    2000
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationData {
    pub file: String,
    #[serde(default)]
    pub include: Vec<Filter>,
    #[serde(default)]
    pub exclude: Vec<Filter>,
    #[serde(default)]
    pub drop_labels: Vec<String>,
    pub max_cells_per_batch: Option<usize>,
}

/// An integration config with its paths resolved and fields checked.
#[derive(Clone, Debug)]
pub struct LoadedIntegration {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub text: String,
    pub config: IntegrationConfig,
    pub file: PathBuf,
    pub model: Option<PathBuf>,
}

impl LoadedIntegration {
    /// The config file, for messages.
    pub fn file_name(&self) -> String {
        self.path.display().to_string()
    }
    /// The benchmark's name (the `name` field, else the file stem).
    pub fn name(&self) -> String {
        self.config.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }
}

/// Reads and checks an integration config.
pub fn load_integration(path: impl AsRef<Path>) -> Result<LoadedIntegration> {
    let path = path.as_ref().to_path_buf();
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let cfg = path.display().to_string();
    let config: IntegrationConfig = toml::from_str(&text).map_err(|e| {
        cfg_err(format!(
            "{cfg}: {}",
            e.to_string().trim_end().replace('\n', "\n  ")
        ))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    check_methods(
        &cfg,
        &config.methods,
        &config.options,
        "[\"pca\", \"harmony\"]",
    )?;
    if config.n_hvg == 0 {
        return Err(cfg_err(format!(
            "{cfg}: field `n_hvg`: 0 genes leave nothing to embed; give at least 50"
        )));
    }
    if config.data.max_cells_per_batch == Some(0) {
        return Err(cfg_err(format!(
            "{cfg}: field `data.max_cells_per_batch`: 0 keeps no cell; give at least 1 or remove it"
        )));
    }
    let file = resolve_path(&config.data.file, &dir, &cfg, "data.file")?;
    if !file.exists() {
        return Err(cfg_err(format!(
            "{cfg}: field `data.file`: file not found: {}",
            file.display()
        )));
    }
    let model = match &config.model {
        Some(m) => {
            let p = resolve_path(m, &dir, &cfg, "model")?;
            if !p.exists() {
                return Err(cfg_err(format!(
                    "{cfg}: field `model`: file not found: {}",
                    p.display()
                )));
            }
            Some(p)
        }
        None => None,
    };
    Ok(LoadedIntegration {
        path,
        dir,
        text,
        config,
        file,
        model,
    })
}
