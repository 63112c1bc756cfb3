//! Per-class scores of a classifier's cells: what calibration ([`crate::calibration`]) and
//! conformal sets ([`crate::conformal`]) read beyond the predicted label.

use serde::{Deserialize, Serialize};

/// What a method's per-class scores are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// Probabilities summing to 1 per cell (logreg, kNN vote shares, softmax).
    Probability,
    /// Similarities, larger = more alike, not probabilities (Spearman ρ).
    Similarity,
}

/// One score per cell and class, row-major `cells × classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassScores {
    /// Column names: the classes the method knows, in its order.
    pub classes: Vec<String>,
    pub kind: ScoreKind,
    pub values: Vec<f32>,
}

impl ClassScores {
    pub fn n_cells(&self) -> usize {
        self.values.len() / self.classes.len().max(1)
    }
    /// The scores of cell `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let k = self.classes.len();
        &self.values[i * k..(i + 1) * k]
    }
    /// The rows of `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> ClassScores {
        ClassScores {
            classes: self.classes.clone(),
            kind: self.kind,
            values: idx
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
        }
    }
    /// Each class's index, or `None` for a label the method does not have.
    pub fn index_of<S: AsRef<str>>(&self, labels: &[S]) -> Vec<Option<u32>> {
        let pos: std::collections::HashMap<&str, u32> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        labels
            .iter()
            .map(|l| pos.get(l.as_ref()).copied())
            .collect()
    }
}
