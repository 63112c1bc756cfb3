//! Reduced-precision inference (`nn::precision`): the bf16 / int8 products against f32 within
//! their error bounds, on random and on checkpoint-shaped matrices, and the reference's own
//! outputs (the parity fixtures of scGPT, Geneformer and CellPLM) reproduced in bf16 at a
//! cosine ≥ 0.999 and in int8 at ≥ 0.995, with the f32 weights untouched.
//!
//! Tolerances, per output element `y = Σ_k x_k w_k`:
//! - bf16: inputs and weights are rounded to 8 significant bits (relative error ≤ 2⁻⁹ each; a
//!   product of two is exact in f32), the sum is f32; gemmkit's kernels round the product's
//!   output to bf16 again (≤ 2⁻⁹ of `|Σ x_k w_k|`) before the f32 bias, scllm's AVX-512 BF16
//!   kernel (`nn::bf16_dot`) does not: `|ŷ − y| ≤ 1.5·2⁻⁸·Σ|x_k w_k|` plus the f32 sums' own
//!   error holds for both.
//! - int8: `x ≈ a·t` with `|x − a·t| ≤ t/2` (t = max|x_row| / 127) and `w ≈ q·s` likewise per
//!   output column: `|ŷ − y| ≤ Σ_k (|x_k| s/2 + |w_k| t/2 + t s/4)`.
//!
//! Every kernel the CPU has is exercised by `crates/scllm/tests/precision.rs`, which pins each
//! in its own process (`GEMMKIT_REQUIRE_ISA`); this file runs the one chosen for this machine.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::*;
use scllm_models::cellplm::{embed_anndata, CellPlmFolder, SetOptions};
use scllm_models::embed::{EmbedOptions, Embedder};
use scllm_models::nn::precision::{kernel, LowWeights};
use scllm_models::{
    BatchInput, CellModel, GeneformerFolder, LoadOptions, ModelFolder, Precision, ScBertFolder,
    ScGptModel, TokenOptions,
};

/// Deterministic values in [-1, 1) (xorshift).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `x W + b` in f64, with the bound on each element's error for `precision`.
fn reference(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    p: Precision,
) -> (Vec<f64>, Vec<f64>) {
    let row_scale: Vec<f64> = x
        .chunks(k)
        .map(|r| r.iter().fold(0f64, |a, v| a.max(v.abs() as f64)) / 127.0)
        .collect();
    let col_scale: Vec<f64> = (0..n)
        .map(|j| (0..k).fold(0f64, |a, i| a.max(w[i * n + j].abs() as f64)) / 127.0)
        .collect();
    let mut y = vec![0f64; m * n];
    let mut bound = vec![0f64; m * n];
    for r in 0..m {
        for j in 0..n {
            let (mut s, mut abs, mut q) = (b[j] as f64, 0f64, 0f64);
            for i in 0..k {
                let (xv, wv) = (x[r * k + i] as f64, w[i * n + j] as f64);
                s += xv * wv;
                abs += (xv * wv).abs();
                q += xv.abs() * col_scale[j] / 2.0
                    + wv.abs() * row_scale[r] / 2.0
                    + row_scale[r] * col_scale[j] / 4.0;
            }
            y[r * n + j] = s;
            // f32 accumulation over k terms: k·2⁻²⁴ relative to Σ|x w|
            let f32_sum = abs * k as f64 * 6e-8 + 1e-6;
            bound[r * n + j] = match p {
                Precision::Bf16 => 1.5 * abs / 256.0 + f32_sum,
                Precision::Int8 => q * 1.001 + f32_sum,
                Precision::F32 => f32_sum,
            };
        }
    }
    (y, bound)
}

