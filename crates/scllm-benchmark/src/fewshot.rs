//! Few-shot training sets and their summary statistics.
//!
//! * `shots = k`: k training cells per class, drawn without replacement after a seeded shuffle;
//!   a class with fewer than k cells keeps all of them (the scBERT authors' definition).
//! * `fraction = f`: per class, `max(1, round(f · n_class))` cells (stratified, so every class
//!   keeps at least one cell); `f = 1` keeps everything.
//!
//! Both return sorted positions into the training labels, and the same seed gives the same cells.
//! Summaries are mean ± the half-width of a two-sided 95% confidence interval from Student's t
//! with n − 1 degrees of freedom: `t(0.975, n-1) · sd / sqrt(n)` (sample sd, n − 1 denominator).

use std::collections::BTreeMap;

use scllm_eval::special::ln_gamma;
use serde::Serialize;

fn by_class(labels: &[String]) -> BTreeMap<&str, Vec<usize>> {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by.entry(l.as_str()).or_default().push(i);
    }
    by
}

/// Classes are visited in sorted order and each is shuffled by one seeded generator; the first
/// `take(n)` cells of each shuffled class are kept.
fn sample(labels: &[String], seed: u64, take: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut rng = scllm_eval::Rng::new(seed ^ 0x5EED_F3E5_0000_0001);
    let mut out = Vec::new();
    for (_, mut v) in by_class(labels) {
        rng.shuffle(&mut v);
        let k = take(v.len()).min(v.len());
        out.extend_from_slice(&v[..k]);
    }
    out.sort_unstable();
    out
}

/// k cells per class (all of a class's cells when it has fewer than k).
pub fn sample_shots(labels: &[String], k: usize, seed: u64) -> Vec<usize> {
    sample(labels, seed, |_| k)
}

/// A stratified fraction: `max(1, round(f · n))` cells of each class of size n.
pub fn sample_fraction(labels: &[String], fraction: f64, seed: u64) -> Vec<usize> {
    sample(labels, seed, |n| {
        ((fraction * n as f64).round() as usize).clamp(1, n)
    })
}

/// Mean, sample standard deviation and 95% CI half-width of a set of runs.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single run.
    pub sd: f64,
    /// Half-width of the two-sided 95% t interval; `None` with fewer than 2 runs.
    pub ci95: Option<f64>,
}

impl MeanCi {
    pub fn of(xs: &[f64]) -> MeanCi {
        let n = xs.len();
        if n == 0 {
            return MeanCi {
                n,
                mean: f64::NAN,
                sd: f64::NAN,
                ci95: None,
            };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return MeanCi {
                n,
                mean,
                sd: 0.0,
                ci95: None,
            };
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let ci = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
        MeanCi {
            n,
            mean,
            sd,
            ci95: Some(ci),
        }
    }
    /// `0.912 ± 0.010` (or `0.912` for one run).
    pub fn display(&self, digits: usize) -> String {
        match self.ci95 {
            Some(c) => format!("{:.*} ± {:.*}", digits, self.mean, digits, c),
            None => format!("{:.*}", digits, self.mean),
        }
    }
}

/// Continued fraction for the regularised incomplete beta (Numerical Recipes' `betacf`).
fn betacf(a: f64, b: f64, x: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularised incomplete beta I_x(a, b).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let bt = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        bt * betacf(a, b, x) / a
    } else {
        1.0 - bt * betacf(b, a, 1.0 - x) / b
    }
}

/// CDF of Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, x);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (bisection on the CDF, to ~1e-12).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0 && df > 0.0);
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 * hi.max(1.0) {
            break;
        }
    }
    0.5 * (lo + hi)
}
