//! A CellTypist model read from its pickle without running it: the scikit-learn classifier's
//! weights, the scaler's means and standard deviations, the gene list and the description.
//!
//! Two layouts exist. CellTypist since 2021 (`celltypist/models.py`, `Model.write`) pickles
//! `dict(Model=classifier, Scaler_=StandardScaler, description=dict)`, the classifier carrying
//! the genes as an extra attribute `features`. The 2020 releases (repository Teichlab/celltypist,
//! commit 3eaf88c, `celltypist/classifier.py`) pickled the bare `SGDClassifier`: no scaler, and
//! genes taken by position from the query's columns.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use scllm_pickle::{PyObject, PyValue};

use crate::{invalid, Result};

/// Classes the reader may build (as inert records, never constructed): the estimators CellTypist
/// saves under their scikit-learn module paths old and new, and the SGD loss object pickled with
/// an `SGDClassifier` (predictions never use it).
pub const ALLOWED_CLASSES: &[&str] = &[
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model.stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model.logistic.LogisticRegression",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing.data.StandardScaler",
    "sklearn.linear_model._sgd_fast.Log",
    "sklearn.linear_model.sgd_fast.Log",
    "sklearn._loss._loss.CyHalfBinomialLoss",
];

const CLASSIFIERS: &[&str] = &["SGDClassifier", "LogisticRegression"];

/// Which of CellTypist's two pickle layouts a model came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// `{Model, Scaler_, description}` (celltypist 0.1 onwards).
    Dict,
    /// The bare classifier of the 2020 releases.
    Bare2020,
}

/// The numbers a prediction needs.
#[derive(Clone, Debug)]
pub struct CellTypistModel {
    pub format: ModelFormat,
    /// Full class path of the classifier.
    pub estimator: String,
    /// Cell types in the classifier's order (`classes_`).
    pub classes: Vec<String>,
    /// Gene of each coefficient column; `None` for a 2020 model (by position).
    pub features: Option<Vec<String>>,
    pub n_features: usize,
    /// `coef_`, row-major `rows × n_features`; one row for a two-class model.
    pub coef: Vec<f64>,
    pub intercept: Vec<f64>,
    pub scaler: Option<Scaler>,
    /// The `description` dict as strings (date, details, url, source, version, ...).
    pub description: BTreeMap<String, String>,
}

/// `StandardScaler`'s `mean_` (zeros unless `with_mean`) and `scale_` (ones when absent, as
/// without `with_std`).
#[derive(Clone, Debug)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub with_mean: bool,
}

impl CellTypistModel {
    /// Rows of `coef` (the number of classes, or 1 for a binary model).
    pub fn rows(&self) -> usize {
        self.intercept.len()
    }

    /// Read a model file (`.pkl`, or gzip-compressed `.pkl.gz`).
    pub fn load(path: &Path) -> Result<Self> {
        let err = |m: String| invalid(format!("{}: {m}", path.display()));
        let mut bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .map_err(|e| err(format!("not a valid gzip file: {e}")))?;
            bytes = out;
        }
        let v = scllm_pickle::read_pickle_allowing(&bytes, ALLOWED_CLASSES).map_err(|e| {
            err(format!(
                "not a CellTypist model: {} (a CellTypist model pickles a scikit-learn SGDClassifier or LogisticRegression and a StandardScaler)",
                e.message
            ))
        })?;
        Self::from_value(&v).map_err(err)
    }

    /// The model from a parsed pickle.
    pub fn from_value(v: &PyValue) -> std::result::Result<Self, String> {
        match v {
            PyValue::Dict(_) => {
                let clf = v.get("Model").ok_or(
                    "holds a dict without the key `Model` (CellTypist pickles {Model, Scaler_, description})",
                )?;
                let clf = classifier(clf, "`Model`")?;
                let scaler = match v.get("Scaler_") {
                    Some(s) => Some(scaler(s)?),
                    None => return Err("holds no `Scaler_` (CellTypist pickles {Model, Scaler_, description})".into()),
                };
                let description = match v.get("description") {
                    Some(PyValue::Dict(d)) => d
                        .iter()
                        .filter_map(|(k, x)| match k {
                            scllm_pickle::DictKey::Str(k) => Some((k.clone(), plain(x))),
                            _ => None,
                        })
                        .collect(),
                    _ => BTreeMap::new(),
                };
                build(ModelFormat::Dict, clf, scaler, description)
            }
            PyValue::Object(_) => {
                let clf = classifier(v, "the pickle")?;
                build(ModelFormat::Bare2020, clf, None, BTreeMap::new())
            }
            other => Err(format!(
                "holds a {} where a CellTypist model (a dict with Model, Scaler_ and description, or a bare classifier) belongs",
                other.kind()
            )),
        }
    }
}

fn plain(v: &PyValue) -> String {
    match v {
        PyValue::Str(s) => s.clone(),
        PyValue::Int(i) => i.to_string(),
        PyValue::Float(f) => f.to_string(),
        PyValue::Bool(b) => b.to_string(),
        PyValue::None => String::new(),
        other => other.kind(),
    }
}

