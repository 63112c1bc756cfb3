//! Evaluation and honest baselines for cell-type annotation.
//!
//! * [`metrics`]: accuracy, balanced accuracy, precision/recall/F1 (macro and weighted), per-class
//!   table, confusion matrix, silhouette (euclidean, cosine), ARI and NMI — the numbers
//!   scikit-learn gives on the same labels.
//! * Baselines a reviewer expects before believing a foundation model: [`logreg`] (L1-regularised
//!   one-vs-rest logistic regression solved as liblinear does, C by cross-validation), [`knn`]
//!   (label transfer by k nearest neighbours on an embedding or on PCA of the log data) and
//!   [`correlation`] (SingleR-style Spearman correlation to per-type profiles with fine-tuning).
//! * [`evaluation`] and [`baselines`]: the file-level work of `scllm evaluate` and
//!   `scllm baseline` built on them; [`anndata_input`]: expression and labels taken out of an
//!   AnnData the same way for all of them.
//! * Unknown cell types and uncertainty: [`novelty`] (novel-vs-known AUROC / average precision,
//!   the `Unknown` threshold picked on [`held_out`] reference cells, as
//!   `scllm baseline --unknown-below auto` does), [`calibration`] (expected calibration error,
//!   reliability bins) and [`conformal`] (class-conditional APS prediction sets), all reading a
//!   method's [`class_scores`].
//! * [`celltypist`]: a released CellTypist model (its pickle read as data) annotating a query
//!   as `celltypist.annotate` does, sparse, with majority voting (`scllm baseline celltypist`).
//! * [`embedding_agreement`]: how far two embeddings of the same cells agree (cosines, shared
//!   neighbours, the 10-NN label on both), for `scllm embed --precision P --check N`.
//! * [`umap`]: UMAP of any embedding as umap-learn computes it, with trustworthiness and kNN
//!   preservation to score a layout; [`plot`]: the pictures (embedding coloured by a label,
//!   confusion matrix, per-class F1, learning curves) as PNG or SVG.
//! * The jobs of the commands, one struct and one function each: [`evaluation::evaluate_file`],
//!   [`baselines::baseline`] and [`umap_file::umap_file`] (`scllm umap`: layout, `obsm['X_umap']`,
//!   picture).

pub mod anndata_input;
pub mod baselines;
pub mod calibration;
pub mod celltypist;
pub mod class_scores;
pub mod conformal;
pub mod correlation;
pub mod embedding_agreement;
pub mod evaluation;
pub mod held_out;
pub mod knn;
pub mod linalg;
pub mod logreg;
pub mod metrics;
pub mod novelty;
pub mod plot;
pub mod prediction_sets;
pub mod progress;
pub mod special;
pub mod umap;
pub mod umap_file;

pub use metrics::{
    adjusted_rand_score, classification_report, normalized_mutual_info_score, silhouette_score,
    ClassificationReport, Distance,
};

/// What went wrong, in words a user can act on: each message names the file, the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The user's input cannot be used as given (wrong column, too few labels, shapes disagree).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] scllm_io::IoError),
    #[error(transparent)]
    Pp(#[from] scllm_pp::PpError),
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> EvalError {
    EvalError::Invalid(msg.into())
}

/// Labels as sorted unique strings (numpy's `unique`, which scikit-learn uses for class order)
/// and each value's code.
pub fn encode_labels<S: AsRef<str>>(values: &[S]) -> (Vec<String>, Vec<u32>) {
    let mut classes: Vec<String> = values.iter().map(|s| s.as_ref().to_string()).collect();
    classes.sort();
    classes.dedup();
    let codes = values
        .iter()
        .map(|s| {
            classes
                .binary_search_by(|c| c.as_str().cmp(s.as_ref()))
                .unwrap() as u32
        })
        .collect();
    (classes, codes)
}

/// A small, seedable generator (splitmix64) for fold assignment and random projections.
#[derive(Clone, Debug)]
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}
