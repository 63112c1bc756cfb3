//! CellPLM's embedding path against the reference (tests/fixtures/cellplm, made by
//! tools/make_cellplm_fixture.py with PyPI `cellplm` 0.1.0.post2's own `CellEmbeddingPipeline`,
//! Gumbel noise fixed at zero): embedder output, every encoder layer, the cluster logits and
//! the latent mean, by `obs['batch']` set, cut into sets of 5, and all cells one set; the
//! grouping rules; the load report; bad folders and files.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use common::*;
use scllm_models::cellplm::embed::{read_cells, set_input};
use scllm_models::cellplm::{embed_anndata, CellPlmFolder, GroupBy, SetOptions, Sets};
use scllm_tokenize::cellplm::match_gene_list;

const TOL: f64 = 1e-4;

fn dir() -> PathBuf {
    fixtures().join("cellplm")
}
fn cells() -> scllm_io::AnnData {
    scllm_io::read_h5ad(dir().join("cells.h5ad")).unwrap()
}
fn dev() -> Device {
    Device::flex()
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

/// `[N, d]` outputs of each set put back in input order.
fn scatter(n: usize, parts: &[(Vec<usize>, Tensor<2>)]) -> Vec<f32> {
    let d = parts[0].1.dims()[1];
    let mut out = vec![f32::NAN; n * d];
    for (rows, t) in parts {
        let v = host(t.clone());
        for (k, &r) in rows.iter().enumerate() {
            out[r * d..(r + 1) * d].copy_from_slice(&v[k * d..(k + 1) * d]);
        }
    }
    out
}

#[test]
fn every_stage_matches_the_reference_by_batch_set() {
    let f = CellPlmFolder::open(&dir()).unwrap();
    let (m, report) = f.load(&dev()).unwrap();
    assert_eq!(m.heads(), 8, "enc_head absent means 8");
    assert_eq!((m.d_model(), m.layers.len(), m.latent_dim()), (32, 2, 16));
    let unused = &report.unexpected;
    for k in [
        "decoder.out_layer.dec_disp",
        "embedder.pe_enc.missing_pe",
        "embedder.norm0.weight",
        "latent.layers.1.inference.inference_qzyx.2.var.weight",
        "latent.layers.1.inference.y_mu.weight",
    ] {
        assert!(unused.iter().any(|u| u == k), "{k} listed as skipped");
    }
    assert!(report.missing.is_empty() && report.skipped.is_empty());

    let a = cells();
    let path = dir().join("cells.h5ad");
    let genes = match_gene_list(&a.var, &f.config.gene_list, &path).unwrap();
    assert_eq!(genes.n_matched, 160, "{}", genes.summary());
    let c = read_cells(&a, &genes).unwrap();
    let sets = Sets::build(&a.obs, a.n_obs(), &SetOptions::default(), &path).unwrap();
    assert_eq!(sets.sets.len(), 3);
    let (mut emb, mut l0, mut l1, mut lg, mut lat) = (vec![], vec![], vec![], vec![], vec![]);
    for rows in &sets.sets {
        let o = m.forward_set(&set_input(&c, rows), &dev()).unwrap();
        emb.push((rows.clone(), o.embedder));
        l0.push((rows.clone(), o.hidden[0].clone()));
        l1.push((rows.clone(), o.hidden[1].clone()));
        lg.push((rows.clone(), o.logits));
        lat.push((rows.clone(), o.latent));
    }
    let r = read_safetensors(&dir().join("expected.safetensors"));
    let n = a.n_obs();
    for (name, got) in [
        ("embedder", scatter(n, &emb)),
        ("layer0", scatter(n, &l0)),
        ("layer1", scatter(n, &l1)),
        ("logits", scatter(n, &lg)),
        ("latent", scatter(n, &lat)),
    ] {
        let d = max_diff(&got, &r[name].data);
        eprintln!("{name}: max |diff| {d:.2e}");
        assert!(d <= TOL, "{name}: max |diff| {d}");
    }
}

fn embed(a: &scllm_io::AnnData, opts: &SetOptions) -> (Vec<f32>, Sets) {
    let f = CellPlmFolder::open(&dir()).unwrap();
    let (m, _) = f.load(&dev()).unwrap();
    let e = embed_anndata(
        &m,
        &f.config.gene_list,
        a,
        Path::new("cells.h5ad"),
        opts,
        &dev(),
    )
    .unwrap();
    (e.latent, e.sets)
}

#[test]
fn batch_size_and_one_set_match_the_reference() {
    let a = cells();
    let r = read_safetensors(&dir().join("expected.safetensors"));
    let (z, sets) = embed(
        &a,
        &SetOptions {
            batch_size: Some(5),
            ..Default::default()
        },
    );
    let d = max_diff(&z, &r["latent_bs5"].data);
    assert!(d <= TOL, "batch size 5: {d}");
    // each group (12 cells) cut into 5 + 5 + 2 consecutive cells, never mixing groups
    assert_eq!(sets.sets.len(), 9);
    let batch = a.obs.column("batch").unwrap().to_strings();
    for s in &sets.sets {
        assert!(s.len() <= 5);
        assert!(
            s.iter().all(|&i| batch[i] == batch[s[0]]),
            "one group per set"
        );
        assert!(
            s.windows(2).all(|w| w[0] < w[1]),
            "input order within a set"
        );
    }
    let (z, sets) = embed(
        &a,
        &SetOptions {
            group_by: GroupBy::AllCells,
            ..Default::default()
        },
    );
    assert_eq!(sets.sets.len(), 1);
    let d = max_diff(&z, &r["latent_one_set"].data);
    assert!(d <= TOL, "one set: {d}");
    // sets matter: the whole file as one set differs from the batch sets
    let whole: f64 = max_diff(&z, &r["latent"].data);
    assert!(whole > 1e-3, "{whole}");
}

#[test]
fn shuffled_cells_get_the_same_embeddings() {
    let a = cells();
    let n = a.n_obs();
    let perm: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
    let b = a.select_obs(&perm);
    let (za, _) = embed(&a, &SetOptions::default());
    let (zb, _) = embed(&b, &SetOptions::default());
    let d = za.len() / n;
    let mut m = 0f64;
    for (k, &p) in perm.iter().enumerate() {
        for j in 0..d {
            m = m.max((zb[k * d + j] as f64 - za[p * d + j] as f64).abs());
        }
    }
    assert!(m <= 1e-5, "{m}");
}

#[test]
fn group_by_names_a_column_and_refuses_a_missing_one() {
    let a = cells();
    let p = Path::new("cells.h5ad");
    let s = Sets::build(
        &a.obs,
        a.n_obs(),
        &SetOptions {
            group_by: GroupBy::Column("cell_type".into()),
            batch_size: None,
        },
        p,
    )
    .unwrap();
    assert_eq!(s.column.as_deref(), Some("cell_type"));
    let e = Sets::build(
        &a.obs,
        a.n_obs(),
        &SetOptions {
            group_by: GroupBy::Column("donor".into()),
            batch_size: None,
        },
        p,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("donor") && e.contains("batch"), "{e}");
}

fn copy_pair(to: &Path, prefix: &str) {
    std::fs::copy(
        dir().join("tiny.config.json"),
        to.join(format!("{prefix}.config.json")),
    )
    .unwrap();
    std::fs::copy(
        dir().join("tiny.best.ckpt"),
        to.join(format!("{prefix}.best.ckpt")),
    )
    .unwrap();
}

fn open_err(d: &Path) -> String {
    match CellPlmFolder::open(d) {
        Ok(f) => f.load(&dev()).expect_err("an error").to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_folders_are_refused_with_the_fix() {
    // two pairs
    let t = tempfile::tempdir().unwrap();
    copy_pair(t.path(), "a");
    copy_pair(t.path(), "b");
    let e = open_err(t.path());
    assert!(
        e.contains("2 CellPLM checkpoints") && e.contains("exactly one"),
        "{e}"
    );
    // none (a lone config)
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir().join("tiny.config.json"),
        t.path().join("x.config.json"),
    )
    .unwrap();
    std::fs::write(t.path().join("notes.txt"), "other files are ignored").unwrap();
    let e = open_err(t.path());
    assert!(
        e.contains("no CellPLM checkpoint") && e.contains("x"),
        "{e}"
    );
    // a config without gene_list
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("tiny.config.json")).unwrap())
            .unwrap();
    let t = tempfile::tempdir().unwrap();
    copy_pair(t.path(), "m");
    let mut c = cfg.clone();
    c.as_object_mut().unwrap().remove("gene_list");
    std::fs::write(t.path().join("m.config.json"), c.to_string()).unwrap();
    let e = open_err(t.path());
    assert!(e.contains("gene_list"), "{e}");
    // shapes that disagree with the config
    for (k, v) in [
        ("enc_hid", serde_json::json!(64)),
        ("enc_layers", serde_json::json!(4)),
        ("post_latent_dim", serde_json::json!(512)),
    ] {
        let mut c = cfg.clone();
        c[k] = v;
        std::fs::write(t.path().join("m.config.json"), c.to_string()).unwrap();
        let e = open_err(t.path());
        assert!(e.contains(k) && e.contains("not a pair"), "{k}: {e}");
    }
    let mut c = cfg.clone();
    c["gene_list"].as_array_mut().unwrap().pop();
    std::fs::write(t.path().join("m.config.json"), c.to_string()).unwrap();
    let e = open_err(t.path());
    assert!(e.contains("gene table") && e.contains("199"), "{e}");
}

#[test]
fn a_query_without_any_gene_of_the_list_is_refused() {
    let f = CellPlmFolder::open(&dir()).unwrap();
    let mut a = cells();
    a.var.index = (0..a.n_vars()).map(|i| format!("NOTAGENE{i}")).collect();
    let e = match_gene_list(&a.var, &f.config.gene_list, Path::new("q.h5ad"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("q.h5ad") && e.contains("gene_list"), "{e}");
}

#[test]
fn symbols_are_matched_through_gencode() {
    let f = CellPlmFolder::open(&dir()).unwrap();
    let mut a = cells();
    let sym = a.var.column("gene_symbol").unwrap().to_strings();
    a.var.index = sym.into_iter().map(|s| s.unwrap()).collect();
    let g = match_gene_list(&a.var, &f.config.gene_list, Path::new("q.h5ad")).unwrap();
    assert!(g.key.contains("GENCODE"), "{}", g.key);
    // GENCODE v44 names nearly all of the file's Ensembl ids by the same symbol
    assert!(g.n_matched >= 150, "{}", g.summary());
}
