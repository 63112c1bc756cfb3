//! `scllm finetune` / `scllm annotate` end to end on the committed small scGPT fixture and real
//! kang2018_pbmc cells, plus `--dry-run` counts on the whole-human config.

mod common;

use common::{fixtures, s, scllm};
use std::path::Path;
use std::process::Command;

#[test]
fn dry_run_counts_match_the_paper_on_the_whole_human_config() {
    // args.json with the released sizes and a vocabulary of the release's size: no weights
    let dir = tempfile::tempdir().unwrap();
    let args = serde_json::json!({"embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12,
        "n_layers_cls": 3, "dropout": 0.2, "pad_token": "<pad>", "pad_value": -2, "n_bins": 51});
    std::fs::write(dir.path().join("args.json"), args.to_string()).unwrap();
    let mut vocab = serde_json::Map::new();
    for i in 0..60694 {
        vocab.insert(format!("G{i}"), i.into());
    }
    for (i, t) in ["<pad>", "<cls>", "<eoc>"].iter().enumerate() {
        vocab.insert(t.to_string(), (60694 + i).into());
    }
    std::fs::write(
        dir.path().join("vocab.json"),
        serde_json::Value::Object(vocab).to_string(),
    )
    .unwrap();
    let (code, out, err) = scllm(&[
        "finetune",
        "--model",
        s(dir.path()),
        "--method",
        "lora",
        "--n-classes",
        "8",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let get = |m: &str| {
        v["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["method"] == m)
            .unwrap()["trainable"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(get("full"), 51_335_689);
    assert_eq!(get("token-prompt"), 663_176);
    assert_eq!(get("encoder-prompt"), 2_112_008);
    assert_eq!(get("prefix"), 924_680);
    assert_eq!(
        get("lora"),
        746_504,
        "LoRA as the reference code builds it (paper: 1.27M)"
    );
    assert_eq!(get("head"), 527_360 + 513 * 8);
}

fn sha(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn finetune_then_annotate_writes_predictions_and_keeps_the_base() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("scgpt/small");
    let data = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let base_before = sha(&model.join("best_model.pt"));
    let ad = tmp.path().join("adapter");
    let (code, out, err) = scllm(&[
        "finetune",
        "--model",
        s(&model),
        "--train",
        s(&data),
        "--label",
        "cell_type",
        "--method",
        "encoder-prompt",
        "--val-by",
        "donor=1015",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--max-len",
        "128",
        "--lr",
        "1e-3",
        "-o",
        s(&ad),
        "--json",
        "--min-cells-per-class",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "encoder-prompt");
    assert!(v["trainable_params"].as_u64().unwrap() < v["total_params"].as_u64().unwrap());
    for f in [
        "adapter.safetensors",
        "adapter.json",
        "train_log.jsonl",
        "learning_curves.png",
    ] {
        assert!(ad.join(f).is_file(), "{f} missing");
    }
    let log = std::fs::read_to_string(ad.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "one line per epoch");
    assert_eq!(
        sha(&model.join("best_model.pt")),
        base_before,
        "the base file never changes"
    );

    let annotated = tmp.path().join("annotated.h5ad");
    let (code, out, err) = scllm(&[
        "annotate",
        "--model",
        s(&model),
        "--adapter",
        s(&ad),
        s(&data),
        "-o",
        s(&annotated),
        "--max-len",
        "128",
        "--unknown-below",
        "0.99",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = scllm_io::read_h5ad(&annotated).unwrap();
    let n = a.n_obs();
    assert_eq!(n, 400);
    let pred = a.obs_column("predicted_cell_type").unwrap();
    let conf = a.obs_column("prediction_confidence").unwrap();
    let mut unknown = 0;
    for i in 0..n {
        let c = conf.get_f64(i).unwrap();
        assert!((0.0..=1.0).contains(&c));
        let p = pred.get_str(i).unwrap();
        if c < 0.99 {
            assert_eq!(p, "Unknown");
            unknown += 1;
        } else {
            assert_ne!(p, "Unknown");
        }
    }
    assert_eq!(v["unknown"].as_u64().unwrap() as usize, unknown);
    let e = a.obsm_get("X_scGPT_adapted").expect("adapted embeddings");
    assert_eq!(e.shape(), (400, 64));

    // an adapter trained on a gene subset: the query (the full file) is tokenized over the
    // adapter's genes only, so its cells are binned over the gene set the model was trained on
    let hvg = tmp.path().join("hvg.h5ad");
    let (code, _, err) = scllm(&[
        "preprocess",
        s(&data),
        "-o",
        s(&hvg),
        "--hvg",
        "300",
        "--subset-hvg",
    ]);
    assert_eq!(code, 0, "{err}");
    let ad_hvg = tmp.path().join("adapter_hvg");
    let (code, _, err) = scllm(&[
        "finetune",
        "--model",
        s(&model),
        "--train",
        s(&hvg),
        "--method",
        "head",
        "--epochs",
        "1",
        "--max-len",
        "301",
        "-o",
        s(&ad_hvg),
        "--json",
        "--min-cells-per-class",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ad_hvg.join("adapter.json")).unwrap())
            .unwrap();
    let n_adapter_genes = meta["genes"].as_array().unwrap().len();
    let (code, out, err) = scllm(&[
        "annotate",
        "--model",
        s(&model),
        "--adapter",
        s(&ad_hvg),
        s(&data),
        "-o",
        s(&tmp.path().join("annotated_hvg.h5ad")),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["genes_used"].as_u64().unwrap() as usize, n_adapter_genes);
    assert!(n_adapter_genes <= 300);

    // an adapter trained on another base (same shapes, other weights file): refused by hash
    let other = tmp.path().join("other_base");
    std::fs::create_dir(&other).unwrap();
    for f in ["args.json", "vocab.json"] {
        std::fs::copy(model.join(f), other.join(f)).unwrap();
    }
    let m = scllm_models::ScGptModel::load(
        &model,
        &scllm_models::LoadOptions::default(),
        &scllm_models::Device::flex(),
    )
    .unwrap();
    scllm_models::save_safetensors(&m.model, other.join("model.safetensors")).unwrap();
    let (code, _, err) = scllm(&[
        "annotate",
        "--model",
        s(&other),
        "--adapter",
        s(&ad),
        s(&data),
        "-o",
        s(&tmp.path().join("x.h5ad")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.to_lowercase().contains("sha") || err.contains("hash"),
        "{err}"
    );
    assert!(!tmp.path().join("x.h5ad").exists());

    // a missing label column: exit 2, the columns listed
    let (code, _, err) = scllm(&[
        "finetune",
        "--model",
        s(&model),
        "--train",
        s(&data),
        "--label",
        "celltype",
        "--method",
        "head",
        "-o",
        s(&tmp.path().join("y")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("celltype") && err.contains("cell_type"),
        "{err}"
    );
}

#[test]
fn pretrain_writes_a_model_that_embed_and_dry_run_use() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[model]\nembsize = 16\nnheads = 2\nd_hid = 32\nnlayers = 2\n\n[data]\nmax_len = 32\n\
         min_files_per_gene = 2\nexclude = [\"kang2018_pbmc_400.h5ad:donor=1015\"]\n\n\
         [train]\nsteps = 6\nbatch_size = 8\nlog_every = 2\ncheckpoint_every = 3\n",
    )
    .unwrap();
    let out = tmp.path().join("model");
    let d = fixtures().join("data");
    let (code, stdout, err) = scllm(&[
        "pretrain",
        "--data",
        s(&d.join("kang2018_pbmc_400.h5ad")),
        s(&d.join("pbmc3k_300.h5ad")),
        "--config",
        s(&cfg),
        "-o",
        s(&out),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["steps"], 6);
    assert_eq!(v["finished"], true);
    let emb = tmp.path().join("emb.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        "--model",
        s(&out),
        s(&d.join("pbmc3k_300.h5ad")),
        "-o",
        s(&emb),
        "--max-len",
        "32",
    ]);
    assert_eq!(code, 0, "{err}");
    let a = scllm_io::read_h5ad(&emb).unwrap();
    assert_eq!(a.obsm_get("X_scGPT").unwrap().shape(), (300, 16));
    // bad config: exit 2 naming the file
    std::fs::write(&cfg, "[model]\nembsize = 16\n").unwrap();
    let (code, _, err) = scllm(&[
        "pretrain",
        "--data",
        s(&d.join("pbmc3k_300.h5ad")),
        "--config",
        s(&cfg),
        "-o",
        s(&tmp.path().join("m2")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("p.toml"), "{err}");
}

#[test]
fn model_defaults_to_scllm_model_env() {
    let small = fixtures().join("scgpt/small");
    let out = Command::new(env!("CARGO_BIN_EXE_scllm"))
        .args([
            "finetune",
            "--method",
            "head",
            "--n-classes",
            "3",
            "--dry-run",
            "--json",
        ])
        .env("SCLLM_MODEL", &small)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], s(&small));
    // a folder that is not a model: exit 2, named
    let out = Command::new(env!("CARGO_BIN_EXE_scllm"))
        .args([
            "finetune",
            "--method",
            "head",
            "--n-classes",
            "3",
            "--dry-run",
        ])
        .env("SCLLM_MODEL", "/nonexistent/model")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
}
