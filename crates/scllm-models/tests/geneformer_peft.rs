//! The six strategies on Geneformer (adapters written once, attached at BERT's sites): after
//! Adam steps frozen tensors are bit-identical and trainable ones moved, gradients reach every
//! adapter through the frozen layers, the optimizer holds state for trainable tensors only,
//! `freeze_layers` keeps layers out of `full`, and adapters round-trip through their files.

mod common;

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use common::*;
use scllm_models::params::{ParamVisitor, Part};
use scllm_models::peft::strategy_of;
use scllm_models::peft::trains;
use scllm_models::{
    attach, load_adapter, param_counts, param_table, save_adapter, sha256_file, state_dict,
    AdapterMeta, BatchInput, CellModel, Geneformer, GeneformerFolder, ModelFolder, PeftConfig,
    Strategy, TokenModel,
};

fn folder() -> GeneformerFolder {
    GeneformerFolder::open(&fixtures().join("geneformer/v1"), None, None).unwrap()
}

/// The fixture's first 4 cells, cut to 48 tokens (training on 2,048-token cells is slow).
struct Small {
    ids: Vec<i64>,
    values: Vec<f32>,
    padding: Vec<bool>,
}

const B: usize = 4;
const L: usize = 48;

impl Small {
    fn new() -> Self {
        let r = read_safetensors(&fixtures().join("geneformer/v1/expected.safetensors"));
        let full = r["input_ids"].shape[1];
        let mut ids = Vec::new();
        let mut padding = Vec::new();
        for c in 0..B {
            let len = (r["lengths"].data[c] as usize).min(L - 3 * c); // ragged
            for p in 0..L {
                let real = p < len;
                ids.push(if real {
                    r["input_ids"].data[c * full + p] as i64
                } else {
                    0
                });
                padding.push(!real);
            }
        }
        Small {
            ids,
            values: vec![0.0; B * L],
            padding,
        }
    }
    fn input(&self) -> BatchInput<'_> {
        BatchInput {
            batch: B,
            seq_len: L,
            genes: &self.ids,
            values: &self.values,
            padding: &self.padding,
        }
    }
}

/// B = 0 at init gives LoRA's A no gradient: make every LoRA live.
fn liven_lora(m: &mut Geneformer, dev: &Device) {
    for l in m.sites().layers {
        for t in l.lora {
            if let Some(lora) = t.slot.as_mut() {
                let shape = lora.lora_b.dims();
                lora.lora_b =
                    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, 0.1), dev));
            }
        }
    }
    scllm_models::peft::apply_trainability(m);
}

/// `(key, trains)` of every parameter.
fn table(m: &Geneformer) -> Vec<(String, bool, Part)> {
    let s = strategy_of(m);
    param_table(m)
        .into_iter()
        .map(|p| (p.key, trains(s, p.part), p.part))
        .collect()
}

/// Every gradient's absolute sum by key.
struct GradSums<'a>(&'a GradientsParams, HashMap<String, f32>);
impl ParamVisitor for GradSums<'_> {
    fn param<const D: usize>(
        &mut self,
        key: &str,
        _part: Part,
        _layout: scllm_models::params::Layout,
        p: &mut Param<Tensor<D>>,
    ) {
        if let Some(g) = self.0.get::<D>(p.id) {
            self.1
                .insert(key.to_string(), g.abs().sum().into_scalar::<f32>());
        }
    }
}

fn train_steps(strategy: Strategy, peft: &PeftConfig) -> (Geneformer, Vec<(String, bool, Part)>) {
    let dev = Device::flex();
    let adev = dev.clone().autodiff();
    let batch = Small::new();
    let (base, _) = folder().load(3, false, &dev).unwrap();
    let mut m = attach(base, strategy, peft, &dev).unwrap();
    if strategy == Strategy::Lora {
        liven_lora(&mut m, &dev);
    }
    let before: HashMap<String, Vec<f32>> =
        state_dict(&m).into_iter().map(|(k, _, v)| (k, v)).collect();
    let tab = table(&m);
    let n_trainable = tab.iter().filter(|t| t.1).count();
    let mut tm = m.train();
    let mut opt = AdamConfig::new().init();
    for step in 0..2 {
        let out = tm.classify(&batch.input(), &adev).unwrap();
        let loss = out.logits.powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &tm);
        assert_eq!(
            grads.len(),
            n_trainable,
            "{strategy}: a gradient per trainable tensor"
        );
        if step == 0 {
            let mut sums = GradSums(&grads, HashMap::new());
            tm.clone().visit_params(&mut sums);
            for (k, t, part) in &tab {
                if *t && *part == Part::Adapter {
                    let g = sums.1.get(k).copied().unwrap_or(0.0);
                    assert!(g > 0.0, "{strategy}: adapter {k} got no gradient");
                }
            }
        }
        tm = opt.step(1e-2, tm, grads);
    }
    assert_eq!(
        opt.to_record().len(),
        2 * n_trainable,
        "{strategy}: Adam state for trainable tensors only"
    );
    let after = tm.valid();
    for (k, _, v) in state_dict(&after) {
        let b = &before[&k];
        let (_, t, _) = tab.iter().find(|x| x.0 == k).unwrap();
        if *t {
            // the key bias shifts every score of a query by the same amount, which softmax
            // ignores: its gradient is zero up to rounding, so it need not move
            if !k.ends_with("attention.self.key.bias") {
                assert!(b != &v, "{strategy}: trainable {k} did not move");
            }
        } else {
            let same = b.iter().zip(&v).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{strategy}: frozen {k} changed");
        }
    }
    (after, tab)
}

