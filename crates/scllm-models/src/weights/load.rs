//! Loading a checkpoint into a model by the reference's rule ("copy a tensor only when its name
//! and shape match") and a loud report of what was loaded, skipped, missing and unexpected.

use std::collections::BTreeSet;
use std::path::PathBuf;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::checkpoint::{Checkpoint, Format};
use crate::error::{ModelError, Result};
use crate::params::{torch_shape, Layout, ParamVisitor, Part};
use crate::CellModel;

/// A tensor that was not loaded because its shape differs from the model's.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Skipped {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// What a load did, key by key (PyTorch names and layouts).
#[derive(Clone, Debug, Serialize, Default)]
pub struct LoadReport {
    pub path: PathBuf,
    pub format: Option<Format>,
    pub loaded: Vec<String>,
    /// In both, with a different shape: the model keeps its random init (the reference's rule).
    pub skipped: Vec<Skipped>,
    /// The model has it, the checkpoint does not: random init.
    pub missing: Vec<String>,
    /// The checkpoint has it, the model does not (e.g. `flag_encoder.weight` of the release).
    pub unexpected: Vec<String>,
    /// Keys read under another spelling, `(stored, as loaded)` (e.g. scGPT's `in_proj_weight` as
    /// `Wqkv.weight`).
    pub renamed: Vec<(String, String)>,
    /// A likely cause when nothing lines up (e.g. a `module.` prefix).
    pub hint: Option<String>,
}

impl LoadReport {
    /// Whether every model parameter came from the checkpoint.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty() && self.missing.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "loaded {} tensors, skipped {} (shape mismatch), missing {}, unexpected {}",
            self.loaded.len(),
            self.skipped.len(),
            self.missing.len(),
            self.unexpected.len()
        );
        if !self.renamed.is_empty() {
            s.push_str(&format!(
                ", {} keys read under another spelling",
                self.renamed.len()
            ));
        }
        s
    }

    /// Multi-line human report: summary then every non-loaded key.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}: {}\n", self.path.display(), self.summary());
        for k in &self.skipped {
            s.push_str(&format!(
                "  skipped    {} (checkpoint {:?}, model {:?}): kept at random init\n",
                k.key, k.found, k.expected
            ));
        }
        for k in &self.missing {
            s.push_str(&format!("  missing    {k}: kept at random init\n"));
        }
        for k in &self.unexpected {
            s.push_str(&format!("  unexpected {k}: not used\n"));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("  hint: {h}\n"));
        }
        s
    }
}

/// Copies checkpoint tensors into the model where name and shape match, recording the rest.
struct Loader<'a> {
    ckpt: &'a Checkpoint,
    dev: Device,
    report: LoadReport,
    used: BTreeSet<String>,
    error: Option<ModelError>,
}

