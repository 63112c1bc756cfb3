//! The `results.md` sections of [`crate::uncertainty`]: novel-type results, calibration and
//! conformal prediction sets, one row per method.

use std::fmt::Write as _;

use scllm_eval::calibration::Calibration;
use scllm_eval::conformal::ConformalReport;
use scllm_eval::novelty::NovelTypeReport;

use crate::train_query_split::SplitInfo;
use crate::uncertainty::HeldOutSettings;

/// What the tables read of one method's result.
pub struct MethodRow<'a> {
    pub name: &'a str,
    pub ok: bool,
    pub calibration: Option<&'a Calibration>,
    pub novel_types: Option<&'a NovelTypeReport>,
    pub conformal: Option<&'a ConformalReport>,
}

fn opt4(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into())
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "n/a".into())
}

/// Novel types: one row per method.
pub fn render_novel_table(rows: &[MethodRow]) -> String {
    let mut s = String::new();
    s.push_str("| Method | Known accuracy | Known macro F1 | AUROC | Average precision | Threshold | Novel recall (Unknown) | False-Unknown rate | Known accuracy at threshold | Known macro F1 at threshold |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in rows {
        let Some(n) = m.novel_types else {
            let why = if m.ok { "no confidence" } else { "failed" };
            let _ = writeln!(s, "| {} | {why} | | | | | | | | |", m.name);
            continue;
        };
        let t = n.at_threshold.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            opt4(n.known_accuracy),
            opt4(n.known_f1_macro),
            opt4(n.auroc),
            opt4(n.average_precision),
            opt4(t.map(|t| t.threshold.threshold)),
            pct(t.and_then(|t| t.novel_recall)),
            pct(t.and_then(|t| t.false_unknown_rate)),
            opt4(t.and_then(|t| t.known_accuracy)),
            opt4(t.and_then(|t| t.known_f1_macro)),
        );
    }
    s
}

/// Calibration (methods with probabilities).
pub fn render_calibration_table(rows: &[MethodRow]) -> String {
    let mut s = String::new();
    s.push_str("| Method | ECE | MCE | Mean confidence | Accuracy | Cells |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|\n");
    for m in rows {
        if let Some(c) = m.calibration {
            let _ = writeln!(
                s,
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
                m.name, c.ece, c.mce, c.mean_confidence, c.accuracy, c.n_cells
            );
        }
    }
    s
}

/// Conformal sets: a summary row per method, then coverage / mean set size per class.
pub fn render_conformal_tables(rows: &[MethodRow], split: &SplitInfo) -> String {
    let mut s = String::new();
    s.push_str("| Method | Score | Coverage (known types) | Mean set size | Singleton | Ambiguous | Empty (Unknown) | Novel cells: Unknown | Novel cells: mean set size |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let with: Vec<_> = rows
        .iter()
        .filter_map(|m| m.conformal.map(|c| (m, c)))
        .collect();
    for (m, c) in &with {
        let score = if c.score.starts_with("APS") {
            "APS"
        } else {
            "1 − similarity"
        };
        let _ = writeln!(
            s,
            "| {} | {score} | {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            pct(c.coverage_known),
            opt4(c.mean_set_size_known),
            pct(c.share_singleton_known),
            pct(c.share_ambiguous_known),
            pct(c.share_empty_known),
            pct(c.unseen_share_empty),
            opt4(c.unseen_mean_set_size),
        );
    }
    if with.is_empty() {
        return s;
    }
    s.push_str("\nPer query class: coverage / mean set size (novel types: share Unknown / mean set size).\n\n| Class (query cells, held-out cells) |");
    for (m, _) in &with {
        let _ = write!(s, " {} |", m.name);
    }
    s.push_str("\n|---|");
    for _ in &with {
        s.push_str("---:|");
    }
    s.push('\n');
    for (label, n) in &split.query_classes {
        let nh = split.held_out_classes.get(label).copied().unwrap_or(0);
        let _ = write!(s, "| {label} ({n}, {nh}) |");
        for (_, c) in &with {
            let v = c
                .per_class
                .iter()
                .find(|x| &x.label == label)
                .map(|x| match x.coverage {
                    Some(cv) => format!("{:.1}% / {:.2}", cv * 100.0, x.mean_set_size),
                    None => format!("{:.1}% U / {:.2}", x.share_empty * 100.0, x.mean_set_size),
                })
                .unwrap_or_else(|| "n/a".into());
            let _ = write!(s, " {v} |");
        }
        s.push('\n');
    }
    s
}

/// The three sections, as far as the results have them.
pub fn render_uncertainty_sections(
    rows: &[MethodRow],
    split: &SplitInfo,
    held_out: Option<&HeldOutSettings>,
) -> String {
    let mut s = String::new();
    if let Some(h) = held_out {
        if !h.novel_types.is_empty() {
            let counts: Vec<String> = h
                .novel_types
                .iter()
                .map(|t| {
                    format!(
                        "{t} ({} query cells)",
                        split.query_classes.get(t).copied().unwrap_or(0)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "\n## Novel cell types\n\nWithheld from training, kept in the query: {}. Known-type accuracy and macro F1: on query cells of the other types (macro over those types). AUROC and average precision: novel cells (positive) against known ones, ranked by 1 − confidence. Threshold: the {} quantile of the confidence of the {} held-out training cells (no query label used); a cell below it is Unknown; novel recall = novel cells called Unknown, false-Unknown rate = known cells called Unknown.\n",
                counts.join(", "),
                h.unknown_quantile,
                h.n_held_out
            );
            s.push_str(&render_novel_table(rows));
        }
    }
    let cal = render_calibration_table(rows);
    if cal.lines().count() > 2 {
        s.push_str("\n## Calibration\n\nMethods whose confidence is a probability (logreg, kNN vote shares, fine-tuned softmax), on query cells of types they were trained on. ECE: 15 equal-width bins ((b-1)/15, b/15] of the predicted label's probability, sum over bins of (bin cells / cells) × |accuracy − mean confidence|; MCE: the largest such gap. Reliability diagrams: `reliability_<method>.png`.\n\n");
        s.push_str(&cal);
    }
    if let Some(h) = held_out {
        if let Some(cov) = h.coverage {
            let _ = writeln!(
                s,
                "\n## Conformal prediction sets (coverage {cov})\n\nSplit-conformal, class-conditional, calibrated on the {} held-out training cells: class k's threshold q_k is the ⌈(n_k+1)·{cov}⌉-th smallest score of its held-out cells (never ruled out when that exceeds n_k). Score: randomised APS (Romano et al. 2020; one U ~ Uniform(0,1) per cell, seeded by the config seed) for probabilities; 1 − ρ for the correlation baseline's Spearman ρ (not probabilities). A cell's set holds every class it cannot rule out; empty = Unknown, several = ambiguous (`predictions.tsv` has each method's set label).\n",
                h.n_held_out
            );
            s.push_str(&render_conformal_tables(rows, split));
        }
    }
    s
}
