//! scPEFT strategies: parameter counts, frozen training, prefix masking, LoRA algebra, adapter
//! files, and parity with the reference adapter code (`tools/make_peft_fixture.py`).

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use common::*;
use scllm_models::peft::apply_trainability;
use scllm_models::peft::trains;
use scllm_models::{
    attach, load_adapter, load_adapter_weights, load_into, param_counts, param_table, save_adapter,
    sha256_file, state_dict, AdapterMeta, BatchInput, Checkpoint, LoadOptions, ModelError,
    PeftConfig, ScGpt, ScGptBuild, ScGptConfig, ScGptModel, Strategy,
};

/// `(trainable, total)` of a model of this shape under `s`, built (lazily) and adapted.
fn count_params(
    cfg: &ScGptConfig,
    build: &ScGptBuild,
    s: Strategy,
    peft: &PeftConfig,
) -> Result<(usize, usize), ModelError> {
    let dev = Device::flex();
    let m = ScGpt::new(cfg, build, &dev)?;
    Ok(param_counts(&attach(m, s, peft, &dev)?))
}

/// `(key, trains)` of every parameter under the model's strategy.
fn trainable_table(m: &ScGpt) -> Vec<(String, bool)> {
    let s = scllm_models::peft::strategy_of(m);
    param_table(m)
        .into_iter()
        .map(|p| (p.key, trains(s, p.part)))
        .collect()
}

struct Out {
    cell: Vec<f32>,
    cls: Vec<f32>,
    last: Vec<f32>,
}

fn run(m: &ScGpt, batch: &Batch, dev: &Device) -> Out {
    let (g, v, mask) = m.inputs(&batch.input(), dev);
    let o = m.forward(g, v, mask);
    Out {
        cell: host(o.cell_emb),
        cls: host(o.cls_output.unwrap()),
        last: host(o.layers.last().unwrap().clone()),
    }
}

fn load(name: &str, n_cls: usize, dev: &Device) -> ScGptModel {
    let opts = LoadOptions {
        n_cls,
        do_mvc: false,
        strict: false,
        weights: None,
    };
    ScGptModel::load(scgpt_dir(name), &opts, dev).expect("load")
}

fn whole_human() -> (ScGptConfig, ScGptBuild) {
    let mut cfg = ScGptConfig::from_json_file(scgpt_dir("small").join("args.json")).unwrap();
    cfg.embsize = 512;
    cfg.nheads = 8;
    cfg.d_hid = 512;
    cfg.nlayers = 12;
    cfg.n_layers_cls = 3;
    let build = ScGptBuild {
        ntoken: 60697,
        pad_id: 60694,
        n_cls: 8,
        do_mvc: false,
    };
    (cfg, build)
}

#[test]
fn strategy_names_round_trip() {
    for s in Strategy::ALL {
        assert_eq!(s.to_string().parse::<Strategy>().unwrap(), s);
    }
    assert_eq!(
        "token-prompt".parse::<Strategy>().unwrap(),
        Strategy::TokenPrompt
    );
    assert!("adapter".parse::<Strategy>().is_err());
    let j = serde_json::to_string(&Strategy::EncoderPrompt).unwrap();
    assert_eq!(j, "\"encoder-prompt\"");
    // the config's defaults survive serde, and missing fields take the defaults
    let c: PeftConfig = serde_json::from_str("{\"lora_r\": 4}").unwrap();
    assert_eq!(c.lora_r, 4);
    assert_eq!(c.prefix_tokens, 64);
    assert_eq!(c.lora_eval_multiplier, 1.0);
}

