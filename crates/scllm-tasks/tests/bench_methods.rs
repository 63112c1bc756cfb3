//! The benchmark's model methods with a Geneformer model (any family runs through them): a
//! small random Geneformer-shaped folder (the bundled V1 dictionaries), zero-shot `embed-knn`
//! and `finetune:head` on the committed kang2018 fixtures, scored beside a baseline.

use std::path::PathBuf;

use scllm_models::{BertConfig, Geneformer};
use scllm_tasks::bench_methods::{benchmark, BenchmarkJob};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn geneformer_model_methods_run_beside_the_baselines() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("gf");
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