fn classifier<'a>(v: &'a PyValue, what: &str) -> std::result::Result<&'a PyObject, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("{what} is a {}, not a scikit-learn classifier", v.kind()))?;
    let name = o.class.rsplit('.').next().unwrap_or("");
    if !CLASSIFIERS.contains(&name) {
        return Err(format!(
            "{what} is a `{}`; CellTypist models hold an SGDClassifier or a LogisticRegression",
            o.class
        ));
    }
    Ok(o)
}

fn numbers(o: &PyObject, attr: &str) -> std::result::Result<(Vec<f64>, Vec<usize>), String> {
    let a = o.attr(attr).and_then(|x| x.as_array()).ok_or_else(|| {
        format!(
            "`{}` has no array `{attr}` (not a fitted estimator?)",
            o.class
        )
    })?;
    let v = a
        .to_f64()
        .map_err(|m| format!("`{}.{attr}`: {m}", o.class))?;
    Ok((v, a.shape.clone()))
}

fn strings(o: &PyObject, attr: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let Some(x) = o.attr(attr) else {
        return Ok(None);
    };
    let a = x
        .as_array()
        .ok_or_else(|| format!("`{}.{attr}` is a {}, not an array", o.class, x.kind()))?;
    // class labels may be numbers: shown as numpy prints them
    match a.to_strings() {
        Ok(s) => Ok(Some(s)),
        Err(_) => {
            let v = a
                .to_f64()
                .map_err(|m| format!("`{}.{attr}`: {m}", o.class))?;
            Ok(Some(
                v.iter()
                    .map(|x| {
                        if a.dtype.kind() == 'f' {
                            format!("{x:?}")
                        } else {
                            format!("{}", *x as i64)
                        }
                    })
                    .collect(),
            ))
        }
    }
}

fn scaler(v: &PyValue) -> std::result::Result<Scaler, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("`Scaler_` is a {}, not a StandardScaler", v.kind()))?;
    if !o.class.ends_with(".StandardScaler") {
        return Err(format!(
            "`Scaler_` is a `{}`, not a StandardScaler",
            o.class
        ));
    }
    let with_mean = o
        .attr("with_mean")
        .and_then(|b| b.as_bool())
        .unwrap_or(true);
    let mean = match o.attr("mean_") {
        Some(PyValue::None) | None => None,
        Some(_) => Some(numbers(o, "mean_")?.0),
    };
    let scale = match o.attr("scale_") {
        Some(PyValue::None) | None => None,
        Some(_) => Some(numbers(o, "scale_")?.0),
    };
    let n = mean
        .as_ref()
        .or(scale.as_ref())
        .map(|v| v.len())
        .ok_or("`Scaler_` has neither `mean_` nor `scale_` (not fitted?)")?;
    let mean = if with_mean {
        mean.ok_or("`Scaler_` has with_mean but no `mean_`")?
    } else {
        vec![0.0; n]
    };
    Ok(Scaler {
        mean,
        scale: scale.unwrap_or_else(|| vec![1.0; n]),
        with_mean,
    })
}

fn build(
    format: ModelFormat,
    clf: &PyObject,
    scaler: Option<Scaler>,
    description: BTreeMap<String, String>,
) -> std::result::Result<CellTypistModel, String> {
    let (coef, shape) = numbers(clf, "coef_")?;
    let (intercept, _) = numbers(clf, "intercept_")?;
    let classes = strings(clf, "classes_")?
        .ok_or_else(|| format!("`{}` has no `classes_` (not fitted?)", clf.class))?;
    let features = strings(clf, "features")?;
    if shape.len() != 2 {
        return Err(format!(
            "`coef_` has shape {shape:?}; expected (classes, genes)"
        ));
    }
    let (rows, n_features) = (shape[0], shape[1]);
    let want_rows = if classes.len() == 2 { 1 } else { classes.len() };
    if rows != want_rows || intercept.len() != rows {
        return Err(format!(
            "`coef_` has {rows} rows and `intercept_` {} values for {} classes",
            intercept.len(),
            classes.len()
        ));
    }
    if classes.len() < 2 {
        return Err(format!(
            "has {} class; a classifier needs 2 or more",
            classes.len()
        ));
    }
    if format == ModelFormat::Dict && features.is_none() {
        return Err(
            "the classifier has no `features` (the gene list CellTypist stores on it)".into(),
        );
    }
    if let Some(f) = &features {
        if f.len() != n_features {
            return Err(format!(
                "`features` lists {} genes but `coef_` has {n_features} columns",
                f.len()
            ));
        }
    }
    if let Some(s) = &scaler {
        if s.mean.len() != n_features || s.scale.len() != n_features {
            return Err(format!(
                "`Scaler_` has {} means and {} scales for {n_features} genes",
                s.mean.len(),
                s.scale.len()
            ));
        }
    }
    Ok(CellTypistModel {
        format,
        estimator: clf.class.clone(),
        classes,
        features,
        n_features,
        coef,
        intercept,
        scaler,
        description,
    })
}