/// The reference's counts for the whole-human model, n_cls 8, no MVC (docs/models/scpeft.md §7).
/// The paper's 1.27M for LoRA is not what the code gives (0.75M): see `count_params`.
#[test]
fn whole_human_counts_match_the_reference() {
    let (cfg, build) = whole_human();
    let d = PeftConfig::default();
    let c = |s| count_params(&cfg, &build, s, &d).unwrap();
    assert_eq!(c(Strategy::Full), (51_335_689, 51_335_689));
    assert_eq!(c(Strategy::Head).0, 527_360 + 513 * 8);
    assert_eq!(c(Strategy::TokenPrompt).0, 663_176);
    assert_eq!(c(Strategy::EncoderPrompt).0, 2_112_008);
    assert_eq!(c(Strategy::Prefix).0, 924_680);
    assert_eq!(c(Strategy::Lora).0, 746_504);
    assert_eq!(c(Strategy::Lora).1, 51_335_689 + 12 * 16_384);
    // the reproduction repo / v2: LoRA in layers 0-5 only
    let six = PeftConfig {
        lora_layers: Some((0..6).collect()),
        ..PeftConfig::default()
    };
    assert_eq!(
        count_params(&cfg, &build, Strategy::Lora, &six).unwrap().0,
        107_520 + 527_360 + 513 * 8
    );
}

/// The structural count agrees with burn's own, for every strategy.
#[test]
fn counts_agree_with_burns_own() {
    let dev = Device::flex();
    let cfg = ScGptConfig::from_json_file(scgpt_dir("small").join("args.json")).unwrap();
    let build = ScGptBuild {
        ntoken: 1503,
        pad_id: 1500,
        n_cls: 5,
        do_mvc: true,
    };
    let peft = PeftConfig {
        prefix_tokens: 7,
        ..PeftConfig::default()
    };
    for s in Strategy::ALL {
        let m = attach(ScGpt::new(&cfg, &build, &dev).unwrap(), s, &peft, &dev).unwrap();
        assert_eq!(param_counts(&m).1, m.num_params(), "{s}: burn's own count");
    }
}

/// A few Adam steps on the autodiff device: frozen tensors stay bit-identical, trainable ones
/// move, gradients reach the adapters through the frozen layers, and the optimizer keeps state
/// for the trainable tensors only.
#[test]
fn training_updates_only_trainable_tensors() {
    let dev = Device::flex();
    let adev = dev.clone().autodiff();
    let batch = Batch::of(&scgpt_dir("tiny"));
    for s in Strategy::ALL {
        let base = load("tiny", 3, &dev).model;
        let mut m = attach(base, s, &PeftConfig::default(), &dev).unwrap();
        if s == Strategy::Lora {
            // B = 0 at init gives A no gradient; make both live
            for l in &mut m.transformer_encoder.layers {
                let lora = l.self_attn.wqkv.lora.as_mut().unwrap();
                let shape = lora.lora_b.dims();
                lora.lora_b =
                    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.1), &dev));
            }
            apply_trainability(&mut m);
        }
        let before: HashMap<String, Vec<f32>> =
            state_dict(&m).into_iter().map(|(k, _, v)| (k, v)).collect();
        let table = trainable_table(&m);
        let n_trainable = table.iter().filter(|(_, t)| *t).count();
        let mut tm = m.train();
        let mut opt = AdamConfig::new().init();
        for step in 0..3 {
            let (g, v, mask) = tm.inputs(&batch.input(), &adev);
            let out = tm.forward(g, v, mask);
            // the expression head too, so that `full` has a gradient for every tensor
            let loss = out.cls_output.unwrap().powi_scalar(2).mean()
                + out.mlm_output.powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &tm);
            assert_eq!(
                grads.len(),
                n_trainable,
                "{s}: one gradient per trainable tensor"
            );
            if step == 0 {
                // gradients reach the adapters through frozen layers
                let nz = |t: Tensor<2>| t.abs().sum().into_scalar::<f32>() > 0.0;
                match s {
                    Strategy::TokenPrompt => {
                        let a = tm.value_encoder.space_adapter.as_ref().unwrap();
                        assert!(nz(grads.get::<2>(a.d_fc1.weight.id).unwrap()));
                    }
                    Strategy::EncoderPrompt => {
                        let l0 = &tm.transformer_encoder.layers[0];
                        let sp = l0.adapters.space.as_ref().unwrap();
                        let mlp = l0.adapters.mlp.as_ref().unwrap();
                        assert!(nz(grads.get::<2>(sp.d_fc1.weight.id).unwrap()));
                        assert!(nz(grads.get::<2>(mlp.d_fc1.weight.id).unwrap()));
                    }
                    Strategy::Lora => {
                        let lora = tm.transformer_encoder.layers[0]
                            .self_attn
                            .wqkv
                            .lora
                            .as_ref()
                            .unwrap();
                        assert!(nz(grads.get::<2>(lora.lora_a.id).unwrap()));
                        assert!(nz(grads.get::<2>(lora.lora_b.id).unwrap()));
                    }
                    Strategy::Prefix => {
                        let p = tm.transformer_encoder.layers[0]
                            .adapters
                            .prompt
                            .as_ref()
                            .unwrap();
                        let g = grads.get::<3>(p.id).unwrap();
                        assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
                    }
                    _ => {}
                }
            }
            tm = opt.step(1e-2, tm, grads);
        }
        let record = opt.to_record();
        assert_eq!(
            record.len(),
            2 * n_trainable,
            "{s}: Adam holds two moments per trainable tensor only"
        );
        let after = state_dict(&tm.valid());
        for (k, _, v) in after {
            let b = &before[&k];
            let trainable = table.iter().find(|(t, _)| *t == k).unwrap().1;
            if trainable {
                assert!(b != &v, "{s}: trainable {k} did not move");
            } else {
                let same = b.iter().zip(&v).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{s}: frozen {k} changed");
            }
        }
        eprintln!(
            "{s}: {n_trainable} trainable tensors, {} optimizer tensors",
            record.len()
        );
    }
}

