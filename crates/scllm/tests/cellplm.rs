//! CellPLM through `scllm embed` (tests/fixtures/cellplm, made by tools/make_cellplm_fixture.py
//! with the reference's own pipeline): the folder detected, obs['batch'] sets by default,
//! `--batch-size` and `--group-by none` as the reference's batch size and single set, the
//! grouping recorded in uns, `--stream` giving the in-memory numbers, and commands that do not
//! run CellPLM yet saying so.

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
            // the reference's numbers (this CPU's default may be bf16)
            "--precision",
            "f32",
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

/// `convert` writes every tensor scllm reads, bit for bit under the reference's state-dict
/// keys; the checkpoint's other tensors are the report's unexpected ones.
#[test]
fn convert_writes_the_checkpoint_tensors_under_the_reference_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny.safetensors");
    let (code, stdout, err) = scllm(&["convert", "--model", s(&dir()), "-o", s(&out), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["family"], "cellplm");
    let ckpt = scllm_models::Checkpoint::open_entry(
        dir().join("tiny.best.ckpt"),
        Some("model_state_dict"),
        &|k| k.to_string(),
    )
    .unwrap();
    let written = scllm_models::Checkpoint::open(&out).unwrap();
    let keys: Vec<&str> = written.keys().collect();
    let loaded = r["report"]["loaded"].as_array().unwrap();
    assert_eq!(keys.len(), loaded.len(), "one tensor per loaded key");
    for k in &keys {
        assert_eq!(written.shape(k), ckpt.shape(k), "{k}");
        let (a, b) = (written.read_f32(k).unwrap(), ckpt.read_f32(k).unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{k}"
        );
    }
    // the decoder (pretraining) is kept; what no scllm module reads is reported
    assert!(keys.iter().any(|k| k.starts_with("decoder.")), "{keys:?}");
    let unexpected = r["report"]["unexpected"].as_array().unwrap();
    assert_eq!(keys.len() + unexpected.len(), ckpt.keys().count());
    // flags of the token families say so, and nothing is written
    let out2 = tmp.path().join("o2.safetensors");
    let (code, _, err) = scllm(&[
        "convert",
        "--model",
        s(&dir()),
        "--n-cls",
        "3",
        "-o",
        s(&out2),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--n-cls") && err.contains("CellPLM"), "{err}");
    assert!(!out2.exists());
}

/// `check` matches genes as `embed` does and wants raw counts in X.
#[test]
fn check_reports_the_gene_match_and_wants_counts() {
    let cells = dir().join("cells.h5ad");
    let (code, stdout, err) = scllm(&["check", s(&cells), "--model", s(&dir()), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["family"], "cellplm");
    assert_eq!(r["genes_matched"], 160, "as embed matches them");
    assert_eq!(r["values"], "counts");
    assert_eq!(r["values_fit_the_model"], true);
    // log-normalised X: a problem, exit 2
    let tmp = tempfile::tempdir().unwrap();
    let mut a = scllm_io::read_h5ad(&cells).unwrap();
    let mut x = a.x().unwrap().to_csr();
    let v: Vec<f32> = x.data.to_f32().iter().map(|c| c.ln_1p() * 1.37).collect();
    x.data = scllm_io::Values::F32(v);
    a.x = Some(scllm_io::Matrix::Csr(x));
    let lognorm = tmp.path().join("lognorm.h5ad");
    scllm_io::write_h5ad(&a, &lognorm, scllm_io::Compression::None).unwrap();
    let (code, stdout, err) = scllm(&["check", s(&lognorm), "--model", s(&dir())]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        err.contains("CellPLM") && err.contains("raw counts"),
        "{stdout}{err}"
    );
    let (code, _, err) = scllm(&[
        "check",
        s(&cells),
        "--model",
        s(&dir()),
        "--layer",
        "counts",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--layer") && err.contains("CellPLM"), "{err}");
}

/// `--stream` reads X in blocks; the fixture's groups are interleaved, so every set spans
/// several blocks and runs only once its last cell is read: the numbers must be the in-memory
/// run's bit for bit, with the same X, obs and grouping in the output.
#[test]
fn streamed_embedding_is_the_in_memory_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = dir().join("cells.h5ad");
    let model = dir();
    let input = scllm_io::read_h5ad(&cells).unwrap();
    for extra in [
        vec![],
        vec!["--batch-size", "5"],
        vec!["--group-by", "none"],
    ] {
        let run = |name: &str, more: &[&str]| {
            let out = tmp.path().join(format!("{name}.h5ad"));
            let mut args = vec!["embed", s(&cells), "--model", s(&model), "-o", s(&out)];
            args.extend(&extra);
            args.extend(more);
            args.push("--json");
            let (code, stdout, err) = scllm(&args);
            assert_eq!(code, 0, "{extra:?} {more:?}: {err}");
            let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            (r, obsm(&out))
        };
        let (whole, (_, z, a)) = run("whole", &[]);
        assert_eq!(whole["streamed"], false);
        for block in ["1", "4", "1000"] {
            let (r, (_, zs, b)) = run(
                &format!("stream{block}"),
                &["--stream", "--block-cells", block],
            );
            assert_eq!(r["streamed"], true);
            assert_eq!(r["sets"], whole["sets"], "{extra:?}");
            let same = z.iter().zip(&zs).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same && z.len() == zs.len(),
                "{extra:?} block {block}: {}",
                max_diff(&z, &zs)
            );
            assert_eq!(b.uns_get("cellplm_sets"), a.uns_get("cellplm_sets"));
            assert_eq!(b.obs.column_names(), input.obs.column_names());
            let (x, y) = (input.x().unwrap().to_csr(), b.x().unwrap().to_csr());
            assert_eq!(
                (x.indptr, x.indices),
                (y.indptr, y.indices),
                "X copied as read"
            );
            assert_eq!(x.data.to_f32(), y.data.to_f32());
        }
    }
}
