//! Training-step parity: the gradients of a classification step equal the reference's own
//! (`tools/make_grad_fixture.py`: scgpt's TransformerModel, dropout 0, the small fixture's padded
//! batch, cross-entropy of `cls_output` against labels [0, 1, 2, 3, 4, 0]).

mod common;

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use scllm_models::params::{Layout, ParamVisitor, Part};
use scllm_models::{Device, LoadOptions, ScGpt, ScGptModel};

const LABELS: [i64; 6] = [0, 1, 2, 3, 4, 0];

/// Every gradient under its state-dict key, in PyTorch layout.
struct GradCollector<'a> {
    grads: &'a GradientsParams,
    out: HashMap<String, Vec<f32>>,
}

impl ParamVisitor for GradCollector<'_> {
    fn param<const D: usize>(
        &mut self,
        key: &str,
        _part: Part,
        layout: Layout,
        p: &mut Param<Tensor<D>>,
    ) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            let v = match layout {
                Layout::AsIs => host(g),
                Layout::Transposed => host(g.transpose()),
            };
            self.out.insert(key.to_string(), v);
        }
    }
}

fn no_dropout(m: &mut ScGpt) {
    m.value_encoder.dropout.prob = 0.0;
    for l in &mut m.transformer_encoder.layers {
        l.dropout.prob = 0.0;
        l.dropout1.prob = 0.0;
        l.dropout2.prob = 0.0;
        l.self_attn.dropout.prob = 0.0;
    }
}

#[test]
fn classification_gradients_match_the_reference() {
    let dev = Device::flex();
    let adev = dev.clone().autodiff();
    let dir = scgpt_dir("small");
    let opts = LoadOptions {
        n_cls: 5,
        do_mvc: false,
        strict: false,
        weights: None,
    };
    let mut m = ScGptModel::load(&dir, &opts, &dev).expect("load").model;
    no_dropout(&mut m);
    let m = m.train();
    let batch = Batch::of(&dir);
    let (g, v, mask) = m.inputs(&batch.input(), &adev);
    let logits = m.forward(g, v, mask).cls_output.expect("cls head");
    let targets = Tensor::<2, Int>::from_data(TensorData::new(LABELS.to_vec(), [6, 1]), &adev);
    let loss = log_softmax(logits, 1)
        .gather(1, targets)
        .reshape([6])
        .neg()
        .mean();
    let want = read_safetensors(&dir.join("grads.safetensors"));
    let got_loss = host(loss.clone())[0] as f64;
    eprintln!(
        "loss: scllm {got_loss:.6}, reference {:.6}",
        want["loss"].data[0]
    );
    assert!((got_loss - want["loss"].data[0]).abs() < 1e-5);

    let grads = GradientsParams::from_grads(loss.backward(), &m);
    let mut c = GradCollector {
        grads: &grads,
        out: HashMap::new(),
    };
    scllm_models::CellModel::visit_params(&mut m.clone(), &mut c);
    let mut worst = (0.0f64, String::new());
    let mut n = 0;
    for (k, r) in &want {
        let Some(key) = k.strip_prefix("grad.") else {
            continue;
        };
        let got = c
            .out
            .get(key)
            .unwrap_or_else(|| panic!("no gradient for {key}"));
        assert_eq!(got.len(), r.data.len(), "{key}: size");
        let scale = r.data.iter().fold(0.0f64, |a, &x| a.max(x.abs())).max(1e-6);
        let rel = max_diff(got, &r.data) / scale;
        if rel > worst.0 {
            worst = (rel, key.to_string());
        }
        n += 1;
        assert!(
            rel < 1e-3,
            "{key}: max |scllm - reference| = {rel:.3e} of the largest reference gradient"
        );
    }
    eprintln!(
        "{n} gradients match; worst {} at {:.2e} relative",
        worst.1, worst.0
    );
    assert_eq!(n, c.out.len(), "scllm has gradients the reference lacks");
}
