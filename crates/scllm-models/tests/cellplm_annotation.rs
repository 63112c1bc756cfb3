//! CellPLM's annotation model against the reference (tests/fixtures/cellplm/annotation.safetensors,
//! made by tools/make_cellplm_annotation_fixture.py with PyPI `cellplm` 0.1.0.post2's own
//! `CellTypeAnnotationPipeline`): the `ae` latent and the head's logits by `obs['batch']` set in
//! eval mode, and the genes `common_preprocess` keeps with its HVG selection.

mod common;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use common::*;
use scllm_models::cellplm::embed::set_input;
use scllm_models::cellplm::prepare::{genes_read, prepare_cells, GeneSubset};
use scllm_models::cellplm::{CellPlmFolder, GroupBy, SetOptions, Sets};
use scllm_models::{load_into, Checkpoint};

const TOL: f64 = 1e-4;

fn dir() -> PathBuf {
    fixtures().join("cellplm")
}

#[test]
fn annotation_latent_and_logits_match_the_reference() {
    let dev = Device::flex();
    let f = CellPlmFolder::open(&dir()).unwrap();
    let (mut m, report) = f.load_annotation(3, &dev).unwrap();
    // the GMVAE and decoder are not read; the new latent and head are
    assert!(report
        .unexpected
        .iter()
        .any(|k| k.starts_with("latent.layers.1.inference")));
    assert_eq!(report.missing.len(), 4, "{:?}", report.missing);
    let head = Checkpoint::open(dir().join("annotation.safetensors")).unwrap();
    let r = load_into(&mut m, &head, false, &dev).unwrap();
    assert_eq!(r.loaded.len(), 4, "{:?}", r.loaded);
    let m = m.valid();
    let a = scllm_io::read_h5ad(dir().join("cells.h5ad")).unwrap();
    let p = prepare_cells(
        &a,
        &f.config.gene_list,
        Path::new("cells.h5ad"),
        &GeneSubset::All,
    )
    .unwrap();
    let sets = Sets::build(
        &a.obs,
        p.cells.len(),
        &SetOptions {
            group_by: GroupBy::Default,
            batch_size: None,
        },
        Path::new("cells.h5ad"),
    )
    .unwrap();
    assert_eq!(sets.sets.len(), 3);
    let n = p.cells.len();
    let mut z_parts: Vec<(Vec<usize>, Tensor<2>)> = Vec::new();
    let mut l_parts: Vec<(Vec<usize>, Tensor<2>)> = Vec::new();
    for rows in &sets.sets {
        let (z, logits) = m.classify_set(&set_input(&p.cells, rows), &dev).unwrap();
        z_parts.push((rows.clone(), z));
        l_parts.push((rows.clone(), logits));
    }
    let want = read_safetensors(&dir().join("annotation.safetensors"));
    for (name, parts) in [("ae_latent", &z_parts), ("ann_logits", &l_parts)] {
        let d = parts[0].1.dims()[1];
        let mut got = vec![f32::NAN; n * d];
        for (rows, t) in parts.iter() {
            let v = host(t.clone());
            for (k, &r) in rows.iter().enumerate() {
                got[r * d..(r + 1) * d].copy_from_slice(&v[k * d..(k + 1) * d]);
            }
        }
        let diff = max_diff(&got, &want[name].data);
        assert!(diff <= TOL, "{name}: max |diff| {diff}");
    }
}

#[test]
fn hvg_selection_keeps_the_references_genes() {
    let f = CellPlmFolder::open(&dir()).unwrap();
    let a = scllm_io::read_h5ad(dir().join("cells.h5ad")).unwrap();
    let p = prepare_cells(
        &a,
        &f.config.gene_list,
        Path::new("cells.h5ad"),
        &GeneSubset::Hvg(100),
    )
    .unwrap();
    let got = genes_read(&p.gene_match, &f.config.gene_list);
    let want = read_safetensors(&dir().join("annotation.safetensors"));
    let mut want: Vec<String> = want["hvg_genes"]
        .data
        .iter()
        .map(|&i| f.config.gene_list[i as usize].clone())
        .collect();
    want.sort();
    assert!(got.len() < 100, "genes outside the list drop out after HVG");
    assert_eq!(got, want);
    // at prediction the fine-tuned genes are read, whatever the query's variability
    let q = prepare_cells(
        &a,
        &f.config.gene_list,
        Path::new("cells.h5ad"),
        &GeneSubset::Fixed(&got),
    )
    .unwrap();
    assert_eq!(genes_read(&q.gene_match, &f.config.gene_list), got);
}
