//! scanpy's and scgpt's own numbers (computed by tools/make_fixtures.py) against scllm-pp.

use std::collections::HashSet;
use std::path::PathBuf;

use scllm_io::{read_h5ad, AnnData, Column, Matrix};
use scllm_pp::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn parity() -> AnnData {
    read_h5ad(fixtures().join("parity/pp_pbmc3k_300.h5ad")).unwrap()
}

fn bools(c: &Column) -> Vec<bool> {
    match c {
        Column::Bool(v) => v.clone(),
        other => panic!("expected bool column, got {}", other.kind()),
    }
}

/// max |a-b| / max(|b|, 1e-30) over stored values of two CSR matrices with equal structure.
fn max_rel(a: &Matrix, b: &Matrix) -> f64 {
    let (a, b) = (a.to_dense_f64(), b.to_dense_f64());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1e-30))
        .filter(|d| d.is_finite())
        .fold(0.0, f64::max)
}

#[test]
fn filters_keep_what_scanpy_keeps() {
    let a = parity();
    let (cells, _) = filter_cells(
        &a,
        &CellFilter {
            min_genes: Some(200),
            ..Default::default()
        },
    )
    .unwrap();
    let want: Vec<String> = bools(a.obs.column("keep_min_genes_200").unwrap())
        .iter()
        .zip(&a.obs.index)
        .filter(|(k, _)| **k)
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!(cells.obs.index, want);
    let (genes, _) = filter_genes(
        &a,
        &GeneFilter {
            min_cells: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let want: Vec<String> = bools(a.var.column("keep_min_cells_3").unwrap())
        .iter()
        .zip(&a.var.index)
        .filter(|(k, _)| **k)
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!(genes.var.index, want);
}

#[test]
fn normalize_total_and_log1p_match_scanpy() {
    let a = parity();
    let x = to_csr_f32(a.x().unwrap());
    let (n, _, _) = normalize_total(&x, Some(1e4));
    let d = max_rel(&Matrix::Csr(n.clone()), a.layer("X_normed").unwrap());
    assert!(d <= 1e-6, "normalize_total max relative difference {d}");
    let (m, _, _) = normalize_total(&x, None);
    let d = max_rel(&Matrix::Csr(m), a.layer("X_normed_median").unwrap());
    assert!(
        d <= 1e-6,
        "normalize_total (median target) max relative difference {d}"
    );
    let l = log1p(&n);
    let d = max_rel(&Matrix::Csr(l), a.layer("X_log1p").unwrap());
    assert!(d <= 1e-6, "log1p max relative difference {d}");
}

#[test]
fn seurat_and_cell_ranger_hvgs_are_identical() {
    let a = parity();
    let lx = to_csr_f32(a.layer("X_log1p").unwrap());
    for (flavor, name) in [
        (HvgFlavor::Seurat, "seurat"),
        (HvgFlavor::CellRanger, "cell_ranger"),
    ] {
        let r = highly_variable_genes(&lx, &HvgOptions::new(500, flavor), None).unwrap();
        let want = bools(a.var.column(&format!("hvg_{name}")).unwrap());
        let differ: Vec<&String> = (0..want.len())
            .filter(|&j| want[j] != r.highly_variable[j])
            .map(|j| &a.var.index[j])
            .collect();
        assert!(
            differ.is_empty(),
            "{name}: {} genes differ: {:?}",
            differ.len(),
            &differ[..differ.len().min(10)]
        );
        let Some(Column::F64(dn)) = a.var.column(&format!("dispnorm_{name}")) else {
            panic!()
        };
        let ours = r.dispersions_norm.as_ref().unwrap();
        for j in 0..dn.len() {
            if dn[j].is_nan() {
                assert!(
                    ours[j].is_nan(),
                    "{name} gene {j}: scanpy NaN, ours {}",
                    ours[j]
                );
            } else {
                assert!(
                    (ours[j] - dn[j]).abs() <= 1e-6 * dn[j].abs().max(1.0),
                    "{name} gene {j}: {} vs {}",
                    ours[j],
                    dn[j]
                );
            }
        }
    }
}

#[test]
fn scale_matches_scanpy() {
    let a = parity();
    let hv = bools(a.var.column("hvg_seurat").unwrap());
    let cols: Vec<usize> = (0..hv.len()).filter(|&j| hv[j]).collect();
    let lx = a.layer("X_log1p").unwrap().select_cols(&cols);
    let (s, _, _) = scale(&to_csr_f32(&lx), true, Some(10.0));
    let want = a.obsm_get("X_scaled_hvg_seurat").unwrap().to_dense_f64();
    let got = s.to_dense_f64();
    let d = got
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(d <= 1e-5, "scale max abs difference {d}");
}

#[test]
fn binning_matches_scgpt_exactly_in_numpy_mode() {
    let a = parity();
    let lx = to_csr_f32(a.layer("X_log1p").unwrap());
    let want = a.layer("X_binned").unwrap().to_dense_f64();
    let (b, edges) = Binner::new(51, BinRng::numpy(0)).bin_matrix(&lx).unwrap();
    assert_eq!(
        Matrix::Csr(b).to_dense_f64(),
        want,
        "numpy-compatible mode reproduces scgpt's bins"
    );
    assert_eq!(edges.len(), a.n_obs() * 51);
    // per-cell mode: identical wherever a value has no ties to break
    let (p, _) = Binner::new(51, BinRng::per_cell(0))
        .bin_matrix(&lx)
        .unwrap();
    let vals = scllm_pp::normalize::values_f32(&lx);
    let (mut compared, mut same) = (0, 0);
    for i in 0..lx.nrows {
        let r = lx.range(i);
        let row = &vals[r.clone()];
        for k in r.clone() {
            if row.iter().filter(|&&v| v == vals[k]).count() == 1 {
                compared += 1;
                let j = lx.indices[k] as usize;
                same += (p.data.get_f64(k) == want[i * lx.ncols + j]) as usize;
            }
        }
    }
    assert!(compared > 1000);
    assert_eq!(
        same, compared,
        "untied values get the reference's bins in per-cell mode"
    );
}

fn v3_overlap(file: &PathBuf, json: &PathBuf) -> (f64, usize) {
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let a = read_h5ad(file).unwrap();
    let x = to_csr_f32(a.x().unwrap());
    let n_top = exp["n_top_genes"].as_u64().unwrap() as usize;
    let batches: Option<Vec<u32>> =
        exp["batch_key"]
            .as_str()
            .map(|k| match a.obs.column(k).unwrap() {
                Column::Categorical { codes, .. } => codes.iter().map(|&c| c as u32).collect(),
                _ => panic!("batch column must be categorical"),
            });
    let r = highly_variable_genes(
        &x,
        &HvgOptions::new(n_top, HvgFlavor::SeuratV3),
        batches.as_deref().map(|ids| scllm_pp::Batches {
            ids,
            gene_names: None,
        }),
    )
    .unwrap();
    let want: HashSet<&str> = exp["highly_variable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours: HashSet<&str> = (0..a.n_vars())
        .filter(|&j| r.highly_variable[j])
        .map(|j| a.var.index[j].as_str())
        .collect();
    assert_eq!(ours.len(), n_top);
    let shared = ours.intersection(&want).count();
    (shared as f64 / n_top as f64, n_top)
}

#[test]
fn seurat_v3_selects_at_least_99_percent_of_scanpys_genes_on_fixtures() {
    for (file, json) in [
        (
            "data/kang2018_pbmc_400.h5ad",
            "parity/hvg_seurat_v3_kang2018_pbmc_400.json",
        ),
        (
            "data/kang2018_pbmc_400.h5ad",
            "parity/hvg_seurat_v3_kang2018_pbmc_400_donor.json",
        ),
    ] {
        let (o, n) = v3_overlap(&fixtures().join(file), &fixtures().join(json));
        eprintln!(
            "seurat_v3 {json}: {:.2}% of {n} genes shared with scanpy",
            o * 100.0
        );
        assert!(o >= 0.99, "{json}: only {:.2}% shared", o * 100.0);
    }
}

#[test]
fn seurat_v3_selects_at_least_99_percent_of_scanpys_genes_on_shared_data() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !shared.is_dir() {
        eprintln!("shared/data not present: skipped");
        return;
    }
    for (file, json) in [
        ("pbmc3k.h5ad", "hvg_seurat_v3_pbmc3k.json"),
        ("kang2018_pbmc.h5ad", "hvg_seurat_v3_kang2018_pbmc.json"),
        (
            "kang2018_pbmc.h5ad",
            "hvg_seurat_v3_kang2018_pbmc_donor.json",
        ),
    ] {
        let (o, n) = v3_overlap(&shared.join(file), &fixtures().join("parity").join(json));
        eprintln!(
            "seurat_v3 {json}: {:.2}% of {n} genes shared with scanpy",
            o * 100.0
        );
        assert!(o >= 0.99, "{json}: only {:.2}% shared", o * 100.0);
    }
}

/// scanpy's batched seurat / cell_ranger (`_highly_variable_genes_batched`; fixture made by
/// tools/make_hvg_batched_fixture.py with scanpy 1.11.5): per-batch genes, averaged columns,
/// `nbatches`, `intersection` and the top genes by (nbatches, normalised dispersion).
#[test]
fn batched_seurat_and_cell_ranger_match_scanpy() {
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("parity/hvg_batched_kang2018_pbmc_400.json"))
            .unwrap(),
    )
    .unwrap();
    let a = read_h5ad(fixtures().join("data/kang2018_pbmc_400.h5ad")).unwrap();
    let (n, _, _) = normalize_total(&to_csr_f32(a.x().unwrap()), Some(1e4));
    let lx = log1p(&n);
    for run in exp["runs"].as_array().unwrap() {
        let (flavor, key) = (
            run["flavor"].as_str().unwrap(),
            run["batch_key"].as_str().unwrap(),
        );
        let ids: Vec<u32> = match a.obs.column(key).unwrap() {
            Column::Categorical { codes, .. } => codes.iter().map(|&c| c as u32).collect(),
            _ => panic!("{key} is not categorical"),
        };
        let n_top = run["n_top_genes"].as_u64().unwrap() as usize;
        let r = highly_variable_genes(
            &lx,
            &HvgOptions::new(n_top, flavor.parse().unwrap()),
            Some(Batches {
                ids: &ids,
                gene_names: Some(&a.var.index),
            }),
        )
        .unwrap();
        let cols = &run["columns"];
        let want_bool = |c: &str| -> Vec<bool> {
            cols[c]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap())
                .collect()
        };
        let what = format!("{flavor} by {key}");
        assert_eq!(r.highly_variable, want_bool("highly_variable"), "{what}");
        assert_eq!(
            r.highly_variable_intersection.as_ref().unwrap(),
            &want_bool("highly_variable_intersection"),
            "{what}"
        );
        let nb: Vec<i64> = cols["highly_variable_nbatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(r.highly_variable_nbatches.as_ref().unwrap(), &nb, "{what}");
        for (name, ours) in [
            ("means", &r.means),
            ("dispersions", r.dispersions.as_ref().unwrap()),
            ("dispersions_norm", r.dispersions_norm.as_ref().unwrap()),
        ] {
            for (j, want) in cols[name].as_array().unwrap().iter().enumerate() {
                match want.as_f64() {
                    None => assert!(
                        ours[j].is_nan(),
                        "{what} {name}[{j}]: scanpy NaN, ours {}",
                        ours[j]
                    ),
                    Some(w) => assert!(
                        (ours[j] - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{what} {name}[{j}]: {} vs {w}",
                        ours[j]
                    ),
                }
            }
        }
    }
}
