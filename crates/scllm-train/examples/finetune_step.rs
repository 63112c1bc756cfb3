//! scllm side of `bench/finetune_step.sh`: seconds per fine-tuning step of a randomly initialised
//! scGPT with one scPEFT strategy, on a batch written by `bench/finetune_step_torch.py --gen`
//! (run it under `/usr/bin/time -v` for the peak RSS):
//!
//! ```text
//! cargo run --release -p scllm-train --example finetune_step -- DATA_DIR STRATEGY D NLAYERS NHEADS D_HID NTOKEN N_CLS STEPS [DROPOUT 0.2]
//! ```
//!
//! One step = forward + cross-entropy on `cls_output` + backward + Adam (eps 1e-8, as
//! `torch.optim.Adam`) over the strategy's trainable tensors; train mode (dropout on), no gradient
//! clipping (the PyTorch side does none either). The first step is a warm-up and not timed;
//! prints one JSON line with the median of the timed steps.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use scllm_models::{
    attach, BatchInput, Device, PeftConfig, ScGpt, ScGptBuild, ScGptConfig, Strategy,
};

fn read<T: Copy>(p: &Path, size: usize, f: fn([u8; 8]) -> T) -> Vec<T> {
    let b = std::fs::read(p).unwrap();
    b.chunks_exact(size)
        .map(|c| {
            let mut a = [0u8; 8];
            a[..size].copy_from_slice(c);
            f(a)
        })
        .collect()
}

fn main() {
    scllm_models::memory::reuse_freed_memory();
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 10 {
        eprintln!("usage: finetune_step DATA_DIR STRATEGY D NLAYERS NHEADS D_HID NTOKEN N_CLS STEPS [DROPOUT]");
        std::process::exit(2);
    }
    let n = |i: usize| a[i].parse::<usize>().unwrap();
    let data = Path::new(&a[1]);
    let strategy: Strategy = a[2].parse().unwrap();
    let (d, nlayers, nheads, d_hid, ntoken, n_cls, steps) =
        (n(3), n(4), n(5), n(6), n(7), n(8), n(9));
    let dropout: f64 = a.get(10).map(|s| s.parse().unwrap()).unwrap_or(0.2);

    let shape: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("shape.json")).unwrap()).unwrap();
    let (b, l) = (
        shape["batch"].as_u64().unwrap() as usize,
        shape["len"].as_u64().unwrap() as usize,
    );
    assert_eq!(shape["ntoken"].as_u64().unwrap() as usize, ntoken);
    let genes: Vec<i64> = read(&data.join("genes.i64"), 8, i64::from_le_bytes);
    let values: Vec<f32> = read(&data.join("values.f32"), 4, |x| {
        f32::from_le_bytes([x[0], x[1], x[2], x[3]])
    });
    let labels: Vec<i64> = read(&data.join("labels.i64"), 8, i64::from_le_bytes);
    let padding = vec![false; b * l];
    assert_eq!(genes.len(), b * l);

    // the fixture's args.json for everything but the sizes
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cfg =
        ScGptConfig::from_json_file(root.join("tests/fixtures/scgpt/small/args.json")).unwrap();
    cfg.embsize = d;
    cfg.nlayers = nlayers;
    cfg.nheads = nheads;
    cfg.d_hid = d_hid;
    cfg.dropout = dropout;
    cfg.n_layers_cls = 3;
    let build = ScGptBuild {
        ntoken,
        pad_id: ntoken - 1,
        n_cls,
        do_mvc: false,
    };
    let dev = Device::flex();
    let adev = dev.clone().autodiff();
    let m = ScGpt::new(&cfg, &build, &dev).unwrap();
    let m = attach(m, strategy, &PeftConfig::default(), &dev).unwrap();
    let (n_train, n_total) = scllm_models::param_counts(&m);
    let mut model = m.train();
    let mut opt = AdamConfig::new().with_epsilon(1e-8).init();
    let input = BatchInput {
        batch: b,
        seq_len: l,
        genes: &genes,
        values: &values,
        padding: &padding,
    };
    let mut times = Vec::new();
    for step in 0..=steps {
        let t = Instant::now();
        let (g, v, mask) = model.inputs(&input, &adev);
        let out = model.forward(g, v, mask);
        let logits = out.cls_output.unwrap();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(labels.clone(), [b, 1]), &adev);
        let loss = log_softmax(logits, 1)
            .gather(1, idx)
            .reshape([b])
            .neg()
            .mean();
        let lv: f32 = loss.clone().detach().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(1e-4, model, grads);
        times.push(t.elapsed().as_secs_f64());
        eprintln!(
            "scllm {strategy} step {step}: {:.3} s loss {lv:.4}",
            times[step]
        );
    }
    let mut timed = times[1..].to_vec();
    timed.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let k = timed.len();
    let median = if k % 2 == 1 {
        timed[k / 2]
    } else {
        (timed[k / 2 - 1] + timed[k / 2]) / 2.0
    };
    println!(
        "{}",
        serde_json::json!({
            "side": "scllm", "strategy": strategy.as_str(), "batch": b, "len": l,
            "median_s": median, "steps_s": &times[1..], "warmup_s": times[0],
            "trainable": n_train, "total": n_total, "threads": scllm_models::threads(),
        })
    );
}
