//! Checkpoint import: the three attention spellings, the name+shape rule with its report,
//! `--strict`, refused pickles, and the safetensors round trip. Files from
//! `tools/make_scgpt_fixture.py --preset tiny` (tests/fixtures/scgpt/tiny/bad/).

mod common;

use std::path::PathBuf;

use burn::tensor::Device;
use common::*;
use scllm_models::BatchInput;
use scllm_models::{save_safetensors, LoadOptions, ModelError, ScGptConfig, ScGptModel};

fn tiny() -> PathBuf {
    scgpt_dir("tiny")
}
fn bad(name: &str) -> PathBuf {
    tiny().join("bad").join(name)
}
fn load(weights: Option<PathBuf>, strict: bool) -> Result<ScGptModel, ModelError> {
    let opts = LoadOptions {
        n_cls: 3,
        do_mvc: true,
        strict,
        weights,
    };
    ScGptModel::load(tiny(), &opts, &Device::flex())
}

/// `<cls>` outputs of the fixture batch.
fn cell_embs(m: &ScGptModel) -> Vec<f32> {
    let r = read_outputs(&tiny());
    let (b, l) = (r["genes"].shape[0], r["genes"].shape[1]);
    let genes: Vec<i64> = r["genes"].data.iter().map(|&x| x as i64).collect();
    let values: Vec<f32> = r["values"].data.iter().map(|&x| x as f32).collect();
    let padding: Vec<bool> = r["padding"].data.iter().map(|&x| x != 0.0).collect();
    let input = BatchInput {
        batch: b,
        seq_len: l,
        genes: &genes,
        values: &values,
        padding: &padding,
    };
    host(m.model.encode_cls(&input, &m.device))
}

#[test]
fn released_layout_loads_completely_with_flag_encoder_unexpected() {
    let m = load(None, true).unwrap();
    let r = &m.report;
    assert!(r.is_complete());
    assert_eq!(r.loaded.len(), scllm_models::param_table(&m.model).len());
    assert_eq!(r.unexpected, vec!["flag_encoder.weight"]);
    assert!(r.renamed.is_empty());
    let reference = read_outputs(&tiny());
    assert!(max_diff(&cell_embs(&m), &reference["cell_emb"].data) <= 1e-4);
}

#[test]
fn in_proj_and_impl_spellings_load_to_identical_outputs() {
    let base = cell_embs(&load(None, true).unwrap());
    for (file, example) in [
        (
            "in_proj.pt",
            "transformer_encoder.layers.0.self_attn.in_proj_weight",
        ),
        (
            "impl.pt",
            "transformer_encoder.layers.0.self_attn._impl.Wqkv.weight",
        ),
    ] {
        let m = load(Some(bad(file)), true).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(m.report.is_complete(), "{file}: {}", m.report.to_text());
        assert!(
            m.report.renamed.iter().any(|(from, to)| from == example
                && to == "transformer_encoder.layers.0.self_attn.Wqkv.weight"),
            "{file}: {:?}",
            m.report.renamed
        );
        assert_eq!(cell_embs(&m), base, "{file}: same weights, same outputs");
    }
}

