//! `scllm embed --precision bf16|int8 --check N`: what the reduced precision costs on the
//! user's own cells. N cells spread over the file are embedded in f32 and in the chosen
//! precision by the same loaded model; the two are compared by
//! [`scllm_eval::embedding_agreement`] (cosines, shared neighbours, the label a 10-NN vote
//! gives when `--check-label` names a column).

use std::path::Path;

use scllm_eval::embedding_agreement::{agreement, Agreement};
use scllm_io::AnnData;
use scllm_models::Precision;

use crate::bad;

/// The cells a check embeds twice, with their labels as codes.
pub struct CheckCells {
    pub cells: AnnData,
    labels: Option<(Vec<u32>, usize)>,
}

/// `n` cells of `a` spread evenly over it (all when it has fewer), with `obs[label]` as codes
/// (a cell without a label gets its own code, so it never matches a vote).
pub fn check_cells(
    a: &AnnData,
    n: usize,
    label: Option<&str>,
    src: &Path,
) -> anyhow::Result<CheckCells> {
    let total = a.n_obs();
    if n < 2 {
        return Err(bad("--check needs at least 2 cells"));
    }
    let n = n.min(total);
    let idx: Vec<usize> = (0..n).map(|i| i * total / n).collect();
    let cells = a.select_obs(&idx);
    let labels = match label {
        None => None,
        Some(col) => {
            let c = cells.obs.column(col).ok_or_else(|| {
                bad(format!(
                    "{}: --check-label {col}: no such obs column (columns: {})",
                    src.display(),
                    cells.obs.column_names().join(", ")
                ))
            })?;
            let names = c.to_strings();
            let labeled: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
            let (classes, labeled_codes) = scllm_eval::encode_labels(&labeled);
            let unlabeled = classes.len() as u32;
            let mut labeled_codes = labeled_codes.into_iter();
            let codes = names
                .iter()
                .map(|l| match l {
                    Some(_) => labeled_codes.next().expect("one code per label"),
                    None => unlabeled,
                })
                .collect();
            Some((codes, classes.len() + 1))
        }
    };
    Ok(CheckCells { cells, labels })
}

/// Embeds `c` in f32 and in `precision` with `embed` (which sets the model's precision, then
/// returns `cells × d` row-major) and compares them.
pub fn compare(
    c: &CheckCells,
    d: usize,
    precision: Precision,
    mut embed: impl FnMut(Precision, &AnnData) -> anyhow::Result<Vec<f32>>,
) -> anyhow::Result<Agreement> {
    let reference = embed(Precision::F32, &c.cells)?;
    let other = embed(precision, &c.cells)?;
    let labels = c.labels.as_ref().map(|(codes, n)| (codes.as_slice(), *n));
    Ok(agreement(&reference, &other, d, labels))
}

/// The check's lines for the terminal.
pub fn describe(a: &Agreement, precision: Precision, label: Option<&str>) -> String {
    let c = &a.cosine;
    let mut s = format!(
        "check: {} cells, {precision} vs f32: cosine min {:.5}, 1% {:.5}, 5% {:.5}, median {:.6}, \
         mean {:.6}; {:.1}% of 10 nearest neighbours shared",
        a.cells,
        c.min,
        c.p01,
        c.p05,
        c.median,
        c.mean,
        100.0 * a.neighbours_shared
    );
    if let (Some(l), Some(col)) = (&a.labels, label) {
        s.push_str(&format!(
            "\ncheck: 10-NN label of obs['{col}'] the same on both for {:.1}% of cells \
             (accuracy f32 {:.3}, {precision} {:.3})",
            100.0 * l.same_prediction,
            l.accuracy_reference,
            l.accuracy_other
        ));
    }
    s
}