impl Loader<'_> {
    /// The checkpoint's values for `key` if the shape matches `expected` (PyTorch layout).
    fn take(&mut self, key: &str, expected: &[usize]) -> Option<Vec<f32>> {
        if self.error.is_some() {
            return None;
        }
        let Some(found) = self.ckpt.shape(key) else {
            self.report.missing.push(key.to_string());
            return None;
        };
        self.used.insert(key.to_string());
        if found != expected {
            self.report.skipped.push(Skipped {
                key: key.to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            });
            return None;
        }
        match self.ckpt.read_f32(key) {
            // one NaN weight turns every embedding into NaN: refuse the file, not the output
            Ok(v) if v.iter().any(|x| !x.is_finite()) => {
                let bad = v.iter().filter(|x| !x.is_finite()).count();
                self.error = Some(ModelError::file(
                    &self.ckpt.path,
                    format!(
                        "tensor `{key}` holds {bad} NaN or infinite values of {}; the weights are damaged (re-download or re-train them)",
                        v.len()
                    ),
                ));
                None
            }
            Ok(v) => {
                self.report.loaded.push(key.to_string());
                Some(v)
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl ParamVisitor for Loader<'_> {
    fn param<const D: usize>(
        &mut self,
        key: &str,
        _part: Part,
        layout: Layout,
        p: &mut Param<Tensor<D>>,
    ) {
        let shape = torch_shape(layout, p);
        let Some(w) = self.take(key, &shape) else {
            return;
        };
        let t = match layout {
            Layout::AsIs => Tensor::<D>::from_data(TensorData::new(w, shape), &self.dev),
            Layout::Transposed => {
                // PyTorch stores a Linear weight [out, in]; burn's Linear holds [in, out]
                let (dout, din) = (shape[0], shape[1]);
                let mut t = vec![0f32; w.len()];
                for o in 0..dout {
                    for i in 0..din {
                        t[i * dout + o] = w[o * din + i];
                    }
                }
                Tensor::<D>::from_data(TensorData::new(t, [din, dout]), &self.dev)
            }
        };
        *p = Param::from_tensor(t);
    }
}

/// Load `ckpt` into `model` by name and shape (the reference's `load_pretrained` rule) and
/// report every key. With `strict`, anything skipped or missing is an error.
pub fn load_into<M: CellModel>(
    model: &mut M,
    ckpt: &Checkpoint,
    strict: bool,
    dev: &Device,
) -> Result<LoadReport> {
    let mut l = Loader {
        ckpt,
        dev: dev.clone(),
        report: LoadReport {
            path: ckpt.path.clone(),
            format: Some(ckpt.format),
            ..Default::default()
        },
        used: BTreeSet::new(),
        error: None,
    };
    model.visit_params(&mut l);
    if let Some(e) = l.error {
        return Err(e);
    }
    let mut report = l.report;
    report.unexpected = ckpt
        .keys()
        .filter(|k| !l.used.contains(*k))
        .map(String::from)
        .collect();
    report.unexpected.extend(ckpt.duplicates.iter().cloned());
    report.renamed = ckpt.renamed.clone();
    report.hint = hint(&report);
    if report.loaded.is_empty() {
        return Err(ModelError::file(
            &ckpt.path,
            format!(
                "no tensor matches the {} model ({} in the file, e.g. `{}`){}",
                model.family(),
                ckpt.len(),
                ckpt.keys().next().unwrap_or(""),
                report
                    .hint
                    .as_deref()
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if strict && !report.is_complete() {
        let mut parts = Vec::new();
        if !report.missing.is_empty() {
            parts.push(format!("missing {}", report.missing.join(", ")));
        }
        if !report.skipped.is_empty() {
            let s: Vec<String> = report
                .skipped
                .iter()
                .map(|s| {
                    format!(
                        "{} (checkpoint {:?}, model {:?})",
                        s.key, s.found, s.expected
                    )
                })
                .collect();
            parts.push(format!("shape mismatch {}", s.join(", ")));
        }
        return Err(ModelError::Strict {
            path: ckpt.path.clone(),
            summary: parts.join("; "),
        });
    }
    Ok(report)
}

/// Spot a common prefix on the unexpected keys that would make them the missing ones.
fn hint(r: &LoadReport) -> Option<String> {
    if r.missing.is_empty() || r.unexpected.is_empty() {
        return None;
    }
    let miss: BTreeSet<&str> = r.missing.iter().map(|s| s.as_str()).collect();
    let first = &r.missing[0];
    let u = r.unexpected.iter().find(|u| u.ends_with(first.as_str()))?;
    let prefix = &u[..u.len() - first.len()];
    let hits = r
        .unexpected
        .iter()
        .filter(|u| u.strip_prefix(prefix).is_some_and(|s| miss.contains(s)))
        .count();
    (hits * 2 >= r.missing.len()).then(|| {
        format!("{hits} checkpoint keys carry the prefix `{prefix}` (a DataParallel or wrapper save?); strip it when re-saving")
    })
}