/// Prefix prompts: outputs keep length L, and the padding mask grows correctly: each cell of a
/// padded batch gives the same `<cls>` output as the cell alone.
#[test]
fn prefix_mask_extension_matches_unpadded_cells() {
    let dev = Device::flex();
    let dir = scgpt_dir("small");
    let batch = Batch::of(&dir);
    let plain = load("small", 5, &dev).model;
    let zero = attach(
        plain.clone(),
        Strategy::Prefix,
        &PeftConfig::default(),
        &dev,
    )
    .unwrap();
    let o_plain = run(&plain, &batch, &dev);
    let o_zero = run(&zero, &batch, &dev);
    assert_eq!(
        o_zero.last.len(),
        o_plain.last.len(),
        "prompts are stripped"
    );
    // zero prompts are still 64 attended tokens: the outputs change
    assert!(
        max_diff(
            &o_zero.cell,
            &o_plain.cell.iter().map(|&x| x as f64).collect::<Vec<_>>()
        ) > 1e-4
    );

    let mut m = zero;
    for l in &mut m.transformer_encoder.layers {
        let p = l.adapters.prompt.as_mut().unwrap();
        *p = Param::from_tensor(Tensor::random(
            p.dims(),
            Distribution::Normal(0.0, 0.5),
            &dev,
        ));
    }
    let padded = host(m.encode_cls(&batch.input(), &dev));
    let full = run(&m, &batch, &dev).cell;
    let d = m.d_model();
    let mut worst = 0f64;
    for c in 0..batch.b {
        let row = &batch.padding[c * batch.l..(c + 1) * batch.l];
        let n = row.iter().filter(|p| !**p).count();
        assert!(row[..n].iter().all(|p| !p), "padding at the end");
        let genes = batch.genes[c * batch.l..c * batch.l + n].to_vec();
        let values = batch.values[c * batch.l..c * batch.l + n].to_vec();
        let pad = vec![false; n];
        let one = BatchInput {
            batch: 1,
            seq_len: n,
            genes: &genes,
            values: &values,
            padding: &pad,
        };
        let alone = host(m.encode_cls(&one, &dev));
        let want: Vec<f64> = alone.iter().map(|&x| x as f64).collect();
        worst = worst.max(max_diff(&padded[c * d..(c + 1) * d], &want));
        worst = worst.max(max_diff(&full[c * d..(c + 1) * d], &want));
    }
    eprintln!("prefix: padded vs alone <cls> max abs diff {worst:.3e}");
    assert!(
        worst < 1e-5,
        "padded batch differs from cells alone: {worst:.3e}"
    );
}

