//! The benchmark's model methods with a Geneformer model (any family runs through them): a
//! small random Geneformer-shaped folder (the bundled V1 dictionaries), zero-shot `embed-knn`
//! and `finetune:head` on the committed kang2018 fixtures, scored beside a baseline.

use std::path::PathBuf;

use scllm_models::{BertConfig, Geneformer};
use scllm_tasks::bench_methods::{benchmark, BenchmarkJob};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A small random Geneformer-shaped model folder in `tmp`.
fn tiny_geneformer(tmp: &std::path::Path) -> PathBuf {
    let model = tmp.join("gf");
    std::fs::create_dir(&model).unwrap();
    let cfg = serde_json::json!({
        "model_type": "bert", "vocab_size": 25426, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "relu",
        "max_position_embeddings": 2048, "pad_token_id": 0,
    });
    std::fs::write(model.join("config.json"), cfg.to_string()).unwrap();
    let bert: BertConfig = serde_json::from_value(cfg).unwrap();
    let dev = scllm_models::Device::flex();
    let m = Geneformer::new(&bert, 0, false, &dev).unwrap();
    scllm_models::save_safetensors(&m, model.join("model.safetensors")).unwrap();
    model
}

#[test]
fn geneformer_model_methods_run_beside_the_baselines() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_geneformer(tmp.path());
    let fx = fixtures().join("eval");
    let config = tmp.path().join("gf.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "gf"
label = "cell_type"
methods = ["logreg", "embed-knn", "finetune:head"]
model = "{}"
seed = 0

[data]
train = "{}"
query = "{}"
max_train_per_class = 20
max_query_per_class = 10

[options.logreg]
n_hvg = 300
c_grid = [1.0]
folds = 2

[options.embed-knn]
k = 5
max_len = 128

[options."finetune:head"]
epochs = 1
max_len = 128
batch_size = 16
"#,
            model.display(),
            fx.join("kang_ref.h5ad").display(),
            fx.join("kang_query.h5ad").display()
        ),
    )
    .unwrap();
    let (report, files) = benchmark(&BenchmarkJob {
        config,
        output: tmp.path().join("report"),
        skip_fewshot: true,
        progress: false,
    })
    .unwrap();
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    for name in ["embed-knn", "finetune:head"] {
        let m = report.methods.iter().find(|m| m.name == name).unwrap();
        let acc = m.metrics.as_ref().unwrap().accuracy;
        assert!((0.0..=1.0).contains(&acc), "{name}: {acc}");
    }
    assert!(!files.is_empty());
}

#[test]
fn model_methods_report_novel_types_calibration_and_conformal_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_geneformer(tmp.path());
    let fx = fixtures().join("eval");
    let config = tmp.path().join("novel.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "gf_novel"
label = "cell_type"
methods = ["embed-knn", "finetune:head"]
model = "{}"
seed = 0
novel = ["B cells"]
held_out_fraction = 0.3

[data]
train = "{}"
query = "{}"
max_train_per_class = 20
max_query_per_class = 10

[options.embed-knn]
k = 5
max_len = 128

[options."finetune:head"]
epochs = 1
max_len = 128
batch_size = 16
"#,
            model.display(),
            fx.join("kang_ref.h5ad").display(),
            fx.join("kang_query.h5ad").display()
        ),
    )
    .unwrap();
    let (report, files) = benchmark(&BenchmarkJob {
        config,
        output: tmp.path().join("report"),
        skip_fewshot: true,
        progress: false,
    })
    .unwrap();
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert_eq!(report.split.query_classes["B cells"], 10);
    assert!(!report.split.train_classes.contains_key("B cells"));
    for m in &report.methods {
        let n = m.novel_types.as_ref().expect("novel-type results");
        assert_eq!(n.n_novel, 10, "{}", m.name);
        let auroc = n.auroc.unwrap();
        assert!((0.0..=1.0).contains(&auroc));
        let t = n.at_threshold.as_ref().expect("a held-out threshold");
        assert_eq!(t.threshold.n_cells, report.split.n_held_out);
        let cal = m
            .calibration
            .as_ref()
            .expect("probabilities are calibrated");
        assert!((0.0..=1.0).contains(&cal.ece));
        let c = m.conformal.as_ref().expect("conformal sets");
        assert_eq!(c.n_unseen, 10);
        assert_eq!(c.coverage_target, 0.9);
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for m in ["embed-knn", "finetune_head"] {
        assert!(
            names.contains(&format!("reliability_{m}.png")),
            "{m}: {names:?}"
        );
    }
    let md = std::fs::read_to_string(tmp.path().join("report/results.md")).unwrap();
    assert!(md.contains("## Novel cell types") && md.contains("reliability_finetune_head.png"));
}
