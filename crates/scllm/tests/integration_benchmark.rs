//! `task = "integration"` benchmark configs end to end on the committed fixture, and their
//! refusals of bad configs (exit 2, one line naming the config and the field).

mod common;

use std::path::PathBuf;

use common::{fixtures, s, scib_metric, scllm};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn tiny_integration_config_ranks_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let cfg = repo().join("configs/tiny_kang_integration.toml");
    let (code, json, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["task"], "integration");
    assert_eq!(r["cells"], 400);
    let methods = r["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pca", "harmony", "embed:../models/cellplm-small"]);
    let metric = |i: usize, name: &str| scib_metric(&methods[i]["scores"]["metrics"], name);
    // ranks 1..3 by total
    let mut ranks: Vec<u64> = methods
        .iter()
        .map(|m| m["rank"].as_u64().unwrap())
        .collect();
    ranks.sort();
    assert_eq!(ranks, [1, 2, 3]);
    for i in 0..3 {
        for j in 0..3 {
            if methods[i]["rank"].as_u64() < methods[j]["rank"].as_u64() {
                assert!(metric(i, "Total") >= metric(j, "Total"));
            }
        }
    }
    // Harmony mixes the donors more than the PCA it starts from, and the PCA is its own
    // reference for the PCR comparison (0)
    assert!(metric(1, "iLISI") > metric(0, "iLISI"), "{json}");
    assert!(metric(1, "PCR comparison") > 0.2, "{json}");
    assert_eq!(metric(0, "PCR comparison"), 0.0);
    for f in [
        "results.json",
        "results.md",
        "scib_results.png",
        "scib_results.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| rank | method |"), "{md}");
}

#[test]
fn bad_integration_configs_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("{body}\n[data]\nfile = \"{}\"\n", data.display()),
        )
        .unwrap();
        p
    };
    let cases = [
        (
            write("m.toml", "task = \"integration\"\nbatch = \"donor\"\nmethods = [\"pca\", \"scvi\"]"),
            "field `methods`: unknown method `scvi`; integration methods: pca, harmony, embed",
        ),
        (
            write("t.toml", "task = \"integrate\"\nbatch = \"donor\"\nmethods = [\"pca\"]"),
            "field `task`: \"integrate\" is not a task",
        ),
        (
            write("b.toml", "task = \"integration\"\nbatch = \"plate\"\nmethods = [\"pca\"]"),
            "field `batch`: no obs column `plate`",
        ),
        (
            write("o.toml", "task = \"integration\"\nbatch = \"donor\"\nmethods = [\"pca\"]\n[options.harmony]\ntheta = 1.0"),
            "field `options.harmony`: `harmony` is not in `methods`",
        ),
        (
            write("h.toml", "task = \"integration\"\nbatch = \"donor\"\nmethods = [\"harmony\"]\n[options.harmony]\ntheta2 = 1.0"),
            "method `harmony`: unknown field `theta2`",
        ),
    ];
    for (cfg, want) in cases {
        let out = dir.path().join("out");
        let (code, stdout, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out)]);
        assert_eq!(code, 2, "{}: {err}", cfg.display());
        assert!(stdout.is_empty());
        assert!(err.contains(want), "{}: {err}", cfg.display());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.exists(), "a refused config wrote a report");
    }
}

/// `finetune:<strategy>`: the config's model fine-tuned on the cells' labels, its adapted
/// embedding scored beside the zero-shot one of the same model and flagged as label-aware.
#[test]
fn a_fine_tuned_models_embedding_is_a_method() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("scgpt/small");
    let data = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let cfg = dir.path().join("ft.toml");
    std::fs::write(
        &cfg,
        format!(
            "task = \"integration\"\nlabel = \"cell_type\"\nbatch = \"donor\"\n\
             methods = [\"embed:{m}\", \"finetune:full\"]\nmodel = \"{m}\"\nseed = 0\n\
             [data]\nfile = \"{d}\"\n\
             [options.\"embed:{m}\"]\nmax_len = 64\n\
             [options.\"finetune:full\"]\nepochs = 2\nmax_len = 64\n",
            m = model.display(),
            d = data.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("report");
    let (code, json, err) = scllm(&["benchmark", s(&cfg), "-o", s(&out), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    let methods = r["methods"].as_array().unwrap();
    let ft = methods
        .iter()
        .find(|m| m["name"] == "finetune:full")
        .expect("finetune:full in the report");
    assert_eq!(ft["details"]["uses_labels"], true, "{ft}");
    assert_eq!(ft["details"]["strategy"], "full", "{ft}");
    let zero = methods
        .iter()
        .find(|m| m["name"] != "finetune:full")
        .unwrap();
    let asw = |m: &serde_json::Value| scib_metric(&m["scores"]["metrics"], "Silhouette label");
    assert_ne!(
        asw(ft),
        asw(zero),
        "the adapted embedding is the base model's: {json}"
    );
}
