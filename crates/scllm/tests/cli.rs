//! The `scllm` binary end to end: outputs, help text, and bad input (exit 2, clear message,
//! no output file left behind).

mod common;

use common::{fixtures, s, scllm, scllm_env};
use std::path::PathBuf;

#[test]
fn inspect_json_describes_the_dataset() {
    let f = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let (code, out, err) = scllm(&["inspect", s(&f), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n_obs"], 400);
    assert_eq!(v["n_vars"], 1287);
    assert_eq!(v["x"]["kind"], "counts");
    assert_eq!(v["x"]["storage"], "csr");
    let counts = v["labels"]["counts"].as_array().unwrap();
    assert_eq!(counts[0], serde_json::json!(["CD4 T cells", 173]));
    assert_eq!(
        counts.iter().map(|c| c[1].as_u64().unwrap()).sum::<u64>(),
        400
    );
    // the old-layout file: scaled X, log-normalized raw
    let (code, out, _) = scllm(&[
        "inspect",
        s(&fixtures().join("data/pbmc68k_reduced.h5ad")),
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["x"]["kind"], "scaled");
    assert_eq!(v["raw"]["kind"], "lognorm");
}

#[test]
fn preprocess_writes_the_layers_scanpy_and_scgpt_users_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pp.h5ad");
    let f = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let (code, stdout, err) = scllm(&[
        "preprocess",
        s(&f),
        "-o",
        s(&out),
        "--min-genes",
        "10",
        "--normalize-total",
        "--log1p",
        "--hvg",
        "200",
        "--hvg-flavor",
        "cell_ranger",
        "--bin",
        "51",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["highly_variable"], 200);
    let a = scllm_io::read_h5ad(&out).unwrap();
    for l in ["X_normed", "X_log1p", "X_binned"] {
        assert!(a.layer(l).is_some(), "layer {l}");
    }
    assert_eq!(
        a.x().unwrap(),
        &scllm_io::read_h5ad(&f).unwrap().x.unwrap(),
        "X keeps the counts"
    );
    assert_eq!(a.obsm_get("bin_edges").unwrap().shape(), (400, 51));
    let hv = a.var.column("highly_variable").unwrap();
    assert_eq!(
        (0..a.n_vars())
            .filter(|&j| hv.get_f64(j) == Some(1.0))
            .count(),
        200
    );
    let bins = a.layer("X_binned").unwrap().to_dense_f64();
    assert!(bins.iter().all(|&b| (0.0..=50.0).contains(&b)) && bins.contains(&50.0));
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        "inspect",
        "preprocess",
        "papers",
        "baseline",
        "evaluate",
        "embed",
        "convert",
        "umap",
        "finetune",
        "annotate",
        "benchmark",
        "pretrain",
    ] {
        let (code, out, _) = scllm(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Example"), "{cmd} --help lacks an example");
    }
}

fn bad(file: &str, extra: &[&str], expect: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.h5ad");
    let f = if file.starts_with('/') {
        PathBuf::from(file)
    } else {
        fixtures().join(file)
    };
    let mut args = vec!["preprocess", s(&f), "-o", s(&out)];
    args.extend_from_slice(extra);
    let (code, _, err) = scllm(&args);
    assert_eq!(code, 2, "{file}: expected exit 2, stderr: {err}");
    for e in expect {
        assert!(err.contains(e), "{file}: stderr lacks {e:?}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "{file}: output left behind"
    );
}

#[test]
fn bad_input_fails_clearly_and_leaves_no_output() {
    bad("/no/such/file.h5ad", &[], &["file.h5ad", "not found"]);
    bad(
        "bad/not_hdf5.h5ad",
        &[],
        &["not_hdf5.h5ad", "not an HDF5 file"],
    );
    bad(
        "bad/hdf5_not_anndata.h5ad",
        &[],
        &["hdf5_not_anndata.h5ad", "not AnnData"],
    );
    bad("bad/no_x.h5ad", &[], &["no_x.h5ad", "`X`", "missing"]);
    bad(
        "bad/negative.h5ad",
        &["--normalize-total"],
        &["negative.h5ad", "negative values"],
    );
    bad(
        "bad/negative.h5ad",
        &["--hvg", "2"],
        &["negative value", "seurat_v3"],
    );
    bad("bad/nan.h5ad", &["--log1p"], &["nan.h5ad", "NaN"]);
    bad(
        "bad/duplicate_genes.h5ad",
        &[],
        &[
            "duplicate_genes.h5ad",
            "duplicate gene names",
            "CD3E",
            "--make-unique",
        ],
    );
    bad(
        "data/kang2018_pbmc_400.h5ad",
        &["--label", "celltype"],
        &["obs['celltype']", "cell_type, donor"],
    );
    bad(
        "data/kang2018_pbmc_400.h5ad",
        &["--min-genes", "100000"],
        &["kang2018_pbmc_400.h5ad", "no cells left"],
    );
    let vocab =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../resources/default_gene_vocab.json");
    bad(
        "bad/no_vocab_overlap.h5ad",
        &["--vocab", s(&vocab)],
        &["no_vocab_overlap.h5ad", "none of its 3 genes"],
    );
    bad(
        "data/kang2018_pbmc_400.h5ad",
        &["--hvg", "10", "--hvg-flavor", "seurat"],
        &["needs log-normalized data"],
    );
    bad(
        "data/kang2018_pbmc_400.h5ad",
        &["--compression", "zstd"],
        &["unknown compression"],
    );
}

#[test]
fn baseline_then_evaluate_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pred.h5ad");
    let e = fixtures().join("eval");
    let (code, stdout, err) = scllm(&[
        "baseline",
        "knn",
        s(&e.join("kang_query.h5ad")),
        "--train",
        s(&e.join("kang_ref.h5ad")),
        "--label",
        "cell_type",
        "-o",
        s(&out),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v.is_object(), "{stdout}");
    let (code, stdout, err) = scllm(&[
        "evaluate",
        s(&out),
        "--truth",
        "cell_type",
        "--pred",
        "predicted_cell_type",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let acc = m
        .pointer("/classification/accuracy")
        .and_then(|x| x.as_f64())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(acc > 0.8, "kNN on the held-out donor: accuracy {acc}");
    // a label column that does not exist: exit 2 and the columns there are
    let (code, _, err) = scllm(&[
        "baseline",
        "logreg",
        s(&e.join("kang_query.h5ad")),
        "--train",
        s(&e.join("kang_ref.h5ad")),
        "--label",
        "celltype",
        "-o",
        s(&tmp.path().join("x.h5ad")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("celltype") && !tmp.path().join("x.h5ad").exists(),
        "{err}"
    );
}

#[test]
fn embed_writes_normalised_embeddings_in_input_order() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("emb.h5ad");
    let model = fixtures().join("scgpt/small");
    let input = fixtures().join("data/pbmc3k_300.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        "--model",
        s(&model),
        s(&input),
        "-o",
        s(&out),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let a = scllm_io::read_h5ad(&out).unwrap();
    let src = scllm_io::read_h5ad(&input).unwrap();
    assert_eq!(a.obs.index, src.obs.index, "cells in input order");
    let e = a.obsm_get("X_scGPT").expect("obsm['X_scGPT']");
    assert_eq!(e.values().dtype(), "float32");
    let (n, d) = e.shape();
    assert_eq!(n, 300);
    let v = e.to_dense_f64();
    for i in 0..n {
        let norm: f64 = v[i * d..(i + 1) * d]
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "cell {i} has norm {norm}");
    }
    // streamed: the same embeddings, and X copied through block by block
    let out_s = tmp.path().join("emb_stream.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        "--model",
        s(&model),
        s(&input),
        "-o",
        s(&out_s),
        "--stream",
        "--block-cells",
        "64",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let b = scllm_io::read_h5ad(&out_s).unwrap();
    let w = b
        .obsm_get("X_scGPT")
        .expect("obsm['X_scGPT'] when streamed");
    assert_eq!(w.shape(), (n, d));
    // other blocks mean other length-grouped batches: equal up to float summation order
    let worst = w
        .to_dense_f64()
        .iter()
        .zip(&v)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "streamed embeddings differ by {worst}");
    assert_eq!(
        b.x.as_ref().map(|m| m.to_dense_f64()),
        src.x.as_ref().map(|m| m.to_dense_f64()),
        "X written through"
    );
    assert_eq!(b.obs.index, src.obs.index);
    // a model folder without weights: exit 2, no output
    let (code, _, err) = scllm(&[
        "embed",
        "--model",
        s(tmp.path()),
        s(&input),
        "-o",
        s(&tmp.path().join("x.h5ad")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(!tmp.path().join("x.h5ad").exists());
}

#[test]
fn preprocess_seurat_v3_with_batch_key_selects_scanpys_genes_in_memory_and_streamed() {
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            fixtures().join("parity/hvg_seurat_v3_kang2018_pbmc_400_donor.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let want: std::collections::HashSet<String> = exp["highly_variable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let f = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    for stream in [false, true] {
        let out = tmp.path().join(format!("v3_{stream}.h5ad"));
        let mut args = vec![
            "preprocess",
            s(&f),
            "-o",
            s(&out),
            "--hvg",
            "300",
            "--batch-key",
            "donor",
        ];
        if stream {
            args.push("--stream");
        }
        let (code, _, err) = scllm(&args);
        assert_eq!(code, 0, "{err}");
        let a = scllm_io::read_h5ad(&out).unwrap();
        let hv = a.var.column("highly_variable").unwrap();
        let ours: std::collections::HashSet<String> = (0..a.n_vars())
            .filter(|&j| hv.get_f64(j) == Some(1.0))
            .map(|j| a.var.index[j].clone())
            .collect();
        assert_eq!(ours.len(), 300);
        let shared = ours.intersection(&want).count();
        assert!(
            shared >= 297,
            "stream={stream}: {shared} of 300 genes shared with scanpy"
        );
        assert!(a.var.column("highly_variable_nbatches").is_some());
    }
}

#[test]
fn umap_and_evaluate_plots_write_pictures_and_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred.h5ad");
    let (code, _, err) = scllm(&[
        "baseline",
        "knn",
        "--train",
        s(&fixtures().join("eval/kang_ref.h5ad")),
        "--label",
        "cell_type",
        s(&fixtures().join("eval/kang_query.h5ad")),
        "-o",
        s(&pred),
    ]);
    assert_eq!(code, 0, "{err}");
    let png = tmp.path().join("u.png");
    let out = tmp.path().join("u.h5ad");
    let (code, _, err) = scllm(&[
        "umap",
        s(&pred),
        "--color",
        "cell_type",
        "--color",
        "predicted_cell_type",
        "--plot",
        s(&png),
        "-o",
        s(&out),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let a = scllm_io::read_h5ad(&out).unwrap();
    let n = a.n_obs();
    let l = a.obsm_get("X_umap").expect("obsm['X_umap']");
    assert_eq!(l.shape(), (n, 2));
    assert!(l.to_dense_f64().iter().all(|v| v.is_finite()));

    let dir = tmp.path().join("plots");
    let (code, stdout, err) = scllm(&[
        "evaluate",
        s(&out),
        "--pred",
        "predicted_cell_type",
        "--embedding",
        "X_umap",
        "--plots",
        s(&dir),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["plots"].as_array().unwrap().len(), 6, "{stdout}");
    for f in ["confusion.png", "per_class_f1.svg", "umap.png"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 1000, "{f}");
    }
    let svg = std::fs::read_to_string(dir.join("confusion.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("B cells"));

    // a colour column that does not exist: exit 2, the columns listed, nothing written
    let bad_png = tmp.path().join("bad.png");
    let (code, _, err) = scllm(&[
        "umap",
        s(&pred),
        "--color",
        "celltype",
        "--plot",
        s(&bad_png),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("celltype") && err.contains("cell_type"),
        "{err}"
    );
    assert!(!bad_png.exists());
}

#[test]
fn benchmark_runs_the_tiny_config_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = fixtures().join("../../configs/tiny_kang_fixture.toml");
    let out = tmp.path().join("report");
    let (code, stdout, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out), "--no-fewshot"]);
    assert_eq!(code, 0, "{err}");
    for m in ["logreg", "knn-pca", "correlation"] {
        assert!(stdout.contains(m), "table lacks {m}: {stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(v["methods"].as_array().unwrap().len(), 3);
    for m in v["methods"].as_array().unwrap() {
        let acc = m["metrics"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.5 && acc <= 1.0, "{m}");
    }
    assert!(out.join("results.md").is_file() && out.join("predictions.tsv").is_file());
    assert!(out.join("confusion_logreg.png").is_file() && out.join("f1_knn-pca.svg").is_file());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let dir = cfg.parent().unwrap();
    // the model methods, on the committed small (random-weight) scGPT fixture, found through
    // $SCLLM_MODEL (the config names no model); fine-tuning on the 500 most variable genes
    let small = fixtures().join("scgpt/small");
    let t = text
        .replace(
            r#"methods = ["logreg", "knn-pca", "correlation"]"#,
            "methods = [\"logreg\", \"knn-pca\", \"correlation\", \"scgpt-knn\", \"finetune:head\"]",
        )
        .replace(
            "[fewshot]",
            "[options.\"scgpt-knn\"]\nmax_len = 128\n\n[options.\"finetune:head\"]\nepochs = 1\nn_hvg = 500\nlr = 1e-3\n\n[fewshot]",
        );
    let p = dir.join(format!(".models_{}.toml", std::process::id()));
    std::fs::write(&p, t).unwrap();
    let out_m = tmp.path().join("report_models");
    let (code, stdout, err) = scllm_env(
        &["benchmark", s(&p), "-o", s(&out_m), "--no-fewshot"],
        &[("SCLLM_MODEL", s(&small))],
    );
    std::fs::remove_file(&p).unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("scgpt-knn") && stdout.contains("finetune:head"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_m.join("results.json")).unwrap())
            .unwrap();
    let head = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "finetune:head")
        .unwrap();
    assert_eq!(head["status"], "ok", "{head}");
    assert!(head["trainable_params"].as_u64().unwrap() > 0);
    let data = head["details"]["data"].as_str().unwrap();
    assert!(data.contains("of 500 genes matched"), "{data}");
    // an unknown method and a model method without a model folder ($SCLLM_MODEL names none):
    // exit 2, named
    for (bad_methods, expect) in [
        (
            r#"methods = ["logreg", "knn-pca", "correlation", "svm"]"#,
            "svm",
        ),
        (
            r#"methods = ["logreg", "knn-pca", "correlation", "finetune:lora"]"#,
            "SCLLM_MODEL",
        ),
    ] {
        let t = text.replace(
            r#"methods = ["logreg", "knn-pca", "correlation"]"#,
            bad_methods,
        );
        let p = dir.join(format!(".bad_{}.toml", std::process::id()));
        std::fs::write(&p, t).unwrap();
        let (code, _, err) = scllm_env(
            &["benchmark", s(&p), "-o", s(&tmp.path().join("r2"))],
            &[("SCLLM_MODEL", s(&tmp.path().join("no_model")))],
        );
        std::fs::remove_file(&p).unwrap();
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(expect), "{err}");
    }
}

/// `scllm check` with a scGPT model: the shipped model's vocabulary against the kang fixture's
/// symbols, and negative (scaled) values refused with exit 2 after the report.
#[test]
fn check_preflights_a_file_against_a_scgpt_model() {
    let model = fixtures().join("scgpt/small");
    let data = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let (code, out, err) = scllm(&["check", s(&data), "--model", s(&model), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["family"], "scgpt");
    assert_eq!(r["values"], "counts");
    assert_eq!(r["storage"], "sparse (CSR)");
    assert!(r["genes_matched"].as_u64().unwrap() > 0);
    let neg = fixtures().join("bad/negative.h5ad");
    let (code, out, err) = scllm(&[
        "check",
        s(&neg),
        "--model",
        s(&model),
        "--min-gene-match",
        "0",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("scaled") || err.contains("non-negative"),
        "{err}"
    );
    assert!(out.contains("fits the model: no"), "{out}");
}
