//! What does X hold? Raw counts, log-normalised values, or scaled values — the commonest mistake
//! users make is feeding one where another is expected, so every command says which it saw.

use scllm_io::{Compressed, Matrix, Values};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Non-negative integers.
    Counts,
    /// Non-negative, non-integer, small (log1p of normalised counts).
    LogNormalized,
    /// Non-negative, non-integer, large: normalised but not logged.
    Normalized,
    /// Contains negative values: z-scored / regressed.
    Scaled,
    /// No stored values at all.
    Empty,
}

impl ValueKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ValueKind::Counts => "counts",
            ValueKind::LogNormalized => "lognorm",
            ValueKind::Normalized => "normalized",
            ValueKind::Scaled => "scaled",
            ValueKind::Empty => "empty",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ValueReport {
    pub kind: ValueKind,
    pub min: f64,
    pub max: f64,
    /// Some value is NaN or infinite (every consumer refuses such data).
    pub has_nan: bool,
    /// For log-normalised data: the per-cell total of expm1(x), when it is the same in every cell.
    pub target_sum: Option<f64>,
    /// One sentence a user can read.
    pub explanation: String,
}

/// Rows whose `expm1` totals the log check compares.
const LOG_CHECK_ROWS: usize = 200;

/// [`detect_values`] one block of rows at a time, for files read in blocks: the same report
/// whatever the blocks, since the log check looks at the first 200 rows only.
#[derive(Clone, Debug)]
pub struct ValueScan {
    min: f64,
    max: f64,
    n_bad: usize,
    all_int: bool,
    n_values: usize,
    /// `sum(expm1(x))` of each of the first [`LOG_CHECK_ROWS`] rows.
    row_sums: Vec<f64>,
}

impl Default for ValueScan {
    fn default() -> Self {
        ValueScan {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            n_bad: 0,
            all_int: true,
            n_values: 0,
            row_sums: Vec::new(),
        }
    }
}

impl ValueScan {
    /// Every stored value of a block (any layout, any order).
    pub fn add_values(&mut self, v: &Values) {
        let mut scan = |x: f64| {
            if !x.is_finite() {
                self.n_bad += 1;
                return;
            }
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            if self.all_int && x.fract() != 0.0 {
                self.all_int = false;
            }
        };
        match v {
            Values::F32(d) => d.iter().for_each(|&x| scan(x as f64)),
            Values::F64(d) => d.iter().for_each(|&x| scan(x)),
            Values::I32(_) | Values::I64(_) => {
                for i in 0..v.len() {
                    scan(v.get_f64(i));
                }
            }
        }
        self.n_values += v.len();
    }

    /// The next rows, in order, as CSR: their values, and their totals while fewer than 200
    /// rows have been seen.
    pub fn add_rows(&mut self, csr: &Compressed) {
        self.add_values(&csr.data);
        self.add_row_sums(csr);
    }

    fn add_row_sums(&mut self, csr: &Compressed) {
        let take = LOG_CHECK_ROWS
            .saturating_sub(self.row_sums.len())
            .min(csr.nrows);
        for i in 0..take {
            let s = csr.range(i).map(|k| csr.data.get_f64(k).exp_m1()).sum();
            self.row_sums.push(s);
        }
    }

    /// The report, as [`detect_values`] gives it for the whole matrix.
    pub fn finish(self) -> ValueReport {
        let (min, max, n_bad) = (self.min, self.max, self.n_bad);
        let has_nan = n_bad > 0;
        if self.n_values == 0 || min > max {
            return ValueReport {
                kind: ValueKind::Empty,
                min: 0.0,
                max: 0.0,
                has_nan,
                target_sum: None,
                explanation: "X stores no values".into(),
            };
        }
        let mut target_sum = None;
        let kind = if min < 0.0 {
            ValueKind::Scaled
        } else if self.all_int {
            ValueKind::Counts
        } else if max <= 30.0 {
            ValueKind::LogNormalized
        } else {
            ValueKind::Normalized
        };
        if kind == ValueKind::LogNormalized {
            // log1p(x / total * target): expm1 restores a constant per-cell total
            let sums: Vec<f64> = self.row_sums.iter().copied().filter(|&s| s > 0.0).collect();
            if let (Some(lo), Some(hi)) = (
                sums.iter().cloned().reduce(f64::min),
                sums.iter().cloned().reduce(f64::max),
            ) {
                if (hi - lo) / hi < 1e-3 {
                    target_sum = Some((lo + hi) / 2.0);
                }
            }
        }
        let explanation = match kind {
            ValueKind::Counts => format!("raw counts (non-negative integers, max {max})"),
            ValueKind::LogNormalized => match target_sum {
                Some(t) => format!("log-normalized: log1p of counts scaled to {t:.0} per cell (max {max:.3})"),
                None => format!(
                    "log-transformed (non-integer, max {max:.3}); per-cell totals differ, so not plain log1p(normalize_total)"
                ),
            },
            ValueKind::Normalized => format!("normalized but not log-transformed (non-integer, max {max:.1})"),
            ValueKind::Scaled => format!("scaled (negative values, min {min:.3}, max {max:.3}); counts are not recoverable from X"),
            ValueKind::Empty => unreachable!(),
        };
        // never "raw counts" for data no command will accept
        let explanation = if has_nan {
            format!(
                "invalid: {n_bad} NaN or infinite values, where expression is finite (fix or drop them); the others look like {explanation}"
            )
        } else {
            explanation
        };
        ValueReport {
            kind,
            min,
            max,
            has_nan,
            target_sum,
            explanation,
        }
    }
}

/// Inspect every stored value (cheap: one pass) and a sample of rows for the log check.
pub fn detect_values(m: &Matrix) -> ValueReport {
    let mut scan = ValueScan::default();
    scan.add_values(m.values());
    // the row totals are only needed for log data: skip the CSR copy otherwise
    let quick = scan.clone().finish();
    if quick.kind != ValueKind::LogNormalized {
        return quick;
    }
    scan.add_row_sums(&m.to_csr());
    scan.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(v: Vec<f32>) -> Matrix {
        Matrix::Dense {
            nrows: 2,
            ncols: 2,
            data: Values::F32(v),
        }
    }

    #[test]
    fn kinds_are_told_apart() {
        assert_eq!(
            detect_values(&dense(vec![0., 3., 5., 1.])).kind,
            ValueKind::Counts
        );
        assert_eq!(
            detect_values(&dense(vec![0., -0.3, 5., 1.])).kind,
            ValueKind::Scaled
        );
        assert_eq!(
            detect_values(&dense(vec![0., 300.5, 5., 1.])).kind,
            ValueKind::Normalized
        );
        // log1p of rows normalised to 10: [0, 10] and [5, 5]
        let l = |x: f32| x.ln_1p();
        let r = detect_values(&dense(vec![0., l(10.), l(5.), l(5.)]));
        assert_eq!(r.kind, ValueKind::LogNormalized);
        assert!((r.target_sum.unwrap() - 10.0).abs() < 1e-3, "{r:?}");
    }
}