/// Host-side `W0 + mult·s·ΔW` for every LoRA layer, loaded into a plain copy of the base.
fn merged_base(base: &ScGpt, lora_model: &ScGpt, mult: f32, dev: &Device) -> ScGpt {
    let sd: HashMap<String, (Vec<usize>, Vec<f32>)> = state_dict(lora_model)
        .into_iter()
        .map(|(k, s, v)| (k, (s, v)))
        .collect();
    let d = base.d_model();
    let mut out = Vec::new();
    for (k, shape, mut w) in state_dict(base) {
        if let Some(p) = k.strip_suffix(".Wqkv.weight") {
            let (sa, a) = &sd[&format!("{p}.Wqkv.lora_A")];
            let (_, b) = &sd[&format!("{p}.Wqkv.lora_B")];
            let r = sa[0] / 2;
            let s = 1.0 / r as f32 * mult; // alpha 1
            for (part, row0) in [(0usize, 0usize), (1, 2 * d)] {
                for o in 0..d {
                    for i in 0..d {
                        let mut acc = 0f32;
                        for j in 0..r {
                            acc += b[(part * d + o) * r + j] * a[(part * r + j) * d + i];
                        }
                        w[(row0 + o) * d + i] += s * acc;
                    }
                }
            }
        }
        out.push((k, shape, w));
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("merged.safetensors");
    let mut m = base.clone();
    write_st(&path, &out);
    let ck = Checkpoint::open(&path).unwrap();
    load_into(&mut m, &ck, true, dev).unwrap();
    m
}

fn write_st(path: &Path, t: &[(String, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(k, s, v)| {
            (
                k.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// LoRA: B = 0 is the base model; random B equals the base with Wqkv = W0 + s·ΔW, and the
/// multiplier-2 parity option equals W0 + 2s·ΔW.
#[test]
fn lora_equals_merged_weights() {
    let dev = Device::flex();
    let batch = Batch::of(&scgpt_dir("small"));
    let base = load("small", 5, &dev).model;
    let o_base = run(&base, &batch, &dev);
    let keep = batch.keep();
    let d = base.d_model();
    let m0 = attach(base.clone(), Strategy::Lora, &PeftConfig::default(), &dev).unwrap();
    let o0 = run(&m0, &batch, &dev);
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert!(max_diff_kept(&o0.last, &wide(&o_base.last), &keep, d) <= 1e-6);
    assert!(max_diff(&o0.cls, &wide(&o_base.cls)) <= 1e-6);

    for mult in [1.0f64, 2.0] {
        let cfg = PeftConfig {
            lora_eval_multiplier: mult,
            ..PeftConfig::default()
        };
        let mut m = attach(base.clone(), Strategy::Lora, &cfg, &dev).unwrap();
        for l in &mut m.transformer_encoder.layers {
            let lora = l.self_attn.wqkv.lora.as_mut().unwrap();
            let shape = lora.lora_b.dims();
            lora.lora_b =
                Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.5), &dev));
        }
        let o = run(&m, &batch, &dev);
        let merged = merged_base(&base, &m, mult as f32, &dev);
        let om = run(&merged, &batch, &dev);
        let dl = max_diff_kept(&o.last, &wide(&om.last), &keep, d);
        let dc = max_diff(&o.cls, &wide(&om.cls));
        eprintln!("lora x{mult}: vs host-merged W0 + {mult}sΔW: last {dl:.3e}, cls {dc:.3e}");
        assert!(dl <= 1e-5 && dc <= 1e-5);
        assert!(
            max_diff_kept(&o.last, &wide(&o_base.last), &keep, d) > 1e-3,
            "ΔW is live"
        );
    }
}

/// save_adapter → load_adapter reproduces the outputs exactly; only trainable tensors are
/// written; a base of another hash is refused with both hashes named.
#[test]
fn adapter_round_trip_and_hash_check() {
    let dev = Device::flex();
    let dir = scgpt_dir("small");
    let batch = Batch::of(&dir);
    let sha = sha256_file(dir.join("best_model.pt")).unwrap();
    assert_eq!(sha.len(), 64);
    for s in [
        Strategy::EncoderPrompt,
        Strategy::Lora,
        Strategy::Head,
        Strategy::Prefix,
    ] {
        let loaded = load("small", 5, &dev);
        let cfg = loaded.config.clone();
        let mut m = attach(loaded.model, s, &PeftConfig::default(), &dev).unwrap();
        for l in &mut m.transformer_encoder.layers {
            if let Some(lora) = l.self_attn.wqkv.lora.as_mut() {
                let shape = lora.lora_b.dims();
                lora.lora_b =
                    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.5), &dev));
            }
            if let Some(p) = l.adapters.prompt.as_mut() {
                *p = Param::from_tensor(Tensor::random(
                    p.dims(),
                    Distribution::Normal(0.0, 0.5),
                    &dev,
                ));
            }
        }
        apply_trainability(&mut m);
        let want = run(&m, &batch, &dev);
        let labels: Vec<String> = (0..5).map(|i| format!("type{i}")).collect();
        let base_args = serde_json::to_value(&cfg).unwrap();
        let meta = AdapterMeta::for_model(&m, base_args, labels.clone(), None, sha.clone());
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("adapter");
        save_adapter(&m, &out, &meta).unwrap();
        let ck = Checkpoint::open(out.join("adapter.safetensors")).unwrap();
        let table = trainable_table(&m);
        let trained: Vec<&String> = table.iter().filter(|t| t.1).map(|t| &t.0).collect();
        assert!(ck.keys().all(|k| trained.iter().any(|t| *t == k)), "{s}");
        assert_eq!(ck.len(), trained.len());

        let fresh = load("small", 5, &dev).model;
        let (back, meta2) = load_adapter(fresh, &out, &sha, &dev).unwrap();
        assert_eq!(meta2, meta);
        assert_eq!(meta2.labels, labels);
        let got = run(&back, &batch, &dev);
        assert_eq!(got.cls, want.cls, "{s}: identical cls logits");
        assert_eq!(got.cell, want.cell, "{s}: identical <cls> embedding");
        assert_eq!(param_counts(&back), param_counts(&m));

        let fresh = load("small", 5, &dev).model;
        let wrong = "0".repeat(64);
        let err = load_adapter(fresh, &out, &wrong, &dev).unwrap_err();
        assert!(err.is_bad_input());
        assert!(matches!(err, ModelError::Invalid(_)));
        let msg = err.to_string();
        assert!(msg.contains(&sha) && msg.contains(&wrong), "{msg}");
    }
}

