//! Novel-type metrics, calibration and conformal sets against the references' numbers in
//! `tests/fixtures/novel/novel_reference.json` (scikit-learn, numpy, crepes; written by
//! `tools/make_novel_fixture.py`).

use scllm_eval::calibration::calibration;
use scllm_eval::conformal::{conformal_report, ConformalCalibrator, ScoreKind};
use scllm_eval::novelty::{auto_threshold, average_precision, novel_type_report, roc_auc};
use serde_json::Value;

fn fixture() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/novel/novel_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
        .collect()
}
fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| f64::from_bits(b.as_u64().unwrap()))
        .collect()
}
fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect()
}
fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect()
}
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}
fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-12, "{what}: scllm {a} vs reference {b}");
}

#[test]
fn auroc_and_average_precision_equal_sklearn_with_ties() {
    let d = fixture();
    let r = &d["ranking"];
    let conf = f32s(&r["confidence_bits"]);
    let novel = bools(&r["novel"]);
    let score: Vec<f64> = conf.iter().map(|&c| 1.0 - c as f64).collect();
    close(
        roc_auc(&score, &novel).unwrap(),
        f(&r["auroc"]),
        "roc_auc_score",
    );
    close(
        average_precision(&score, &novel).unwrap(),
        f(&r["average_precision"]),
        "average_precision_score",
    );
}

#[test]
fn novel_type_report_equals_sklearn_and_numpy() {
    let d = fixture();
    let r = &d["novel_report"];
    let held = f32s(&r["held_out_confidence_bits"]);
    let t = auto_threshold(&held, f(&r["quantile"])).unwrap();
    close(t.threshold, f(&r["threshold"]), "np.quantile threshold");
    assert_eq!(t.n_cells, held.len());
    let rep = novel_type_report(
        &strs(&r["truth"]),
        &strs(&r["pred"]),
        &f32s(&r["confidence_bits"]),
        &strs(&r["novel_types"]),
        Some(&t),
        "Unknown",
    )
    .unwrap();
    close(rep.auroc.unwrap(), f(&r["auroc"]), "auroc");
    close(
        rep.average_precision.unwrap(),
        f(&r["average_precision"]),
        "average precision",
    );
    close(
        rep.known_accuracy.unwrap(),
        f(&r["known_accuracy"]),
        "known accuracy",
    );
    close(
        rep.known_f1_macro.unwrap(),
        f(&r["known_f1_macro"]),
        "known macro F1",
    );
    let at = rep.at_threshold.unwrap();
    close(
        at.novel_recall.unwrap(),
        f(&r["novel_recall"]),
        "novel recall",
    );
    close(
        at.false_unknown_rate.unwrap(),
        f(&r["false_unknown_rate"]),
        "false-Unknown rate",
    );
    close(
        at.known_accuracy.unwrap(),
        f(&r["known_accuracy_at_threshold"]),
        "known accuracy at threshold",
    );
    close(
        at.known_f1_macro.unwrap(),
        f(&r["known_f1_macro_at_threshold"]),
        "known macro F1 at threshold",
    );
}

#[test]
fn expected_calibration_error_equals_the_numpy_reference() {
    let d = fixture();
    let c = &d["calibration"];
    let r = calibration(
        &f32s(&c["confidence_bits"]),
        &bools(&c["correct"]),
        c["n_bins"].as_u64().unwrap() as usize,
    )
    .unwrap();
    close(r.ece, f(&c["ece"]), "ECE");
    close(r.mce, f(&c["mce"]), "MCE");
    let counts: Vec<usize> = r.bins.iter().map(|b| b.count).collect();
    let want: Vec<usize> = c["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(counts, want, "cells per bin");
}

fn labels(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Each cell's draw `U` (`u_key` absent: scores that need none).
fn draws(c: &Value, u_key: &str, n: usize) -> Vec<f64> {
    match c.get(u_key) {
        Some(v) => f64s(v),
        None => vec![1.0; n],
    }
}

fn check_sets(c: &Value, kind: ScoreKind, cal_key: &str, test_key: &str) -> ConformalCalibrator {
    let classes = strs(&c["classes"]);
    let cal_y: Vec<Option<u32>> = labels(&c["cal_labels"])
        .into_iter()
        .map(|y| (y >= 0).then_some(y as u32))
        .collect();
    let cal = ConformalCalibrator::fit(
        classes.clone(),
        kind,
        &f32s(&c[cal_key]),
        &cal_y,
        &draws(c, "cal_u_bits", cal_y.len()),
        f(&c["coverage"]),
    )
    .unwrap();
    for (k, q) in c["quantiles"].as_array().unwrap().iter().enumerate() {
        match (q.as_f64(), cal.quantiles[k]) {
            (Some(a), Some(b)) => close(b, a, &format!("q_{k}")),
            (None, None) => {}
            (a, b) => panic!("q_{k}: reference {a:?}, scllm {b:?}"),
        }
    }
    let test = f32s(&c[test_key]);
    let sets = cal.sets(&test, &draws(c, "test_u_bits", test.len() / classes.len()));
    let want: Vec<Vec<u32>> = c["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    assert_eq!(sets.len(), want.len());
    let diff = sets.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} prediction sets differ from the reference");
    cal
}

#[test]
fn aps_sets_equal_the_reference_and_reach_nominal_coverage() {
    let d = fixture();
    let c = &d["conformal"];
    let cal = check_sets(c, ScoreKind::Probability, "cal_prob_bits", "test_prob_bits");
    let classes = strs(&c["classes"]);
    let truth: Vec<String> = labels(&c["test_labels"])
        .into_iter()
        .map(|y| {
            if y < 0 {
                "novel".to_string()
            } else {
                classes[y as usize].clone()
            }
        })
        .collect();
    let rep = conformal_report(
        &cal,
        &f32s(&c["test_prob_bits"]),
        &f64s(&c["test_u_bits"]),
        &truth,
    )
    .unwrap();
    let cov = f(&c["coverage"]);
    let n_cal = 100.0 + 2.0;
    for (k, name) in classes.iter().enumerate() {
        let row = rep.per_class.iter().find(|r| &r.label == name).unwrap();
        let got = row.coverage.unwrap();
        close(
            got,
            f(&c["coverage_per_class"][k]),
            &format!("coverage of {name}"),
        );
        close(
            row.mean_set_size,
            f(&c["mean_set_size_per_class"][k]),
            &format!("mean set size of {name}"),
        );
        // nominal coverage within binomial error (test cells and the calibration draw)
        let n = row.n_query as f64;
        let se = (cov * (1.0 - cov) / n + cov * (1.0 - cov) / n_cal).sqrt();
        assert!(
            got >= cov - 3.0 * se,
            "{name}: coverage {got} below {cov} - 3 se ({se})"
        );
    }
    assert!(rep.coverage_known.unwrap() >= cov - 0.03);
    let novel = rep.per_class.iter().find(|r| r.label == "novel").unwrap();
    assert!(!novel.known);
    close(
        rep.unseen_share_empty.unwrap(),
        f(&c["novel_share_empty"]),
        "novel cells with an empty set",
    );
}

#[test]
fn similarity_sets_equal_the_reference_with_an_unrulable_class() {
    let d = fixture();
    let c = &d["conformal_similarity"];
    let cal = check_sets(
        c,
        ScoreKind::Similarity,
        "cal_score_bits",
        "test_score_bits",
    );
    assert_eq!(cal.quantiles[2], None, "too few cells: never ruled out");
}