fn check_product(m: usize, k: usize, n: usize, seed: u64) {
    let x = values(m * k, seed);
    // weights of a trained layer's scale (±1/√k), one column all zero, one much larger
    let mut w: Vec<f32> = values(k * n, seed + 1)
        .iter()
        .map(|v| v / (k as f32).sqrt())
        .collect();
    for i in 0..k {
        w[i * n] = 0.0;
        w[i * n + n - 1] *= 50.0;
    }
    let b = values(n, seed + 2);
    for p in [Precision::Bf16, Precision::Int8] {
        let low = LowWeights::convert(&w, Some(b.clone()), k, n, p).unwrap();
        assert_eq!(low.precision(), p);
        let got = low.forward(&x, m);
        let (want, bound) = reference(&x, &w, &b, m, k, n, p);
        let mut worst = 0f64;
        for i in 0..m * n {
            let e = (got[i] as f64 - want[i]).abs();
            assert!(
                e <= bound[i],
                "{p} {m}x{k}x{n}: element {i}: |{} - {}| = {e:.3e} > {:.3e}",
                got[i],
                want[i],
                bound[i]
            );
            worst = worst.max(e / bound[i]);
        }
        // the bound is not loose by orders of magnitude: the error is real, and near it
        let rel = frob(&got, &want);
        eprintln!(
            "{p} {m}x{k}x{n} ({}): relative error {rel:.2e}, worst element at {:.0}% of its bound",
            kernel(p).unwrap(),
            100.0 * worst
        );
        assert!(rel > 1e-5, "{p}: {rel} — not the reduced precision?");
        assert!(
            rel < if p == Precision::Bf16 { 1e-2 } else { 2e-2 },
            "{p}: {rel}"
        );
    }
    assert!(LowWeights::convert(&w, None, k, n, Precision::F32).is_none());
}

fn frob(a: &[f32], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

#[test]
fn products_are_within_their_error_bounds() {
    // odd sizes (tails of every blocking), a single row, and a layer with k < n
    check_product(37, 19, 23, 1);
    check_product(1, 64, 130, 2);
    check_product(65, 96, 64, 3);
}

#[test]
fn checkpoint_shaped_products_are_within_their_error_bounds() {
    // the whole-human scGPT's Wqkv (512 → 1536) and FFN (512 → 512) on 64 token rows
    check_product(64, 512, 1536, 4);
    check_product(64, 512, 512, 5);
}

#[test]
fn all_zero_rows_and_columns_stay_zero() {
    let (m, k, n) = (3, 32, 8);
    let mut x = values(m * k, 9);
    x[k..2 * k].iter_mut().for_each(|v| *v = 0.0);
    let w = vec![0f32; k * n];
    for p in [Precision::Bf16, Precision::Int8] {
        let y = LowWeights::convert(&w, None, k, n, p)
            .unwrap()
            .forward(&x, m);
        assert!(y.iter().all(|&v| v == 0.0), "{p}");
    }
}

fn cosines(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny)
        })
        .collect()
}

fn min_cosine_to(reference: &[f64], got: &[f32], d: usize) -> f64 {
    let r: Vec<f32> = reference.iter().map(|&v| v as f32).collect();
    cosines(&r, got, d).into_iter().fold(1.0, f64::min)
}

const MIN_COS: [(Precision, f64); 2] = [(Precision::Bf16, 0.999), (Precision::Int8, 0.995)];

/// The f32 weights of `m` as a flat list (they must not change when the precision does).
fn weights<M: CellModel>(m: &mut M) -> Vec<f32> {
    struct All(Vec<f32>);
    impl scllm_models::params::ParamVisitor for All {
        fn param<const D: usize>(
            &mut self,
            _: &str,
            _: scllm_models::Part,
            _: scllm_models::params::Layout,
            p: &mut burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0.extend(host(p.val()));
        }
    }
    let mut v = All(Vec::new());
    m.visit_params(&mut v);
    v.0
}

#[test]
fn scgpt_cell_embeddings_match_the_reference_in_bf16_and_int8() {
    let dir = scgpt_dir("small");
    let dev = Device::flex();
    let mut m = ScGptModel::load(&dir, &LoadOptions::default(), &dev)
        .unwrap()
        .model;
    let r = read_outputs(&dir);
    let (b, l) = (r["genes"].shape[0], r["genes"].shape[1]);
    let genes: Vec<i64> = r["genes"].data.iter().map(|&x| x as i64).collect();
    let vals: Vec<f32> = r["values"].data.iter().map(|&x| x as f32).collect();
    let padding: Vec<bool> = r["padding"].data.iter().map(|&x| x != 0.0).collect();
    let input = BatchInput {
        batch: b,
        seq_len: l,
        genes: &genes,
        values: &vals,
        padding: &padding,
    };
    let d = m.d_model();
    let before = weights(&mut m);
    for (p, min) in MIN_COS {
        m.set_precision(p);
        let got = host(m.encode_cls(&input, &dev));
        let c = min_cosine_to(&r["cell_emb"].data, &got, d);
        eprintln!("scGPT small {p}: min cosine to the reference {c:.6}");
        assert!(c >= min, "{p}: {c}");
        assert!(
            c < 1.0 - 1e-9,
            "{p}: identical to f32, the reduced path did not run"
        );
    }
    m.set_precision(Precision::F32);
    let got = host(m.encode_cls(&input, &dev));
    let c = min_cosine_to(&r["cell_emb"].data, &got, d);
    assert!(c > 1.0 - 1e-9, "back to f32: {c}");
    assert_eq!(weights(&mut m), before, "the f32 weights never change");
}

