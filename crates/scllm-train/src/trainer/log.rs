//! `train_log.jsonl`: one [`EpochLog`] per epoch, written as training goes and read back for the
//! learning curves.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::json_floats::de_f64_nan;
use crate::error::{ck_err, Result};

/// One line of `train_log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Learning rate at the epoch's first step.
    #[serde(deserialize_with = "de_f64_nan")]
    pub lr: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub train_acc: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub val_acc: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub val_macro_f1: f64,
    #[serde(deserialize_with = "de_f64_nan")]
    pub seconds: f64,
    /// Training cells per second (forward + backward + step).
    #[serde(deserialize_with = "de_f64_nan")]
    pub cells_per_s: f64,
}

pub(crate) fn write_log(path: &Path, lines: &[EpochLog], append: bool) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| ck_err(path, e))?;
    for l in lines {
        writeln!(f, "{}", serde_json::to_string(l).unwrap()).map_err(|e| ck_err(path, e))?;
    }
    Ok(())
}

/// Read a `train_log.jsonl` written by [`train`](super::train) (NaN, written as null, reads
/// back as NaN). Blank lines are skipped; a line that is not an epoch record is an error
/// naming the line.
pub fn read_train_log(path: impl AsRef<Path>) -> Result<Vec<EpochLog>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| ck_err(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(no, l)| {
            serde_json::from_str(l)
                .map_err(|e| ck_err(path, format!("line {}: not an epoch record: {e}", no + 1)))
        })
        .collect()
}

impl EpochLog {
    /// The learning-curve record of this epoch (NaN as missing).
    pub fn to_record(&self) -> scllm_eval::plot::EpochRecord {
        let f = |x: f64| x.is_finite().then_some(x);
        scllm_eval::plot::EpochRecord {
            epoch: Some(self.epoch as f64),
            train_loss: f(self.train_loss),
            val_loss: f(self.val_loss),
            train_acc: f(self.train_acc),
            val_acc: f(self.val_acc),
            val_macro_f1: f(self.val_macro_f1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines written by the trainer read back as they were, NaN (written as null) included.
    #[test]
    fn written_log_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train_log.jsonl");
        let mk = |epoch: usize, val_loss: f64| EpochLog {
            epoch,
            lr: 1e-4,
            train_loss: 1.5,
            train_acc: 0.5,
            val_loss,
            val_acc: 0.25,
            val_macro_f1: 0.2,
            seconds: 3.0,
            cells_per_s: 10.0,
        };
        write_log(&p, &[mk(1, 1.25)], false).unwrap();
        write_log(&p, &[mk(2, f64::NAN)], true).unwrap();
        let back = read_train_log(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], mk(1, 1.25));
        assert!(back[1].val_loss.is_nan());
        let r = back[1].to_record();
        assert_eq!(
            (r.epoch, r.val_loss, r.train_loss),
            (Some(2.0), None, Some(1.5))
        );
        std::fs::write(&p, "{\"epoch\": 1}\nnot json\n").unwrap();
        let e = read_train_log(&p).unwrap_err().to_string();
        assert!(e.contains("line 1") || e.contains("line 2"), "{e}");
    }
}
