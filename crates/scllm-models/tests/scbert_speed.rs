//! Timing of scBERT's pieces at the released shape (run by hand: `--ignored --nocapture`).

use burn::tensor::{Device, Distribution, Tensor};
use scllm_models::scbert::favor::gaussian_orthogonal;
use scllm_models::scbert::favor_flex::favor_flex;

#[test]
#[ignore]
fn favor_and_linear_timings() {
    let dev = Device::flex();
    let (l, h, dh, m, d) = (16_907, 10, 64, 266, 200);
    let p = gaussian_orthogonal(m, dh, &dev);
    let t = |w: usize| Tensor::<3>::random([1, l, w], Distribution::Normal(0.0, 1.0), &dev);
    let (q, k, v) = (t(h * dh), t(h * dh), t(h * dh));
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let o = favor_flex(&q, &k, &v, &p, h).unwrap();
        let _ = o.into_data();
        eprintln!("favor: {:.3} s", t0.elapsed().as_secs_f64());
    }
    let x = t(d);
    let w = Tensor::<2>::random([d, 3 * h * dh], Distribution::Normal(0.0, 1.0), &dev);
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let o = x.clone().matmul(w.clone().unsqueeze_dim::<3>(0));
        let _ = o.into_data();
        eprintln!("qkv linear: {:.3} s", t0.elapsed().as_secs_f64());
    }
}

#[test]
#[ignore]
fn layer_piece_timings() {
    use burn::tensor::activation::gelu;
    use scllm_models::{ScBert, ScBertConfig};
    let dev = Device::flex();
    let x = Tensor::<3>::random([1, 16_907, 800], Distribution::Normal(0.0, 1.0), &dev);
    for _ in 0..2 {
        let t0 = std::time::Instant::now();
        let _ = gelu(x.clone()).into_data();
        eprintln!("gelu [16907, 800]: {:.3} s", t0.elapsed().as_secs_f64());
    }
    let cfg = ScBertConfig::released();
    let m = ScBert::new(&cfg, 0, (512, 128), &dev).unwrap();
    let ids: Vec<i64> = (0..cfg.max_seq_len).map(|i| (i % 6) as i64).collect();
    let ids = Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(ids, [1, cfg.max_seq_len]),
        &dev,
    );
    for n in [0, 1, 6] {
        let t0 = std::time::Instant::now();
        let _ = m.encode(ids.clone(), n).into_data();
        eprintln!("encode {n} layers: {:.3} s", t0.elapsed().as_secs_f64());
    }
}