/// A token family's default embedding of `cells` through the embedder (`scllm embed`'s path)
/// in bf16 and int8, against the reference's `want` rows.
fn token_family_matches<F: ModelFolder>(
    name: &str,
    folder: &F,
    cells: &Path,
    totals: Option<&[f64]>,
    want: &[f64],
) {
    let dev = Device::flex();
    let adata = scllm_io::read_h5ad(cells).unwrap();
    let x = scllm_pp::to_csr_f32(adata.x().unwrap());
    let (mut m, _) = folder.load(0, false, &dev).unwrap();
    let genes = folder.match_genes(&adata.var, None, cells).unwrap();
    let tok = folder
        .embed_tokenizer(&genes, &TokenOptions::default())
        .unwrap();
    let d = m.d_model();
    let defaults = folder.embedding();
    for (p, min) in MIN_COS {
        m.set_precision(p);
        let opts = EmbedOptions {
            batch_size: 4,
            ..Default::default()
        };
        let mut e = Embedder::new(
            &m,
            &dev,
            tok.as_ref(),
            defaults.spec,
            defaults.normalize,
            opts,
        )
        .unwrap();
        let mut out = vec![0f32; x.nrows * d];
        e.embed_block(&x, totals, &mut out, &mut |_| {}).unwrap();
        let c = min_cosine_to(want, &out, d);
        eprintln!("{name} {p}: min cosine to the reference {c:.6}");
        assert!(c >= min && c < 1.0 - 1e-9, "{name} {p}: {c}");
    }
}

#[test]
fn geneformer_default_embeddings_match_the_reference_in_bf16_and_int8() {
    let cells = fixtures().join("geneformer/cells.h5ad");
    let adata = scllm_io::read_h5ad(&cells).unwrap();
    let totals: Vec<f64> = {
        let c = adata.obs.column("n_counts").unwrap();
        (0..c.len()).map(|i| c.get_f64(i).unwrap()).collect()
    };
    let dir: PathBuf = fixtures().join("geneformer/v1");
    let folder = GeneformerFolder::open(&dir, None, None).unwrap();
    let r = read_safetensors(&dir.join("expected.safetensors"));
    token_family_matches(
        "Geneformer V1",
        &folder,
        &cells,
        Some(&totals),
        &r["emb_cell_m1"].data,
    );
}

#[test]
fn scbert_embeddings_match_the_reference_in_bf16_and_int8() {
    let dir = fixtures().join("scbert");
    let folder = ScBertFolder::open(&dir.join("model"), None).unwrap();
    let r = read_safetensors(&dir.join("expected.safetensors"));
    token_family_matches(
        "scBERT",
        &folder,
        &dir.join("cells.h5ad"),
        None,
        &r["embedding"].data,
    );
}

#[test]
fn cellplm_latents_match_the_reference_in_bf16_and_int8() {
    let dev = Device::flex();
    let dir = fixtures().join("cellplm");
    let a = scllm_io::read_h5ad(dir.join("cells.h5ad")).unwrap();
    let f = CellPlmFolder::open(&dir).unwrap();
    let (mut m, _) = f.load(&dev).unwrap();
    let r = read_safetensors(&dir.join("expected.safetensors"));
    for (p, min) in MIN_COS {
        m.set_precision(p);
        let e = embed_anndata(
            &m,
            &f.config.gene_list,
            &a,
            std::path::Path::new("cells.h5ad"),
            &SetOptions::default(),
            &dev,
        )
        .unwrap();
        let c = min_cosine_to(&r["latent"].data, &e.latent, e.dim);
        eprintln!("CellPLM {p}: min cosine to the reference {c:.6}");
        assert!(c >= min && c < 1.0 - 1e-9, "{p}: {c}");
    }
}
