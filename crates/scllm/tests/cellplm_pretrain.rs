//! `scllm pretrain` with a CellPLM config (`[model] family = "cellplm"`): a small model
//! pretrained on the committed CellPLM fixture cells writes a folder in the released layout that
//! `scllm embed` and `scllm finetune --dry-run` read, its NB loss falls, and its
//! `pretrain_log.jsonl` and `loss_curve.png` are written; bad configs are refused.

mod common;

use common::{fixtures, s, scllm};

const CONFIG: &str = r#"
[model]
family = "cellplm"
enc_hid = 32
enc_layers = 2
enc_head = 4
post_latent_dim = 8
num_clusters = 4

[data]
set_size = 12

[train]
steps = 80
lr = 5e-3
log_every = 10
seed = 1
"#;

#[test]
fn pretrain_a_small_cellplm_then_embed_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cellplm.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = tmp.path().join("model");
    let cells = fixtures().join("cellplm/cells.h5ad");
    let (code, stdout, err) = scllm(&[
        "pretrain",
        "--config",
        s(&cfg),
        "-o",
        s(&out),
        "--data",
        s(&cells),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["genes"], 180, "every gene of the one file");
    for f in [
        "cellplm.config.json",
        "cellplm.best.ckpt",
        "pretrain_log.jsonl",
        "loss_curve.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let log: Vec<serde_json::Value> = std::fs::read_to_string(out.join("pretrain_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nb = |i: usize| log[i]["nb"].as_f64().unwrap();
    assert_eq!(log.len(), 8);
    assert!(nb(7) < 0.9 * nb(0), "NB loss {} -> {}", nb(0), nb(7));
    // the folder is a CellPLM model for embed (its decoder is listed, not read)
    let emb = tmp.path().join("emb.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        s(&cells),
        "--model",
        s(&out),
        "-o",
        s(&emb),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let a = scllm_io::read_h5ad(&emb).unwrap();
    let (_, m) = a.obsm.iter().find(|(k, _)| k == "X_cellplm").unwrap();
    let v = match m {
        scllm_io::Matrix::Dense { ncols, data, .. } => {
            assert_eq!(*ncols, 8);
            data.to_f32()
        }
        _ => panic!("dense obsm"),
    };
    assert!(v.iter().all(|x| x.is_finite()));
    // and pretraining continues from it (every pretraining tensor saved)
    let f = scllm_models::cellplm::CellPlmFolder::open(&out).unwrap();
    let (_, report) = f.load_pretrain(&scllm_models::Device::flex()).unwrap();
    assert!(report.missing.is_empty() && report.skipped.is_empty());

    // a config naming another family, or with a bad size, is refused with the file named
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, CONFIG.replace("enc_head = 4", "enc_head = 5")).unwrap();
    let (code, _, err) = scllm(&[
        "pretrain",
        "--config",
        s(&bad),
        "-o",
        s(&tmp.path().join("x")),
        "--data",
        s(&cells),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("bad.toml") && err.contains("enc_head"),
        "{err}"
    );
}
