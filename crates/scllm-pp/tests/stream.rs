//! The streaming pipeline gives the same numbers as the in-memory one.

use std::path::PathBuf;

use scllm_io::{read_h5ad, BackedAnnData, Column, Compression, Matrix};
use scllm_pp::stream::{preprocess_stream, StreamOptions};
use scllm_pp::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data")
        .join(name)
}

fn opts() -> StreamOptions {
    StreamOptions {
        block_cells: 37,
        min_genes: Some(300),
        min_counts: None,
        target_sum: Some(1e4),
        log1p: true,
        hvg: None,
        batch: None,
        compression: Compression::Gzip(4),
        source: None,
    }
}

#[test]
fn streamed_normalize_log1p_equals_in_memory() {
    let f = fixture("kang2018_pbmc_400.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.h5ad");
    let mut passes = std::collections::BTreeSet::new();
    let s = preprocess_stream(
        &BackedAnnData::open(&f, "X").unwrap(),
        &out,
        &opts(),
        |p, _| {
            passes.insert(p);
        },
    )
    .unwrap();
    assert_eq!(passes.into_iter().collect::<Vec<_>>(), vec![1], "one pass");
    let a = read_h5ad(&f).unwrap();
    let (kept, _) = filter_cells(
        &a,
        &CellFilter {
            min_genes: Some(300),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.cells_out, kept.n_obs());
    assert!(s.cells_out < 400, "the filter removed some cells");
    let (n, _, _) = normalize_total(&to_csr_f32(kept.x().unwrap()), Some(1e4));
    let want = Matrix::Csr(log1p(&n));
    let got = read_h5ad(&out).unwrap();
    assert_eq!(got.obs.index, kept.obs.index);
    assert_eq!(got.x.unwrap(), want, "bit-identical to the in-memory path");
}

#[test]
fn streamed_seurat_v3_equals_in_memory() {
    let f = fixture("kang2018_pbmc_400.h5ad");
    let a = read_h5ad(&f).unwrap();
    let donors: Vec<u32> = match a.obs.column("donor").unwrap() {
        Column::Categorical { codes, .. } => codes.iter().map(|&c| c as u32).collect(),
        _ => unreachable!(),
    };
    let x = to_csr_f32(a.x().unwrap());
    let mem = highly_variable_genes(
        &x,
        &HvgOptions::new(300, HvgFlavor::SeuratV3),
        Some(scllm_pp::Batches {
            ids: &donors,
            gene_names: None,
        }),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.h5ad");
    let mut o = opts();
    o.min_genes = None;
    o.hvg = Some(HvgOptions::new(300, HvgFlavor::SeuratV3));
    o.batch = Some(donors);
    let mut passes = std::collections::BTreeSet::new();
    let s = preprocess_stream(&BackedAnnData::open(&f, "X").unwrap(), &out, &o, |p, _| {
        passes.insert(p);
    })
    .unwrap();
    assert_eq!(
        passes.into_iter().collect::<Vec<_>>(),
        vec![1],
        "counts fit the histograms: one pass"
    );
    let h = s.hvg.unwrap();
    assert_eq!(h.highly_variable, mem.highly_variable);
    // clipped sums are added in another order (by value, from the histograms): rounding only
    for (a, b) in h
        .variances_norm
        .unwrap()
        .iter()
        .zip(mem.variances_norm.unwrap().iter())
    {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
    let got = read_h5ad(&out).unwrap();
    assert!(
        matches!(got.var.column("highly_variable"), Some(Column::Bool(v)) if *v == mem.highly_variable)
    );
}
