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

/// A run stopped and resumed (twice, once with a log line a killed run wrote after its last
/// checkpoint) ends with the bytes and losses of a run that was never stopped; a resume with
/// another config, or without a checkpoint, is refused.
#[test]
fn pretraining_resumed_is_the_run_never_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cellplm.toml");
    let config = CONFIG
        .replace("steps = 80", "steps = 30\ncheckpoint_every = 7")
        .replace("log_every = 10", "log_every = 4");
    std::fs::write(&cfg, &config).unwrap();
    let cells = fixtures().join("cellplm/cells.h5ad");
    let pretrain = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "pretrain",
            "--config",
            s(&cfg),
            "-o",
            s(out),
            "--data",
            s(&cells),
            "--json",
        ];
        args.extend(extra);
        let (code, stdout, err) = scllm(&args);
        (code, stdout, err)
    };
    let whole = tmp.path().join("whole");
    let (code, _, err) = pretrain(&whole, &[]);
    assert_eq!(code, 0, "{err}");

    let parts = tmp.path().join("parts");
    let (code, stdout, err) = pretrain(&parts, &["--max-steps-now", "10"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (v["steps"].as_u64(), v["finished"].as_bool()),
        (Some(10), Some(false))
    );
    assert!(
        !parts.join("cellplm.best.ckpt").exists(),
        "no model before the last step"
    );
    let (code, stdout, err) = pretrain(&parts, &["--resume", "--max-steps-now", "9"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["resumed_from_step"], 10);
    // as if killed after logging past the checkpoint at step 19
    let log = parts.join("pretrain_log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(
        "{\"step\":20,\"lr\":0.0,\"loss\":1.0,\"nb\":1.0,\"latent\":0.0,\"cells_per_s\":1.0}\n",
    );
    std::fs::write(&log, text).unwrap();
    // another config does not resume this run
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, config.replace("lr = 5e-3", "lr = 1e-3")).unwrap();
    let (code, _, err) = scllm(&[
        "pretrain",
        "--config",
        s(&other),
        "-o",
        s(&parts),
        "--data",
        s(&cells),
        "--resume",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("[train] lr"), "{err}");
    let (code, stdout, err) = pretrain(&parts, &["--resume"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (v["resumed_from_step"].as_u64(), v["finished"].as_bool()),
        (Some(19), Some(true))
    );

    for f in ["cellplm.best.ckpt", "cellplm.config.json"] {
        let (a, b) = (
            std::fs::read(whole.join(f)).unwrap(),
            std::fs::read(parts.join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs between the whole and the resumed run");
    }
    // the same log, the timing column aside
    let losses = |dir: &std::path::Path| -> Vec<(u64, String)> {
        std::fs::read_to_string(dir.join("pretrain_log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let k = |n: &str| v[n].to_string();
                (
                    v["step"].as_u64().unwrap(),
                    [k("lr"), k("loss"), k("nb"), k("latent")].join(" "),
                )
            })
            .collect()
    };
    assert_eq!(losses(&whole), losses(&parts));

    let (code, _, err) = pretrain(&tmp.path().join("none"), &["--resume"]);
    assert_eq!(code, 2);
    assert!(err.contains("no checkpoint to resume from"), "{err}");
}
