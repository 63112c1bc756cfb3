//! Novel cell types, held-out training cells, calibration and conformal sets, end to end on the
//! committed kang fixtures; and the bad configs of those fields.

use std::path::{Path, PathBuf};

use scllm_benchmark::{load_config, run_benchmark, write_report, MethodRegistry, RunOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(p: &str) -> String {
    root().join(p).canonicalize().unwrap().display().to_string()
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        skip_fewshot: true,
    }
}

fn config(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let text = format!(
        r#"
name = "tiny_novel"
label = "cell_type"
methods = ["logreg", "knn-pca", "correlation"]
seed = 0
{extra}

[data]
train = "{}"
query = "{}"

[options.logreg]
n_hvg = 300
c = 1.0

[options.knn-pca]
n_pcs = 20
n_hvg = 300
"#,
        fixture("tests/fixtures/eval/kang_ref.h5ad"),
        fixture("tests/fixtures/eval/kang_query.h5ad")
    );
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bench.toml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

fn run(extra: &str) -> (serde_json::Value, String, String) {
    let (_d, p) = config(extra);
    let lc = load_config(&p).unwrap();
    let report = run_benchmark(&lc, &MethodRegistry::with_baselines(), &quiet()).unwrap();
    let out = tempfile::tempdir().unwrap();
    write_report(&report, out.path(), None).unwrap();
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap();
    (
        serde_json::from_str(&read("results.json")).unwrap(),
        read("results.md"),
        read("predictions.tsv"),
    )
}

fn in01(v: &serde_json::Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} missing: {v}"));
    assert!((0.0..=1.0).contains(&x), "{what} = {x}");
    x
}

#[test]
fn novel_type_results_per_method() {
    let (json, md, tsv) = run(r#"novel = ["B cells"]"#);
    let split = &json["split"];
    assert!(split["train_classes"].get("B cells").is_none());
    assert_eq!(split["query_classes"]["B cells"], 73);
    assert_eq!(split["novel_types"][0], "B cells");
    // 91 B cells removed; 20% of the other 959 held out (per class, rounded)
    let held = split["n_held_out"].as_u64().unwrap();
    assert!((185..=200).contains(&held), "{held}");
    assert_eq!(split["n_train"].as_u64().unwrap() + held, 1050 - 91);
    assert_eq!(json["held_out"]["unknown_quantile"], 0.05);
    assert_eq!(json["held_out"]["coverage"], 0.9);
    for m in json["methods"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert_eq!(m["status"], "ok", "{m}");
        let n = &m["novel_types"];
        assert_eq!(n["n_novel"], 73, "{name}");
        assert_eq!(n["n_known"], 427, "{name}");
        let auroc = in01(&n["auroc"], "auroc");
        // B cells are far from every other type: any method ranks them better than chance
        assert!(auroc > 0.5, "{name}: AUROC {auroc}");
        in01(&n["average_precision"], "average precision");
        in01(&n["known_accuracy"], "known accuracy");
        in01(&n["known_f1_macro"], "known macro F1");
        let t = &n["at_threshold"];
        assert_eq!(t["threshold"]["n_cells"].as_u64().unwrap(), held);
        in01(&t["novel_recall"], "novel recall");
        let fu = in01(&t["false_unknown_rate"], "false-Unknown rate");
        // the threshold flags ~5% of held-out known cells; the query's known cells are similar
        assert!(fu < 0.5, "{name}: false-Unknown {fu}");
        let c = &m["conformal"];
        assert_eq!(c["coverage_target"], 0.9);
        assert_eq!(c["n_known"], 427);
        assert_eq!(c["n_unseen"], 73);
        in01(&c["coverage_known"], "coverage");
        let per = c["per_class"].as_array().unwrap();
        assert_eq!(per.len(), 8);
        let b = per.iter().find(|r| r["label"] == "B cells").unwrap();
        assert_eq!(b["known"], false);
        assert!(b["coverage"].is_null());
        if name == "correlation" {
            // Spearman ρ are not probabilities: no calibration, sets on 1 - ρ
            assert!(m.get("calibration").is_none());
            assert!(c["score"].as_str().unwrap().starts_with("1 - similarity"));
        } else {
            let cal = &m["calibration"];
            in01(&cal["ece"], "ECE");
            assert_eq!(cal["n_cells"], 427);
            assert_eq!(cal["bins"].as_array().unwrap().len(), 15);
            assert!(c["score"].as_str().unwrap().starts_with("APS"));
        }
    }
    assert!(md.contains("## Novel cell types"));
    assert!(md.contains("B cells (73 query cells)"));
    assert!(md.contains("## Calibration"));
    assert!(md.contains("## Conformal prediction sets (coverage 0.9)"));
    for n in ["logreg", "knn-pca", "correlation"] {
        assert!(
            md.lines()
                .filter(|l| l.starts_with(&format!("| {n} |")))
                .count()
                >= 3,
            "{n}: main, novel and conformal rows\n{md}"
        );
    }
    let header = tsv.lines().next().unwrap();
    assert_eq!(
        header,
        "cell_id\ttruth\tlogreg\tlogreg conformal set\tknn-pca\tknn-pca conformal set\tcorrelation\tcorrelation conformal set"
    );
}

#[test]
fn coverage_alone_gives_conformal_sets_without_novel_results() {
    let (json, md, _) = run("coverage = 0.8\nheld_out_fraction = 0.3");
    assert!(json["split"].get("novel_types").is_none());
    for m in json["methods"].as_array().unwrap() {
        assert!(m.get("novel_types").is_none());
        assert_eq!(m["conformal"]["coverage_target"], 0.8);
        assert_eq!(m["conformal"]["n_unseen"], 0);
    }
    assert!(!md.contains("## Novel cell types"));
    assert!(md.contains("## Conformal prediction sets (coverage 0.8)"));
}

fn error_of(extra: &str) -> String {
    let (_d, p) = config(extra);
    let r = load_config(&p)
        .and_then(|lc| run_benchmark(&lc, &MethodRegistry::with_baselines(), &quiet()));
    match r {
        Ok(_) => panic!("config should fail: {extra}"),
        Err(e) => {
            assert!(e.is_bad_input());
            let m = e.to_string();
            assert!(m.contains("bench.toml"), "must name the config: {m}");
            m
        }
    }
}

#[test]
fn error_novel_type_absent_from_the_data() {
    let m = error_of(r#"novel = ["Plasma cells"]"#);
    assert!(m.contains("field `novel[0]`"), "{m}");
    assert!(m.contains("`Plasma cells` does not occur"), "{m}");
    assert!(m.contains("B cells (164)"), "lists the labels present: {m}");
}

#[test]
fn error_bad_novelty_fields() {
    let m = error_of(r#"novel = ["B cells", "B cells"]"#);
    assert!(
        m.contains("`novel[1]`") && m.contains("listed twice"),
        "{m}"
    );
    let m = error_of("coverage = 1.5");
    assert!(m.contains("field `coverage`"), "{m}");
    let m = error_of("unknown_quantile = 0.05");
    assert!(
        m.contains("field `unknown_quantile`") && m.contains("only used with"),
        "{m}"
    );
    let m = error_of("novel = [\"B cells\"]\nheld_out_fraction = 0");
    assert!(m.contains("field `held_out_fraction`"), "{m}");
}