fn parity_case(strategy: Strategy, cfg: &PeftConfig, suffix: &str) -> Vec<(String, f64)> {
    let dev = Device::flex();
    let fx = fixtures().join("peft").join(strategy.as_str());
    let batch = Batch::of(&scgpt_dir("small"));
    let base = load("small", 5, &dev).model;
    let mut m = attach(base, strategy, cfg, &dev).unwrap();
    load_adapter_weights(&mut m, fx.join("adapter.safetensors"), &dev).unwrap();
    let r = read_outputs(&fx);
    let o = run(&m, &batch, &dev);
    let d = m.d_model();
    let diffs = vec![
        (
            "cell_emb".to_string(),
            max_diff(&o.cell, &r[&format!("cell_emb{suffix}")].data),
        ),
        (
            "cls_output".to_string(),
            max_diff(&o.cls, &r[&format!("cls_output{suffix}")].data),
        ),
        (
            "last_hidden".to_string(),
            max_diff_kept(
                &o.last,
                &r[&format!("last_hidden{suffix}")].data,
                &batch.keep(),
                d,
            ),
        ),
    ];
    for (n, x) in &diffs {
        eprintln!("parity {strategy}{suffix}: {n} max abs diff {x:.3e}");
    }
    for (n, x) in &diffs {
        assert!(*x <= 1e-5, "{strategy}{suffix} {n}: {x:.3e}");
    }
    diffs
}

