//! `scllm integrate harmony` and `scllm evaluate-embedding` end to end, and their refusals of
//! bad input (exit 2, one line naming the file and field).

mod common;

use common::{fixtures, s, scib_metric, scllm};
use scllm_io::{read_h5ad, write_h5ad, Column, Compression};

fn kang() -> std::path::PathBuf {
    fixtures().join("integration/kang400_scib.h5ad")
}

#[test]
fn harmony_mixes_donors_and_evaluate_embedding_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.h5ad");
    let (code, _, err) = scllm(&[
        "integrate",
        "harmony",
        s(&kang()),
        "--batch",
        "donor",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("obsm['X_pca_harmony']"), "{err}");
    let a = read_h5ad(&out).unwrap();
    assert_eq!(a.obsm_get("X_pca_harmony").unwrap().shape(), (400, 50));
    // the input embedding is kept as it was
    let before = read_h5ad(kang()).unwrap();
    assert_eq!(
        a.obsm_get("X_pca").unwrap().to_dense_f64(),
        before.obsm_get("X_pca").unwrap().to_dense_f64()
    );

    let (code, json, err) = scllm(&[
        "evaluate-embedding",
        s(&out),
        "--use-rep",
        "X_pca",
        "--use-rep",
        "X_pca_harmony",
        "--batch",
        "donor",
        "--label",
        "cell_type",
        "--pre-rep",
        "X_pca",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    let metric = |i: usize, name: &str| scib_metric(&r["embeddings"][i]["metrics"], name);
    assert_eq!(r["embeddings"][1]["key"], "X_pca_harmony");
    // X_pca's numbers are scib-metrics' (tools/scib_fixture.py)
    assert!((metric(0, "iLISI") - 0.569117).abs() < 2e-4);
    // Harmony mixes donors (iLISI, kBET up) and removes their share of variance
    assert!(metric(1, "iLISI") > metric(0, "iLISI") + 0.05, "{json}");
    assert!(metric(1, "PCR comparison") > 0.3, "{json}");
}

/// The fixture with `edit` applied, written to `dir/name`.
fn edited(dir: &std::path::Path, name: &str, edit: impl FnOnce(&mut scllm_io::AnnData)) -> String {
    let mut a = read_h5ad(kang()).unwrap();
    edit(&mut a);
    let p = dir.join(name);
    write_h5ad(&a, &p, Compression::None).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let one_batch = edited(dir.path(), "one.h5ad", |a| {
        a.obs.set(
            "donor",
            Column::categorical_from(&vec![Some("d1".to_string()); 400]),
        );
    });
    let nan_label = edited(dir.path(), "nan.h5ad", |a| {
        let mut v = a.obs_column("cell_type").unwrap().to_strings();
        v[3] = None;
        a.obs.set("cell_type", Column::categorical_from(&v));
    });
    let few = dir.path().join("few.h5ad");
    let a = read_h5ad(kang()).unwrap();
    write_h5ad(
        &a.select_obs(&(0..50).collect::<Vec<_>>()),
        &few,
        Compression::None,
    )
    .unwrap();
    let k = kang();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "evaluate-embedding",
                &one_batch,
                "--use-rep",
                "X_pca",
                "--batch",
                "donor",
            ],
            "obs['donor']` (batch): one value only",
        ),
        (
            vec![
                "evaluate-embedding",
                &nan_label,
                "--use-rep",
                "X_pca",
                "--batch",
                "donor",
            ],
            "obs['cell_type']` (label): 1 of 400 cells have no value (NaN)",
        ),
        (
            vec![
                "evaluate-embedding",
                s(&k),
                "--use-rep",
                "X_scGPT",
                "--batch",
                "donor",
            ],
            "obsm['X_scGPT']`: no such embedding",
        ),
        (
            vec![
                "evaluate-embedding",
                s(&few),
                "--use-rep",
                "X_pca",
                "--batch",
                "donor",
            ],
            "50 cells, fewer than the 90 neighbours",
        ),
        (
            vec![
                "evaluate-embedding",
                s(&k),
                "--use-rep",
                "X_pca",
                "--batch",
                "plate",
            ],
            "obs['plate']` (batch): no such column",
        ),
        (
            vec![
                "integrate",
                "harmony",
                &one_batch,
                "--batch",
                "donor",
                "-o",
                "/tmp/never.h5ad",
            ],
            "Harmony needs at least two batches",
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = scllm(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/never.h5ad").exists());
}
