//! The in-memory annotated data matrix (cells × genes), as anndata holds one, whatever file it
//! came from: X, obs/var, obsm/varm/obsp/varp, layers, `.raw` and uns, with the accessors and the
//! cell and gene selections every command uses.

use std::path::PathBuf;

use crate::error::{IoError, Result};
use crate::frame::{Column, DataFrame, UnsValue};
use crate::matrix::Matrix;

/// `.raw`: an earlier, wider gene space kept beside the processed X.
#[derive(Clone, Debug, PartialEq)]
pub struct Raw {
    pub x: Matrix,
    pub var: DataFrame,
    pub varm: Vec<(String, Matrix)>,
}

/// An annotated data matrix, as anndata holds one: cells × genes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AnnData {
    pub x: Option<Matrix>,
    pub obs: DataFrame,
    pub var: DataFrame,
    pub obsm: Vec<(String, Matrix)>,
    pub varm: Vec<(String, Matrix)>,
    pub obsp: Vec<(String, Matrix)>,
    pub varp: Vec<(String, Matrix)>,
    pub layers: Vec<(String, Matrix)>,
    pub raw: Option<Raw>,
    pub uns: Vec<(String, UnsValue)>,
    /// Elements the reader met but does not model (said, never silently dropped).
    pub skipped: Vec<String>,
    /// The file this was read from, for error messages.
    pub source: Option<PathBuf>,
}

impl AnnData {
    pub fn new(x: Matrix, obs: DataFrame, var: DataFrame) -> Self {
        AnnData {
            x: Some(x),
            obs,
            var,
            ..Default::default()
        }
    }
    pub fn n_obs(&self) -> usize {
        self.obs.nrows()
    }
    pub fn n_vars(&self) -> usize {
        self.var.nrows()
    }
    fn path(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from("<in memory>"))
    }
    /// X, or a clear error when the file has none.
    pub fn x(&self) -> Result<&Matrix> {
        self.x.as_ref().ok_or_else(|| {
            IoError::field(
                &self.path(),
                "X",
                "missing: this AnnData has no expression matrix. Store counts in X (adata.X = ...) and save again.",
            )
        })
    }
    pub fn layer(&self, name: &str) -> Option<&Matrix> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
    pub fn set_layer(&mut self, name: &str, m: Matrix) {
        set_named(&mut self.layers, name, m);
    }
    pub fn obsm_get(&self, name: &str) -> Option<&Matrix> {
        self.obsm.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
    pub fn set_obsm(&mut self, name: &str, m: Matrix) {
        set_named(&mut self.obsm, name, m);
    }
    pub fn uns_get(&self, name: &str) -> Option<&UnsValue> {
        self.uns.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    pub fn set_uns(&mut self, name: &str, v: UnsValue) {
        if let Some(slot) = self.uns.iter_mut().find(|(n, _)| n == name) {
            slot.1 = v;
        } else {
            self.uns.push((name.to_string(), v));
        }
    }
    /// The `obs` column `name`, or an error listing the columns there are.
    pub fn obs_column(&self, name: &str) -> Result<&Column> {
        self.obs.column(name).ok_or_else(|| {
            IoError::field(
                &self.path(),
                format!("obs['{name}']"),
                format!(
                    "no such column. Columns present: {}",
                    if self.obs.columns.is_empty() {
                        "(none)".to_string()
                    } else {
                        self.obs.column_names().join(", ")
                    }
                ),
            )
        })
    }
    /// Keep the cells in `idx` (in that order) across X, obs, obsm, obsp, layers and raw.
    pub fn select_obs(&self, idx: &[usize]) -> AnnData {
        let sel_sq = |m: &Matrix| m.select_rows(idx).select_cols(idx);
        AnnData {
            x: self.x.as_ref().map(|m| m.select_rows(idx)),
            obs: self.obs.select(idx),
            var: self.var.clone(),
            obsm: self
                .obsm
                .iter()
                .map(|(n, m)| (n.clone(), m.select_rows(idx)))
                .collect(),
            varm: self.varm.clone(),
            obsp: self
                .obsp
                .iter()
                .map(|(n, m)| (n.clone(), sel_sq(m)))
                .collect(),
            varp: self.varp.clone(),
            layers: self
                .layers
                .iter()
                .map(|(n, m)| (n.clone(), m.select_rows(idx)))
                .collect(),
            raw: self.raw.as_ref().map(|r| Raw {
                x: r.x.select_rows(idx),
                var: r.var.clone(),
                varm: r.varm.clone(),
            }),
            uns: self.uns.clone(),
            skipped: self.skipped.clone(),
            source: self.source.clone(),
        }
    }
    /// Keep the genes in `idx` (in that order) across X, var, varm, varp and layers; raw is kept whole.
    pub fn select_vars(&self, idx: &[usize]) -> AnnData {
        let sel_sq = |m: &Matrix| m.select_rows(idx).select_cols(idx);
        AnnData {
            x: self.x.as_ref().map(|m| m.select_cols(idx)),
            obs: self.obs.clone(),
            var: self.var.select(idx),
            obsm: self.obsm.clone(),
            varm: self
                .varm
                .iter()
                .map(|(n, m)| (n.clone(), m.select_rows(idx)))
                .collect(),
            obsp: self.obsp.clone(),
            varp: self
                .varp
                .iter()
                .map(|(n, m)| (n.clone(), sel_sq(m)))
                .collect(),
            layers: self
                .layers
                .iter()
                .map(|(n, m)| (n.clone(), m.select_cols(idx)))
                .collect(),
            raw: self.raw.clone(),
            uns: self.uns.clone(),
            skipped: self.skipped.clone(),
            source: self.source.clone(),
        }
    }
}

fn set_named(v: &mut Vec<(String, Matrix)>, name: &str, m: Matrix) {
    if let Some(slot) = v.iter_mut().find(|(n, _)| n == name) {
        slot.1 = m;
    } else {
        v.push((name.to_string(), m));
    }
}
