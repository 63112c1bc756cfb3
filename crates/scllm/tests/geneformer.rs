//! Geneformer through the command line: the family detected from the folder, `check`, `embed`
//! (the reference's default embedding written to obsm['X_geneformer']), `convert`, the
//! parameter counts of `finetune --dry-run`, fine-tuning on real cells that beats the majority
//! class, `annotate`, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{fixtures, s, scllm};
use scllm_models::{CellModel, Geneformer};

fn gf(v: &str) -> PathBuf {
    fixtures().join("geneformer").join(v)
}
fn cells() -> PathBuf {
    fixtures().join("geneformer/cells.h5ad")
}

/// `name` of the fixture's reference outputs.
fn expected(v: &str, name: &str) -> Vec<f32> {
    scllm_models::Checkpoint::open(gf(v).join("expected.safetensors"))
        .unwrap()
        .read_f32(name)
        .unwrap()
}

fn obsm(path: &Path, key: &str) -> (usize, usize, Vec<f32>) {
    let a = scllm_io::read_h5ad(path).unwrap();
    let m = a
        .obsm
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no obsm {key}"))
        .1
        .clone();
    match m {
        scllm_io::Matrix::Dense { nrows, ncols, data } => (nrows, ncols, data.to_f32()),
        _ => panic!("obsm {key} is not dense"),
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
fn check_embed_convert_and_dry_run_on_the_fixture_folders() {
    let tmp = tempfile::tempdir().unwrap();
    // check: genes by var['ensembl_id'], raw counts fit the model
    let (code, out, err) = scllm(&["check", s(&cells()), "--model", s(&gf("v1")), "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["family"], "geneformer");
    assert_eq!(r["values"], "counts");
    assert_eq!(r["values_fit_the_model"], true);
    assert!(r["matched_by"].as_str().unwrap().contains("ensembl_id"));
    assert_eq!(r["genes_matched"], 3763);
    assert_eq!(r["cells_without_vocabulary_gene"], 0);
    // below --min-gene-match: exit 2 after the report
    let (code, _, err) = scllm(&[
        "check",
        s(&cells()),
        "--model",
        s(&gf("v1")),
        "--min-gene-match",
        "0.999",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--min-gene-match"), "{err}");

    // embed: V1's default is the mean of the second-to-last layer, V2's its <cls>
    for (v, want) in [("v1", "emb_cell_m1"), ("v2", "emb_cls_m1")] {
        let out_h5ad = tmp.path().join(format!("{v}.h5ad"));
        let (code, out, err) = scllm(&[
            "embed",
            s(&cells()),
            "--model",
            s(&gf(v)),
            "-o",
            s(&out_h5ad),
            "--json",
            // the reference's numbers (this CPU's default may be bf16)
            "--precision",
            "f32",
        ]);
        assert_eq!(code, 0, "{err}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(j["obsm_key"], "X_geneformer");
        assert_eq!(j["cell_totals"], "obs['n_counts']");
        let (n, d, e) = obsm(&out_h5ad, "X_geneformer");
        assert_eq!((n, d), (8, 16));
        let diff = max_diff(&e, &expected(v, want));
        assert!(diff <= 1e-4, "{v}: {diff:e}");
    }
    // the other mode and layer by flag
    let o = tmp.path().join("last.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        s(&cells()),
        "--model",
        s(&gf("v2")),
        "-o",
        s(&o),
        "--emb-mode",
        "cell",
        "--emb-layer",
        "0",
        "--obsm-key",
        "X_gf_last",
        "--precision",
        "f32",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, _, e) = obsm(&o, "X_gf_last");
    assert!(max_diff(&e, &expected("v2", "emb_cell_0")) <= 1e-4);
    // V1 has no <cls>
    let (code, _, err) = scllm(&[
        "embed",
        s(&cells()),
        "--model",
        s(&gf("v1")),
        "-o",
        s(&o),
        "--emb-mode",
        "cls",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("<cls>"), "{err}");

    // convert: the key report, and safetensors in the reference layout
    let st = tmp.path().join("model.safetensors");
    let (code, out, err) = scllm(&[
        "convert",
        "--model",
        s(&gf("v1")),
        "-o",
        s(&st),
        "--strict",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["family"], "geneformer");
    assert!(j["report"]["missing"].as_array().unwrap().is_empty());
    let ck = scllm_models::Checkpoint::open(&st).unwrap();
    assert!(ck
        .shape("bert.encoder.layer.2.attention.self.query.weight")
        .is_some());

    // dry run: every strategy counted from config.json alone
    let (code, out, err) = scllm(&[
        "finetune",
        "--model",
        s(&gf("v1")),
        "--method",
        "lora",
        "--n-classes",
        "3",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = j["strategies"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let get = |m: &str| {
        rows.iter().find(|r| r["method"] == m).unwrap()["trainable"]
            .as_u64()
            .unwrap()
    };
    // head: pooler 16×16+16, classifier 16×3+3; lora: r 8 on query and value of 3 layers
    assert_eq!(get("head"), 272 + 51);
    assert_eq!(get("lora"), 3 * 2 * (8 * 16 + 16 * 8) + 272 + 51);
}

#[test]
fn bad_input_gives_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o.h5ad");
    // a folder of no known family
    let (code, _, err) = scllm(&["embed", s(&cells()), "--model", s(tmp.path()), "-o", s(&o)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("args.json") && err.contains("config.json"),
        "{err}"
    );
    // V2 dictionaries with a V1 checkpoint
    let (code, _, err) = scllm(&[
        "embed",
        s(&cells()),
        "--model",
        s(&gf("v1")),
        "--dictionaries",
        s(&gf("v2")),
        "-o",
        s(&o),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("vocab_size"), "{err}");
    // no Ensembl id and no known symbol
    let (code, _, err) = scllm(&[
        "embed",
        s(&cells()),
        "--model",
        s(&gf("v1")),
        "--gene-col",
        "gene_symbol_missing",
        "-o",
        s(&o),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gene_symbol_missing"), "{err}");
    let nonsense = tmp.path().join("nonsense.h5ad");
    {
        let mut a = scllm_io::read_h5ad(cells()).unwrap();
        a.var = scllm_io::DataFrame::new((0..a.n_vars()).map(|i| format!("gene{i}")).collect());
        scllm_io::write_h5ad(&a, &nonsense, scllm_io::Compression::None).unwrap();
    }
    let (code, _, err) = scllm(&["embed", s(&nonsense), "--model", s(&gf("v1")), "-o", s(&o)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("token dictionary") && err.contains("--gene-col"),
        "{err}"
    );
    // a cell with no vocabulary gene: named, with the fix
    let empty = tmp.path().join("empty_cell.h5ad");
    {
        // row 0 keeps its stored entries, all zero
        let mut a = scllm_io::read_h5ad(cells()).unwrap();
        if let Some(scllm_io::Matrix::Csr(x)) = a.x.as_mut() {
            let mut v = x.data.to_f32();
            for i in x.range(0) {
                v[i] = 0.0;
            }
            x.data = scllm_io::Values::F32(v);
        }
        scllm_io::write_h5ad(&a, &empty, scllm_io::Compression::None).unwrap();
    }
    let (code, _, err) = scllm(&["embed", s(&empty), "--model", s(&gf("v1")), "-o", s(&o)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("row 0") && err.contains("no gene"), "{err}");
    assert!(!o.exists(), "no half-written output");
}

/// A small random Geneformer-shaped model (the bundled V1 dictionaries, 25,426 tokens) fine-tuned
/// on real PBMCs with a donor held out beats the majority class clearly; `annotate` writes the
/// predictions and the adapted embeddings.
#[test]
fn finetune_and_annotate_on_kang_pbmcs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("gf-small");
    std::fs::create_dir(&model).unwrap();
    let cfg = serde_json::json!({
        "model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 25426,
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "hidden_act": "relu", "hidden_dropout_prob": 0.02,
        "attention_probs_dropout_prob": 0.02, "max_position_embeddings": 2048,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "type_vocab_size": 2,
    });
    std::fs::write(model.join("config.json"), cfg.to_string()).unwrap();
    let bert: scllm_models::BertConfig = serde_json::from_value(cfg).unwrap();
    let dev = scllm_models::Device::flex();
    dev.seed(7);
    let m = Geneformer::new(&bert, 0, false, &dev).unwrap();
    assert_eq!(m.n_layers(), 2);
    scllm_models::save_safetensors(&m, model.join("model.safetensors")).unwrap();
    let data = fixtures().join("data/kang2018_pbmc_400.h5ad");
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
        "full",
        "--val-by",
        "donor=1015",
        "--min-cells-per-class",
        "2",
        "--epochs",
        "12",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--max-len",
        "256",
        "-o",
        s(&ad),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["family"], "geneformer");
    let acc = j["best_val_acc"].as_f64().unwrap();
    // the majority class of the held-out donor's cells
    let a = scllm_io::read_h5ad(&data).unwrap();
    let donor = a.obs_column("donor").unwrap().to_strings();
    let label = a.obs_column("cell_type").unwrap().to_strings();
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for (d, l) in donor.iter().zip(&label) {
        if d.as_deref() == Some("1015") {
            *counts.entry(l.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    let n: usize = counts.values().sum();
    let majority = *counts.values().max().unwrap() as f64 / n as f64;
    eprintln!(
        "Geneformer-shaped, full fine-tuning: best val accuracy {acc:.3}, majority {majority:.3}"
    );
    assert!(acc > majority + 0.15, "{acc} vs majority {majority}");

    let annotated = tmp.path().join("annotated.h5ad");
    let (code, out, err) = scllm(&[
        "annotate",
        s(&data),
        "--model",
        s(&model),
        "--adapter",
        s(&ad),
        "--max-len",
        "256",
        "-o",
        s(&annotated),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["obsm_key"], "X_geneformer_adapted");
    let b = scllm_io::read_h5ad(&annotated).unwrap();
    assert_eq!(b.n_obs(), a.n_obs());
    let pred = b.obs_column("predicted_cell_type").unwrap().to_strings();
    assert!(pred.iter().all(|p| p.is_some()));
    let (n, d, _) = obsm(&annotated, "X_geneformer_adapted");
    assert_eq!((n, d), (a.n_obs(), 32));
}
