//! Time the pieces of one scGPT encoder layer on flex (where the forward pass spends its time):
//! `cargo run -p scllm-models --example profile_layer -- [batch] [len] [threads]`.

use std::time::Instant;

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Tensor};

fn time<T>(name: &str, flops: f64, f: impl Fn() -> T) {
    let _ = f();
    let t0 = Instant::now();
    let n = 3;
    for _ in 0..n {
        let _ = f();
    }
    let s = t0.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:<28} {:8.2} ms {:7.1} GFLOP/s",
        s * 1e3,
        flops / s / 1e9
    );
}

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (b, l) = (
        a.first().copied().unwrap_or(64),
        a.get(1).copied().unwrap_or(350),
    );
    if let Some(t) = a.get(2) {
        scllm_models::set_threads(*t).unwrap();
    }
    let (d, h) = (512usize, 8usize);
    let dev = scllm_models::device(scllm_models::DeviceKind::Cpu).unwrap();
    let x = Tensor::<3>::random([b, l, d], Distribution::Default, &dev);
    let w = Tensor::<2>::random([d, 3 * d], Distribution::Default, &dev);
    let bias = Tensor::<1>::random([3 * d], Distribution::Default, &dev);
    let rows = (b * l) as f64;
    time(
        "qkv linear [BL,512]x[512,1536]",
        2.0 * rows * d as f64 * 3.0 * d as f64,
        || burn::tensor::module::linear(x.clone(), w.clone(), Some(bias.clone())).into_data(),
    );
    let x2 = x.clone().reshape([b * l, d]);
    time(
        "matmul 2d [BL,512]x[512,1536]",
        2.0 * rows * d as f64 * 3.0 * d as f64,
        || x2.clone().matmul(w.clone()).into_data(),
    );
    let q = Tensor::<4>::random([b, h, l, d / h], Distribution::Default, &dev);
    let att_flops = 4.0 * b as f64 * (l * l) as f64 * d as f64;
    time("attention (no mask)", att_flops, || {
        attention(
            q.clone(),
            q.clone(),
            q.clone(),
            None,
            None,
            AttentionModuleOptions::default(),
        )
        .into_data()
    });
    time("attention (composed ops)", att_flops, || {
        let s = q.clone().matmul(q.clone().swap_dims(2, 3)) * (1.0 / ((d / h) as f64).sqrt());
        burn::tensor::activation::softmax(s, 3)
            .matmul(q.clone())
            .into_data()
    });
    let qkv = Tensor::<3>::random([b, l, 3 * d], Distribution::Default, &dev);
    time("split heads (3 copies)", 0.0, || {
        let t = qkv.clone().reshape([b, l, 3, h, d / h]);
        let p = |i: usize| {
            t.clone()
                .narrow(2, i, 1)
                .reshape([b, l, h, d / h])
                .swap_dims(1, 2)
        };
        (p(0).into_data(), p(1).into_data(), p(2).into_data())
    });
    let ln = burn::nn::LayerNormConfig::new(d).init(&dev);
    time("layer norm", 0.0, || ln.forward(x.clone()).into_data());
    time("add", 0.0, || (x.clone() + x.clone()).into_data());
}
