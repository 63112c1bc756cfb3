//! The `scllm embed` pipeline without the CLI crate, for benchmarks and quick checks:
//! `cargo run -p scllm-models --example embed_h5ad -- MODEL_DIR IN.h5ad OUT.h5ad [threads] [batch]
//! [max_padding]`.

use std::time::Instant;

use scllm_io::{Matrix, Values};
use scllm_models::embed::{EmbedOptions, Embedder};
use scllm_models::{LoadOptions, ScGptModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    scllm_models::memory::reuse_freed_memory();
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!(
            "usage: embed_h5ad MODEL_DIR IN.h5ad OUT.h5ad [threads] [batch_size] [max_padding]"
        );
        std::process::exit(2);
    }
    if let Some(t) = a.get(4) {
        scllm_models::set_threads(t.parse()?)?;
    }
    let batch_size: usize = a.get(5).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let max_padding: f64 = a
        .get(6)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(scllm_models::embed::DEFAULT_MAX_PADDING);
    let t0 = Instant::now();
    let dev = scllm_models::device(scllm_models::DeviceKind::Cpu)?;
    let model = ScGptModel::load(&a[1], &LoadOptions::default(), &dev)?;
    eprint!("{}", model.report.to_text());
    let t_load = t0.elapsed().as_secs_f64();
    let mut ad = scllm_io::read_h5ad(&a[2])?;
    let x = scllm_pp::to_csr_f32(ad.x()?);
    let genes =
        scllm_tokenize::match_genes(&ad.var, &model.vocab, None, std::path::Path::new(&a[2]))?;
    let opts = EmbedOptions {
        batch_size,
        max_batch_tokens: batch_size * model.config.max_seq_len,
        max_padding,
        ..EmbedOptions::default()
    };
    let tok = model.embed_tokenizer(&genes, model.config.max_seq_len, 0)?;
    let mut e = Embedder::new(
        &model.model,
        &dev,
        &tok,
        scllm_models::scgpt::EMBEDDING,
        true,
        opts,
    )?;
    let d = e.dim();
    let mut emb = vec![0f32; x.nrows * d];
    let n = x.nrows;
    e.embed_block(&x, None, &mut emb, &mut |_| {})?;
    ad.set_obsm(
        "X_scGPT",
        Matrix::Dense {
            nrows: n,
            ncols: d,
            data: Values::F32(emb),
        },
    );
    scllm_io::write_h5ad(&ad, &a[3], scllm_io::Compression::None)?;
    let secs = t0.elapsed().as_secs_f64();
    let s = &e.stats;
    println!(
        "{}",
        serde_json::json!({
            "tool": "scllm-models embed", "cells": n, "seconds": secs, "load_seconds": t_load,
            "cells_per_second": n as f64 / secs, "threads": scllm_models::threads(),
            "forward_seconds": s.forward_seconds, "tokenize_seconds": s.tokenize_seconds,
            "forward_gflops_per_second": s.gflops_per_second(), "tokens": s.tokens,
            "padded_tokens": s.padded_tokens, "batches": s.batches, "batch_size": batch_size,
            "max_padding": max_padding,
        })
    );
    Ok(())
}
