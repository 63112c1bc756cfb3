//! `scllm baseline celltypist` end to end on the committed CellTypist fixtures
//! (tests/fixtures/celltypist; the numbers themselves are checked against celltypist 1.7.1 in
//! crates/scllm-eval/tests/celltypist_parity.rs).

mod common;

use common::{fixtures, s, scllm};

#[test]
fn celltypist_annotates_with_majority_voting_and_prints_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.h5ad");
    let d = fixtures().join("celltypist");
    let (code, stdout, stderr) = scllm(&[
        "baseline",
        "celltypist",
        s(&d.join("tcells_query.h5ad")),
        "--model",
        s(&d.join("models/cd4.pkl")),
        "--mode",
        "prob_match",
        "--p-thres",
        "0.2",
        "--over-clustering",
        "celltypist_over_clustering",
        "-o",
        s(&out),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["method"], "celltypist");
    assert_eq!(j["mode"], "prob match");
    assert_eq!(j["n_query"], 120);
    assert_eq!(j["classes"].as_array().unwrap().len(), 42);
    assert_eq!(j["over_clustering"], "obs['celltypist_over_clustering']");
    assert!(j["metrics"]["accuracy"].is_number());
    let a = scllm_io::read_h5ad(&out).unwrap();
    assert!(a.obs.column("majority_voting").is_some());
    assert_eq!(
        a.obsm_get("celltypist_probability").unwrap().shape(),
        (120, 42)
    );
}

#[test]
fn celltypist_input_errors_name_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.h5ad");
    let d = fixtures().join("celltypist");
    let q = d.join("tcells_query.h5ad");
    // no model
    let (code, _, stderr) = scllm(&["baseline", "celltypist", s(&q), "-o", s(&out)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--model"), "{stderr}");
    // a pickle that would run a command
    let (code, _, stderr) = scllm(&[
        "baseline",
        "celltypist",
        s(&q),
        "--model",
        s(&d.join("models/bad_os_system.pkl")),
        "-o",
        s(&out),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("system`"), "{stderr}");
    assert!(!out.exists());
    // the other baselines still need --train
    let (code, _, stderr) = scllm(&["baseline", "logreg", s(&q), "-o", s(&out)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--train"), "{stderr}");
}
