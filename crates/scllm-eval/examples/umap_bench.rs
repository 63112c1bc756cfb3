//! Time scllm's UMAP and score it, on a raw float32 matrix written by
//! `tools/make_umap_fixture.py --timing N` (which prints umap-learn's time and scores on it):
//!
//!   cargo run --release -p scllm-eval --example umap_bench -- /tmp/umap_timing_N.f32 D [OUT.png]
//!
//! Labels are read from the `.labels.txt` beside the matrix (one per line) for the silhouette.
use std::time::Instant;

use scllm_eval::metrics::{silhouette_score, Distance};
use scllm_eval::plot::{plot_embedding, ScatterOptions};
use scllm_eval::umap::{flatten, knn_preservation, trustworthiness, umap, UmapInit, UmapOptions};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let d: usize = a[2].parse().unwrap();
    let bytes = std::fs::read(&a[1]).unwrap();
    let x: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let n = x.len() / d;
    let labels: Vec<String> = std::fs::read_to_string(a[1].replace(".f32", ".labels.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    if std::env::var("UMAP_BENCH_PHASES").is_ok() {
        // the kNN graph and the start only (one epoch): spectral, then random start
        for init in [UmapInit::Spectral, UmapInit::Random] {
            let t = Instant::now();
            let o = UmapOptions {
                n_epochs: Some(1),
                init,
                ..Default::default()
            };
            umap(&x, n, d, &o).unwrap();
            eprintln!(
                "graph + {init:?} start + 1 epoch: {:.3} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    let t = Instant::now();
    let y = umap(
        &x,
        n,
        d,
        &UmapOptions {
            progress: true,
            ..Default::default()
        },
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let yf = flatten(&y);
    if let Some(p) = a.get(3) {
        plot_embedding(
            p,
            &y,
            &labels,
            &format!("scllm UMAP, {n} cells"),
            &ScatterOptions::default(),
        )
        .unwrap();
    }
    if n > 20_000 {
        // the scores are O(n² log n): only the time above 20,000 cells
        println!("{{\"n\": {n}, \"d\": {d}, \"scllm_seconds\": {secs:.3}}}");
        return;
    }
    let tw = trustworthiness(&x, n, d, &yf, 2, 15).unwrap();
    let kp = knn_preservation(&x, n, d, &yf, 2, 15).unwrap();
    let y64: Vec<f64> = yf.iter().map(|&v| v as f64).collect();
    let sil = silhouette_score(&y64, 2, &labels, Distance::Euclidean).unwrap();
    println!(
        "{{\"n\": {n}, \"d\": {d}, \"scllm_seconds\": {secs:.3}, \"trustworthiness\": {tw:.5}, \"knn_preservation\": {kp:.5}, \"silhouette\": {sil:.5}, \"threads\": {}}}",
        rayon::current_num_threads()
    );
}
