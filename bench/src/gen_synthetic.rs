//! Writes a synthetic raw-count `.h5ad` of any size, streaming (memory stays small):
//! genes have log-normal mean expression and a detection rate averaging `nnz/genes`, cells a
//! log-normal size factor, counts are 1 + geometric, and cells fall into 4 `batch` levels.
//!
//!   cargo run --release -p scllm-bench --bin gen-synthetic -- CELLS GENES NNZ_PER_CELL OUT.h5ad

use rand_mt::Mt64;
use scllm_io::backed::CsrStreamWriter;
use scllm_io::{Column, Compressed, Compression, DataFrame, UnsValue, Values};

fn uniform(r: &mut Mt64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(r: &mut Mt64) -> f64 {
    // Box-Muller
    let (u, v) = (uniform(r).max(1e-300), uniform(r));
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: gen-synthetic CELLS GENES NNZ_PER_CELL OUT.h5ad");
        std::process::exit(2);
    }
    let (cells, genes, nnz): (usize, usize, usize) = (
        a[1].parse().unwrap(),
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
    );
    let mut r = Mt64::new(42);
    let frac = nnz as f64 / genes as f64;
    // per-gene detection probability around `frac` and mean count
    let detect: Vec<f64> = (0..genes)
        .map(|_| (frac + 0.2 * normal(&mut r)).clamp(0.02, 0.999))
        .collect();
    let mean: Vec<f64> = (0..genes)
        .map(|_| (0.5 + 1.0 * normal(&mut r)).exp())
        .collect();
    let mut w = CsrStreamWriter::create(&a[4], genes, Compression::None).expect("create output");
    let block = 10_000;
    let mut done = 0;
    while done < cells {
        let n = block.min(cells - done);
        let mut indptr = vec![0u64];
        let mut indices = Vec::with_capacity(n * nnz);
        let mut data = Vec::with_capacity(n * nnz);
        for _ in 0..n {
            let size = (0.3 * normal(&mut r)).exp();
            for j in 0..genes {
                if uniform(&mut r) < detect[j] {
                    let m = mean[j] * size;
                    // 1 + geometric with mean m
                    let p = 1.0 / (1.0 + m);
                    let g = (uniform(&mut r).max(1e-300).ln() / (1.0 - p).ln()).floor();
                    indices.push(j as u32);
                    data.push((1.0 + g.min(1e6)) as f32);
                }
            }
            indptr.push(indices.len() as u64);
        }
        w.append(&Compressed {
            nrows: n,
            ncols: genes,
            indptr,
            indices,
            data: Values::F32(data),
        })
        .expect("append");
        done += n;
        if done % 100_000 == 0 || done == cells {
            eprintln!("{done}/{cells} cells");
        }
    }
    let mut obs = DataFrame::new((0..cells).map(|i| format!("cell_{i:07}")).collect());
    obs.set(
        "batch",
        Column::categorical_from(
            &(0..cells)
                .map(|i| Some(format!("b{}", i % 4)))
                .collect::<Vec<_>>(),
        ),
    );
    let var = DataFrame::new((0..genes).map(|j| format!("GENE{j:05}")).collect());
    let uns = vec![("x_kind".to_string(), UnsValue::Str("counts".into()))];
    w.finish(&obs, &var, &[], &uns).expect("finish");
}
