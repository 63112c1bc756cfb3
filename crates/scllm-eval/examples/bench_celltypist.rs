//! The job behind `scllm baseline celltypist` (the command only parses arguments into it), as a
//! binary that builds without the model crates, for bench/celltypist.sh:
//!   bench_celltypist QUERY.h5ad MODEL.pkl OUT.h5ad
//! Prints the run's JSON summary (as `--json`).
use scllm_eval::celltypist::{celltypist, CellTypistJob, CellTypistOptions};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: bench_celltypist QUERY.h5ad MODEL.pkl OUT.h5ad");
        std::process::exit(2);
    }
    let t0 = std::time::Instant::now();
    let out = celltypist(&CellTypistJob {
        query: a[1].clone().into(),
        model: a[2].clone().into(),
        output: a[3].clone().into(),
        options: CellTypistOptions::default(),
    })
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let mut j = serde_json::to_value(&out).unwrap();
    j["total_seconds"] = t0.elapsed().as_secs_f64().into();
    j["cells_per_s"] = (out.summary.n_query as f64 / t0.elapsed().as_secs_f64()).into();
    println!("{}", serde_json::to_string(&j).unwrap());
}
