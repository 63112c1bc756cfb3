//! CellPLM through `scllm embed` (tests/fixtures/cellplm, made by tools/make_cellplm_fixture.py
//! with the reference's own pipeline): the folder detected, obs['batch'] sets by default,
//! `--batch-size` and `--group-by none` as the reference's batch size and single set, the
//! grouping recorded in uns, and commands that do not run CellPLM yet saying so.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, s, scllm};

fn dir() -> PathBuf {
    fixtures().join("cellplm")
}

fn expected(name: &str) -> Vec<f32> {
    scllm_models::Checkpoint::open(dir().join("expected.safetensors"))
        .unwrap()
        .read_f32(name)
        .unwrap()
}

fn obsm(path: &Path) -> (usize, Vec<f32>, scllm_io::AnnData) {
    let a = scllm_io::read_h5ad(path).unwrap();
    let m = a
        .obsm
        .iter()
        .find(|(k, _)| k == "X_cellplm")
        .expect("obsm X_cellplm")
        .1
        .clone();
    match m {
        scllm_io::Matrix::Dense { ncols, data, .. } => (ncols, data.to_f32(), a),
        _ => panic!("obsm X_cellplm is not dense"),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn embed_by_batch_sets_batch_size_and_one_set() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = dir().join("cells.h5ad");
    let model = dir();
    for (extra, name, n_sets) in [
        (vec![], "latent", 3),
        (vec!["--batch-size", "5"], "latent_bs5", 9),
        (vec!["--group-by", "none"], "latent_one_set", 1),
    ] {
        let out = tmp.path().join(format!("{name}.h5ad"));
        let mut args = vec![
            "embed",
            s(&cells),
            "--model",
            s(&model),
            "-o",
            s(&out),
            "--json",
        ];
        args.extend(extra);
        let (code, stdout, err) = scllm(&args);
        assert_eq!(code, 0, "{err}");
        let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(r["family"], "cellplm");
        assert_eq!(r["genes_matched"][0], 160);
        let (d, z, a) = obsm(&out);
        assert_eq!(d, 16);
        let diff = max_diff(&z, &expected(name));
        assert!(diff <= 1e-4, "{name}: {diff}");
        match a.uns_get("cellplm_sets") {
            Some(scllm_io::UnsValue::Dict(v)) => {
                let sets = v.iter().find(|(k, _)| k == "n_sets").unwrap();
                assert_eq!(sets.1, scllm_io::UnsValue::I64(n_sets), "{name}");
            }
            other => panic!("uns cellplm_sets: {other:?}"),
        }
    }
}

#[test]
fn commands_without_cellplm_support_say_so() {
    let (code, _, err) = scllm(&["convert", "--model", s(&dir())]);
    assert_ne!(code, 0);
    assert!(
        err.contains("CellPLM") && err.contains("scllm embed"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        s(&dir().join("cells.h5ad")),
        "--model",
        s(&dir()),
        "-o",
        s(&out),
        "--stream",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--stream") && err.contains("CellPLM"), "{err}");
    assert!(!out.exists(), "no half-written output");
}