#[test]
fn every_strategy_trains_only_its_tensors() {
    for s in Strategy::ALL {
        let (_, tab) = train_steps(s, &PeftConfig::default());
        let n = |p: Part| tab.iter().filter(|t| t.1 && t.2 == p).count();
        eprintln!(
            "{s}: {} trainable tensors ({} adapter, {} head)",
            tab.iter().filter(|t| t.1).count(),
            n(Part::Adapter),
            n(Part::Head)
        );
        match s {
            Strategy::Full => assert!(tab.iter().all(|t| t.1)),
            Strategy::Head => {
                assert!(tab.iter().filter(|t| t.1).all(|t| t.2 == Part::Head));
                // pooler + classifier, weight and bias each
                assert_eq!(n(Part::Head), 4);
            }
            _ => {
                assert!(n(Part::Adapter) > 0);
                assert!(!tab.iter().any(|t| t.1 && t.2 == Part::Backbone));
            }
        }
        // what trains is decided by structure: the MLM head's `cls.*` keys are not trainable
        // names here, and the classifier is `classifier`/`bert.pooler.*`
        assert!(tab
            .iter()
            .filter(|t| t.2 == Part::Head)
            .all(|t| t.0.starts_with("classifier") || t.0.starts_with("bert.pooler")));
    }
}

#[test]
fn freeze_layers_keeps_the_first_layers_out_of_full_fine_tuning() {
    let peft = PeftConfig {
        freeze_layers: 2,
        ..PeftConfig::default()
    };
    let (_, tab) = train_steps(Strategy::Full, &peft);
    for (k, t, _) in &tab {
        let frozen =
            k.starts_with("bert.encoder.layer.0.") || k.starts_with("bert.encoder.layer.1.");
        assert_eq!(*t, !frozen, "{k}");
    }
}

#[test]
fn adapters_round_trip_through_their_files() {
    let dev = Device::flex();
    let f = folder();
    let sha = sha256_file(f.weights().unwrap()).unwrap();
    let batch = Small::new();
    for s in [
        Strategy::Lora,
        Strategy::EncoderPrompt,
        Strategy::Prefix,
        Strategy::TokenPrompt,
    ] {
        let (base, _) = f.load(3, false, &dev).unwrap();
        let mut m = attach(base, s, &PeftConfig::default(), &dev).unwrap();
        liven_lora(&mut m, &dev);
        let want = host(m.classify(&batch.input(), &dev).unwrap().logits);
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let meta = AdapterMeta::for_model(&m, f.base_args(), labels, None, sha.clone());
        let tmp = tempfile::tempdir().unwrap();
        save_adapter(&m, tmp.path(), &meta).unwrap();
        let (fresh, _) = f.load(0, false, &dev).unwrap();
        let (back, meta2) = load_adapter(fresh, tmp.path(), &sha, &dev).unwrap();
        assert_eq!(meta2.family, scllm_models::Family::Geneformer);
        let got = host(back.classify(&batch.input(), &dev).unwrap().logits);
        assert_eq!(got, want, "{s}: identical logits after the round trip");
        assert_eq!(param_counts(&back), param_counts(&m));
        // a scGPT adapter is refused on a Geneformer base, naming both
        let scgpt = scllm_models::ScGptModel::load(
            scgpt_dir("tiny"),
            &scllm_models::LoadOptions::default(),
            &dev,
        )
        .unwrap();
        let e = load_adapter(scgpt.model, tmp.path(), &sha, &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Geneformer") && e.contains("scGPT"), "{e}");
    }
}

/// Parameter counts of each strategy on the V1 6-layer shape (d 256, 4 heads, intermediate
/// 512, 25,426 tokens), 8 classes: the adapters' sizes follow from the sites.
#[test]
fn counts_on_the_v1_six_layer_shape() {
    let dev = Device::flex();
    let mut cfg = folder().config.clone();
    cfg.hidden_size = 256;
    cfg.num_hidden_layers = 6;
    cfg.intermediate_size = 512;
    cfg.vocab_size = 25_426;
    let base = Geneformer::new(&cfg, 8, false, &dev).unwrap();
    let d = 256usize;
    let lin = |i: usize, o: usize| i * o + o;
    let head = lin(d, d) + lin(d, 8);
    let layer = 4 * lin(d, d) + lin(d, 512) + lin(512, d) + 4 * d;
    let backbone = (25_426 + 2048 + 2) * d + 2 * d + 6 * layer;
    let adapter = lin(d, 64) + lin(64, d);
    let counts: HashMap<Strategy, (usize, usize)> = Strategy::ALL
        .iter()
        .map(|&s| {
            let m = attach(base.clone(), s, &PeftConfig::default(), &dev).unwrap();
            (s, param_counts(&m))
        })
        .collect();
    assert_eq!(counts[&Strategy::Full], (backbone + head, backbone + head));
    assert_eq!(counts[&Strategy::Head].0, head);
    assert_eq!(counts[&Strategy::TokenPrompt].0, adapter + head);
    assert_eq!(counts[&Strategy::EncoderPrompt].0, 6 * 2 * adapter + head);
    assert_eq!(counts[&Strategy::Prefix].0, 6 * 64 * d + head);
    // r 8 on query and value of 6 layers, biases frozen
    assert_eq!(counts[&Strategy::Lora].0, 6 * 2 * (8 * d + d * 8) + head);
}
