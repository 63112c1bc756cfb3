//! `--unknown-below auto` and `--coverage`: `finetune` stores its validation cells' threshold and
//! conformal scores in the adapter, `annotate` reads them; `baseline` picks its threshold on
//! held-out reference cells. Thresholds go to the output's `uns`; none depends on the query.

mod common;

use common::{fixtures, s, scllm};
use scllm_io::UnsValue;

fn uns_dict(a: &scllm_io::AnnData, key: &str) -> Vec<(String, UnsValue)> {
    match a.uns_get(key) {
        Some(UnsValue::Dict(d)) => d.clone(),
        other => panic!("uns['{key}']: {other:?}"),
    }
}

fn uns_f64(d: &[(String, UnsValue)], k: &str) -> f64 {
    match d.iter().find(|(n, _)| n == k).map(|(_, v)| v) {
        Some(UnsValue::F64(x)) => *x,
        other => panic!("{k}: {other:?}"),
    }
}

fn uns_has(d: &[(String, UnsValue)], k: &str) -> bool {
    d.iter().any(|(n, _)| n == k)
}

#[test]
fn annotate_reads_the_adapters_validation_threshold_and_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("scgpt/small");
    let data = fixtures().join("data/kang2018_pbmc_400.h5ad");
    let ad = tmp.path().join("adapter");
    let (code, out, err) = scllm(&[
        "finetune",
        "--model",
        s(&model),
        "--train",
        s(&data),
        "--method",
        "head",
        "--epochs",
        "1",
        "--max-len",
        "128",
        "--val-fraction",
        "0.3",
        "-o",
        s(&ad),
        "--json",
        "--min-cells-per-class",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let meta_text = std::fs::read_to_string(ad.join("adapter.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta_text).unwrap();
    let val = &meta["validation"];
    let t = val["unknown_below"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&t));
    assert_eq!(v["validation_unknown_below"].as_f64().unwrap(), t);
    assert_eq!(val["unknown_quantile"], 0.05);
    let classes = meta["labels"].as_array().unwrap().len();
    let scores = val["class_scores"].as_array().unwrap();
    assert_eq!(scores.len(), classes);
    let n: usize = scores.iter().map(|c| c.as_array().unwrap().len()).sum();
    assert_eq!(n as u64, val["n_cells"].as_u64().unwrap());
    assert_eq!(n as u64, v["val_cells"].as_u64().unwrap());
    for c in scores {
        let x: Vec<f64> = c
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(x.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(x.iter().all(|&s| s > 0.0 && s <= 1.0 + 1e-6), "APS scores");
    }

    let out_h5 = tmp.path().join("annotated.h5ad");
    let (code, out, err) = scllm(&[
        "annotate",
        "--model",
        s(&model),
        "--adapter",
        s(&ad),
        s(&data),
        "-o",
        s(&out_h5),
        "--max-len",
        "128",
        "--unknown-below",
        "auto",
        "--coverage",
        "0.9",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unknown_below"].as_f64().unwrap(), t);
    let a = scllm_io::read_h5ad(&out_h5).unwrap();
    let u = uns_dict(&a, "scllm_annotate");
    assert_eq!(uns_f64(&u, "unknown_below"), t);
    assert_eq!(uns_f64(&u, "coverage"), 0.9);
    assert!(uns_has(&u, "unknown_below_rule") && uns_has(&u, "n_validation_cells"));
    let pred = a.obs_column("predicted_cell_type").unwrap();
    let conf = a.obs_column("prediction_confidence").unwrap();
    let set = a.obs_column("prediction_set").unwrap();
    let lab = a.obs_column("conformal_label").unwrap();
    let size = a.obs_column("prediction_set_size").unwrap();
    let mut unknown = 0;
    for i in 0..a.n_obs() {
        let below = conf.get_f64(i).unwrap() < t;
        unknown += below as usize;
        assert_eq!(pred.get_str(i).unwrap() == "Unknown", below);
        let k = size.get_f64(i).unwrap() as usize;
        let text = set.get_str(i).unwrap_or_default();
        assert_eq!(
            if text.is_empty() {
                0
            } else {
                text.split('|').count()
            },
            k
        );
        let want = match k {
            0 => "Unknown".to_string(),
            1 => text.clone(),
            _ => "ambiguous".to_string(),
        };
        assert_eq!(lab.get_str(i).unwrap(), want);
    }
    assert_eq!(v["unknown"].as_u64().unwrap() as usize, unknown);
    assert!(v["prediction_sets"]["mean_set_size"].as_f64().unwrap() >= 0.0);

    // an adapter written before validation calibrations existed: loads, but has no threshold
    let old = tmp.path().join("old_adapter");
    std::fs::create_dir(&old).unwrap();
    std::fs::copy(
        ad.join("adapter.safetensors"),
        old.join("adapter.safetensors"),
    )
    .unwrap();
    let mut m = meta.clone();
    m.as_object_mut().unwrap().remove("validation");
    std::fs::write(old.join("adapter.json"), m.to_string()).unwrap();
    let x = tmp.path().join("x.h5ad");
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "annotate",
            "--model",
            s(&model),
            "--adapter",
            s(&old),
            s(&data),
            "-o",
            s(&x),
            "--max-len",
            "128",
        ];
        v.extend_from_slice(extra);
        v
    };
    let (code, _, err) = scllm(&args(&["--unknown-below", "auto"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no validation calibration"), "{err}");
    assert!(!x.exists());
    let (code, _, err) = scllm(&args(&["--coverage", "0.9"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = scllm(&args(&["--unknown-below", "0.5"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = scllm(&args(&["--unknown-below", "sometimes"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("auto"), "{err}");
}

#[test]
fn baseline_picks_its_threshold_on_held_out_reference_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixtures().join("eval");
    let run = |method: &str, query: &str, out: &str| {
        let o = tmp.path().join(out);
        let (code, json, err) = scllm(&[
            "baseline",
            method,
            "--train",
            s(&fx.join("kang_ref.h5ad")),
            s(&fx.join(query)),
            "-o",
            s(&o),
            "--n-hvg",
            "300",
            "--c-grid",
            "0.1,1",
            "--folds",
            "3",
            "--unknown-below",
            "auto",
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        (v, scllm_io::read_h5ad(&o).unwrap())
    };
    for method in ["logreg", "knn", "correlation"] {
        let (v, a) = run(method, "kang_query.h5ad", &format!("{method}.h5ad"));
        let u = uns_dict(&a, "scllm_baseline");
        let t = uns_f64(&u, "unknown_below");
        assert_eq!(v["params"]["unknown_below"].as_f64().unwrap(), t);
        assert_eq!(uns_f64(&u, "unknown_below_quantile"), 0.05);
        assert!(uns_has(&u, "unknown_below_rule") && uns_has(&u, "n_held_out"));
        // 20% of the 1,050 labelled reference cells held out, the model trained on the rest
        let held = v["params"]["n_held_out"].as_u64().unwrap();
        assert!((200..=220).contains(&held), "{held}");
        assert_eq!(v["n_train"].as_u64().unwrap() + held, 1050);
        let pred = a.obs_column("predicted_cell_type").unwrap();
        let conf = a.obs_column("prediction_confidence").unwrap();
        let mut unknown = 0;
        for i in 0..a.n_obs() {
            let below = conf.get_f64(i).unwrap() < t;
            unknown += below as usize;
            assert_eq!(pred.get_str(i).unwrap() == "Unknown", below, "{method}");
        }
        assert_eq!(v["n_unknown"].as_u64().unwrap() as usize, unknown);
        // the threshold comes from the reference alone: another query, the same threshold
        let (v2, _) = run(method, "kang_ref.h5ad", &format!("{method}_2.h5ad"));
        assert_eq!(
            v2["params"]["unknown_below"].as_f64().unwrap(),
            t,
            "{method}"
        );
    }
}

#[test]
fn baseline_coverage_writes_conformal_sets_calibrated_on_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixtures().join("eval");
    let run = |coverage: &'static str, out: &str| {
        let o = tmp.path().join(out);
        let r = scllm(&[
            "baseline",
            "logreg",
            "--train",
            s(&fx.join("kang_ref.h5ad")),
            s(&fx.join("kang_query.h5ad")),
            "-o",
            s(&o),
            "--n-hvg",
            "300",
            "--c",
            "1",
            "--coverage",
            coverage,
            "--json",
        ]);
        (r, o)
    };
    let ((code, json, err), o) = run("0.9", "sets.h5ad");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = scllm_io::read_h5ad(&o).unwrap();
    let u = uns_dict(&a, "scllm_baseline");
    assert_eq!(uns_f64(&u, "coverage"), 0.9);
    assert!(uns_has(&u, "conformal_rule") && uns_has(&u, "n_held_out"));
    let truth = a.obs_column("cell_type").unwrap();
    let set = a.obs_column("prediction_set").unwrap();
    let lab = a.obs_column("conformal_label").unwrap();
    let size = a.obs_column("prediction_set_size").unwrap();
    let (mut covered, mut labelled, mut total_size) = (0usize, 0usize, 0usize);
    for i in 0..a.n_obs() {
        let text = set.get_str(i).unwrap_or_default();
        let members: Vec<&str> = if text.is_empty() {
            vec![]
        } else {
            text.split('|').collect()
        };
        assert_eq!(members.len(), size.get_f64(i).unwrap() as usize);
        total_size += members.len();
        let want = match members.len() {
            0 => "Unknown".to_string(),
            1 => members[0].to_string(),
            _ => "ambiguous".to_string(),
        };
        assert_eq!(lab.get_str(i).unwrap(), want);
        if let Some(t) = truth.get_str(i) {
            labelled += 1;
            covered += members.contains(&t.as_str()) as usize;
        }
    }
    let mean = total_size as f64 / a.n_obs() as f64;
    let p = &v["prediction_sets"];
    assert_eq!(p["coverage"].as_f64().unwrap(), 0.9);
    assert!((p["mean_set_size"].as_f64().unwrap() - mean).abs() < 1e-9);
    // another donor than the calibration cells, so exchangeability only holds roughly; a set
    // that covered the truth far less often than asked would mean a calibration bug
    let cov = covered as f64 / labelled as f64;
    assert!(
        cov > 0.8,
        "empirical coverage {cov} on {labelled} labelled cells"
    );
    assert!(
        mean < 4.0,
        "sets of mean size {mean} rule out almost nothing"
    );

    let ((code, _, err), o) = run("1.5", "bad.h5ad");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--coverage"), "{err}");
    assert!(!o.exists());
}

#[test]
fn scbert_annotate_applies_its_own_unknown_rule_unless_told_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("scbert/model");
    let data = fixtures().join("scbert/cells.h5ad");
    let ad = tmp.path().join("adapter");
    let (code, _, err) = scllm(&[
        "finetune",
        "--model",
        s(&model),
        "--train",
        s(&data),
        "--method",
        "head",
        "--epochs",
        "1",
        "--val-fraction",
        "0.34",
        "--min-cells-per-class",
        "1",
        "-o",
        s(&ad),
    ]);
    assert_eq!(code, 0, "{err}");
    let annotate = |extra: &[&'static str], out: &str| {
        let o = tmp.path().join(out);
        let mut args = vec![
            "annotate",
            "--model",
            s(&model),
            "--adapter",
            s(&ad),
            s(&data),
            "-o",
            s(&o),
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, json, err) = scllm(&args);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        (v, scllm_io::read_h5ad(&o).unwrap())
    };
    // no flag: scBERT's predict.py rule, max probability below 0.5 -> Unknown
    let (v, a) = annotate(&[], "default.h5ad");
    assert_eq!(v["unknown_below"].as_f64(), Some(0.5));
    let u = uns_dict(&a, "scllm_annotate");
    assert_eq!(uns_f64(&u, "unknown_below"), 0.5);
    let pred = a.obs_column("predicted_cell_type").unwrap();
    let conf = a.obs_column("prediction_confidence").unwrap();
    let mut unknown = 0;
    for i in 0..a.n_obs() {
        let below = conf.get_f64(i).unwrap() < 0.5;
        unknown += below as usize;
        assert_eq!(pred.get_str(i).unwrap() == "Unknown", below);
    }
    assert_eq!(v["unknown"].as_u64().unwrap() as usize, unknown);
    // a number given by the user replaces it; 0 turns it off
    let (v, a) = annotate(&["--unknown-below", "0"], "off.h5ad");
    assert_eq!(v["unknown"].as_u64(), Some(0));
    let pred = a.obs_column("predicted_cell_type").unwrap();
    assert!((0..a.n_obs()).all(|i| pred.get_str(i).unwrap() != "Unknown"));
}
