//! The README's main job: `scllm benchmark configs/kang_fixture_models.toml` on the committed
//! fixtures runs the shipped CellPLM (zero-shot kNN and full fine-tuning) beside the baselines,
//! every row ok and above the majority class.

mod common;

use common::{fixtures, s, scllm};

#[test]
fn main_job_runs_the_shipped_cellplm_beside_the_baselines() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixtures().join("../../configs/kang_fixture_models.toml");
    let out = tmp.path().join("report");
    let (code, _, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out)]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let rows = v["methods"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "logreg",
            "knn-pca",
            "correlation",
            "embed-knn",
            "finetune:full"
        ]
    );
    // the query's majority class (CD4 T cells) is 0.346 of its 500 cells
    for m in rows {
        assert_eq!(m["status"], "ok", "{m}");
        let acc = m["metrics"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.55, "{}: accuracy {acc}", m["name"]);
    }
}