#[test]
fn parity_token_prompt_with_reference() {
    parity_case(Strategy::TokenPrompt, &PeftConfig::default(), "");
}

#[test]
fn parity_encoder_prompt_with_reference() {
    let cfg = PeftConfig {
        encoder_prompt_layers: Some(vec![0, 1]),
        ..PeftConfig::default()
    };
    parity_case(Strategy::EncoderPrompt, &cfg, "");
}

#[test]
fn parity_prefix_with_reference() {
    parity_case(Strategy::Prefix, &PeftConfig::default(), "");
}

/// The reference's evaluation path adds ΔW twice (multiplier 2); under torch.no_grad its native
/// fast path uses the merged weight once (multiplier 1).
#[test]
fn parity_lora_with_reference_both_paths() {
    let two = PeftConfig {
        lora_eval_multiplier: 2.0,
        ..PeftConfig::default()
    };
    parity_case(Strategy::Lora, &two, "");
    parity_case(Strategy::Lora, &PeftConfig::default(), "_native");
}

fn set_dropout(m: &mut ScGpt, p: f64) {
    m.value_encoder.dropout.prob = p;
    for l in &mut m.transformer_encoder.layers {
        l.dropout.prob = p;
        l.dropout1.prob = p;
        l.dropout2.prob = p;
        l.self_attn.dropout.prob = p;
    }
}

/// Dropout acts only when training on an autodiff device; `valid()` gives the inference
/// outputs bit for bit. With a vanishing p the training path (explicit attention with
/// probability dropout, one ΔW for LoRA) matches inference.
#[test]
fn dropout_only_in_training() {
    let dev = Device::flex();
    let adev = dev.clone().autodiff();
    let batch = Batch::of(&scgpt_dir("small"));
    let keep = batch.keep();
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let cfg2 = PeftConfig {
        lora_eval_multiplier: 2.0,
        ..PeftConfig::default()
    };
    let mut m = attach(load("small", 5, &dev).model, Strategy::Lora, &cfg2, &dev).unwrap();
    for l in &mut m.transformer_encoder.layers {
        let lora = l.self_attn.wqkv.lora.as_mut().unwrap();
        let shape = lora.lora_b.dims();
        lora.lora_b =
            Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.5), &dev));
    }
    apply_trainability(&mut m);
    let d = m.d_model();
    let plain = run(&m, &batch, &dev);
    let tm = m.clone().train();
    let t1 = run(&tm, &batch, &adev);
    let t2 = run(&tm, &batch, &adev);
    assert!(
        max_diff(&t1.cls, &wide(&t2.cls)) > 1e-4,
        "dropout is active in training"
    );
    let v = run(&tm.valid(), &batch, &dev);
    assert_eq!(v.cls, plain.cls, "valid() is the inference model");
    assert_eq!(v.last, plain.last);

    // vanishing dropout: the training path equals inference with one ΔW
    let mut one = m.clone();
    for l in &mut one.transformer_encoder.layers {
        l.self_attn.wqkv.lora.as_mut().unwrap().eval_multiplier = 1.0;
    }
    let want = run(&one, &batch, &dev);
    let mut tiny_p = m.clone();
    set_dropout(&mut tiny_p, 1e-9);
    let t = run(&tiny_p.train(), &batch, &adev);
    let dl = max_diff_kept(&t.last, &wide(&want.last), &keep, d);
    let dc = max_diff(&t.cls, &wide(&want.cls));
    eprintln!("training path (p=1e-9) vs inference x1: last {dl:.3e}, cls {dc:.3e}");
    assert!(dl <= 1e-5 && dc <= 1e-5);
}