#[test]
fn missing_key_is_reported_and_fails_strict() {
    let m = load(Some(bad("missing_key.pt")), false).unwrap();
    assert_eq!(
        m.report.missing,
        vec!["transformer_encoder.layers.0.norm1.weight"]
    );
    assert!(m.report.skipped.is_empty());
    assert!(m
        .report
        .to_text()
        .contains("missing    transformer_encoder.layers.0.norm1.weight"));
    let e = load(Some(bad("missing_key.pt")), true)
        .err()
        .expect("strict must fail");
    assert!(matches!(e, ModelError::Strict { .. }));
    assert!(
        e.to_string()
            .contains("missing transformer_encoder.layers.0.norm1.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_skipped_reported_and_fails_strict() {
    let m = load(Some(bad("wrong_shape.pt")), false).unwrap();
    assert_eq!(m.report.skipped.len(), 1);
    let s = &m.report.skipped[0];
    assert_eq!(s.key, "value_encoder.linear2.weight");
    assert_eq!(
        (s.found.clone(), s.expected.clone()),
        (vec![17, 16], vec![16, 16])
    );
    assert!(m.report.missing.is_empty());
    // the JSON form carries the same
    let j = serde_json::to_value(&m.report).unwrap();
    assert_eq!(j["skipped"][0]["key"], "value_encoder.linear2.weight");
    assert_eq!(j["skipped"][0]["found"], serde_json::json!([17, 16]));
    for k in ["loaded", "skipped", "missing", "unexpected"] {
        assert!(j[k].is_array(), "{k}");
    }
    let e = load(Some(bad("wrong_shape.pt")), true)
        .err()
        .expect("strict must fail");
    assert!(
        e.to_string().contains(
            "shape mismatch value_encoder.linear2.weight (checkpoint [17, 16], model [16, 16])"
        ),
        "{e}"
    );
}

#[test]
fn foreign_prefix_matches_nothing_and_says_why() {
    let e = load(Some(bad("foreign_prefix.pt")), false)
        .err()
        .expect("nothing matches");
    let msg = e.to_string();
    assert!(msg.contains("no tensor matches the scGPT model"), "{msg}");
    assert!(msg.contains("prefix `module.`"), "{msg}");
}

#[test]
fn malicious_pickle_is_refused_without_running_it() {
    let _ = std::fs::remove_file("/tmp/scllm_pwned");
    let e = load(Some(bad("malicious.pt")), false)
        .err()
        .expect("must be refused");
    assert!(matches!(e, ModelError::Unsafe { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("system`"), "names the callable: {msg}");
    assert!(
        msg.contains("encoder.embedding.weight"),
        "names the key: {msg}"
    );
    assert!(
        !std::path::Path::new("/tmp/scllm_pwned").exists(),
        "nothing ran"
    );
}

#[test]
fn not_a_checkpoint_is_a_clear_error() {
    let e = load(Some(bad("not_a_checkpoint.pt")), false).err().unwrap();
    assert!(matches!(e, ModelError::File { .. }));
    assert!(
        e.to_string().contains("not a readable PyTorch checkpoint"),
        "{e}"
    );
    let e = ScGptModel::load(
        tiny().join("nope"),
        &LoadOptions::default(),
        &Device::flex(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("not a model folder"), "{e}");
}

#[test]
fn safetensors_round_trip_is_exact_and_in_released_layout() {
    let m = load(None, true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    save_safetensors(&m.model, &p).unwrap();
    reloads_exactly(&m, p, scllm_models::weights::Format::Safetensors);
}

/// `p`, written from `m`, has the released layout, loads completely and gives `m`'s outputs.
fn reloads_exactly(m: &ScGptModel, p: PathBuf, format: scllm_models::weights::Format) {
    let ck = scllm_models::Checkpoint::open(&p).unwrap();
    assert_eq!(ck.format, format);
    assert_eq!(
        ck.shape("transformer_encoder.layers.1.self_attn.Wqkv.weight"),
        Some(&[48, 16][..])
    );
    let back = load(Some(p), true).unwrap();
    assert!(
        back.report.is_complete() && back.report.unexpected.is_empty(),
        "{}",
        back.report.to_text()
    );
    assert_eq!(cell_embs(&back), cell_embs(m));
}

#[test]
fn args_json_deserializes_field_for_field_and_round_trips() {
    let path = tiny().join("args.json");
    let cfg = ScGptConfig::from_json_file(&path).unwrap();
    assert_eq!(
        (
            cfg.embsize,
            cfg.nheads,
            cfg.d_hid,
            cfg.nlayers,
            cfg.n_layers_cls
        ),
        (16, 2, 24, 2, 3)
    );
    assert_eq!(
        (cfg.pad_value, cfg.mask_value, cfg.n_bins, cfg.max_seq_len),
        (-2.0, -1.0, 51, 1200)
    );
    assert_eq!(cfg.mvc, Some(true));
    assert!(
        cfg.extra.is_empty(),
        "every released field is named: {:?}",
        cfg.extra.keys()
    );
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(&cfg).unwrap(), original);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("args.json");
    std::fs::write(
        &p,
        r#"{"embsize": 10, "nheads": 3, "d_hid": 8, "nlayers": 1}"#,
    )
    .unwrap();
    let e = ScGptConfig::from_json_file(&p).unwrap_err();
    assert!(e.to_string().contains("not a multiple of nheads"), "{e}");
}

#[test]
fn pt_written_by_scllm_reloads_exactly() {
    let m = load(None, true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("best_model.pt");
    scllm_models::save_pt(&m.model, &p).unwrap();
    reloads_exactly(&m, p, scllm_models::weights::Format::Pytorch);
}
