//! Early stopping on validation loss.

use serde::{Deserialize, Serialize};

use super::json_floats::de_f64_inf;

/// Early stopping on validation loss as scPEFT (docs/models/scpeft.md §8.1): the counter grows only when an epoch is
/// strictly worse than the best, resets on an improvement, and stops at `patience`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: Option<usize>,
    /// Lowest validation loss so far (`inf` before the first epoch).
    #[serde(deserialize_with = "de_f64_inf")]
    pub best: f64,
    /// 1-based epoch of `best` (0: none yet).
    pub best_epoch: usize,
    /// Strictly worse epochs since the best.
    pub bad_epochs: usize,
}

/// What [`EarlyStopping::update`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// A new best: keep this model.
    pub improved: bool,
    pub stop: bool,
}

impl EarlyStopping {
    pub fn new(patience: Option<usize>) -> Self {
        EarlyStopping {
            patience,
            best: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
        }
    }

    pub fn update(&mut self, val_loss: f64, epoch: usize) -> Verdict {
        let mut improved = false;
        if val_loss < self.best {
            self.best = val_loss;
            self.best_epoch = epoch;
            self.bad_epochs = 0;
            improved = true;
        } else if val_loss > self.best {
            self.bad_epochs += 1;
        }
        let stop = self.patience.is_some_and(|p| self.bad_epochs >= p);
        Verdict { improved, stop }
    }
}
