//! The `scllm preprocess` recipe as a job: its layers equal the steps run one by one, the
//! streamed path equals the in-memory one, vocabulary genes are kept, bad jobs are refused; and
//! the `scllm inspect` description of a committed file.

use std::path::{Path, PathBuf};

use scllm_io::{read_h5ad, Column, DataFrame, Matrix, UnsValue};
use scllm_pp::inspect::{inspect, inspect_in_blocks_above, InspectJob};
use scllm_pp::recipe::{
    preprocess, PreprocessJob, PreprocessOutcome, PreprocessSummary, TotalTarget, VocabMatch,
    VocabMatcher,
};
use scllm_pp::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data")
        .join(name)
}

fn in_memory(o: PreprocessOutcome) -> PreprocessSummary {
    match o {
        PreprocessOutcome::InMemory(s) => s,
        PreprocessOutcome::Streamed(_) => panic!("expected the in-memory path"),
    }
}

fn quiet(input: PathBuf, output: PathBuf) -> PreprocessJob {
    PreprocessJob {
        progress: false,
        ..PreprocessJob::new(input, output)
    }
}

#[test]
fn recipe_layers_equal_the_steps_run_one_by_one() {
    let f = fixture("pbmc3k_300.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pp.h5ad");
    let job = PreprocessJob {
        min_genes: Some(200),
        min_cells: Some(3),
        normalize_total: Some(TotalTarget::Sum(1e4)),
        log1p: true,
        hvg: Some(500),
        hvg_flavor: HvgFlavor::Seurat,
        scale: true,
        max_value: Some(10.0),
        bin: Some(51),
        numpy_rng: true,
        ..quiet(f.clone(), out.clone())
    };
    let s = in_memory(preprocess(&job, None).unwrap());

    // the same steps by hand
    let a = read_h5ad(&f).unwrap();
    let (a, _) = filter_cells(
        &a,
        &CellFilter {
            min_genes: Some(200),
            ..Default::default()
        },
    )
    .unwrap();
    let (a, _) = filter_genes(
        &a,
        &GeneFilter {
            min_cells: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let x = to_csr_f32(a.x().unwrap());
    let (normed, _, used) = normalize_total(&x, Some(1e4));
    let logged = log1p(&normed);
    let hv =
        highly_variable_genes(&logged, &HvgOptions::new(500, HvgFlavor::Seurat), None).unwrap();
    let (scaled, _, _) = scale(&logged, true, Some(10.0));
    let (binned, edges) = Binner::new(51, BinRng::numpy(0))
        .bin_matrix(&logged)
        .unwrap();

    let got = read_h5ad(&out).unwrap();
    assert_eq!(got.obs.index, a.obs.index);
    assert_eq!(got.var.index, a.var.index);
    assert_eq!(
        got.x.as_ref(),
        a.x.as_ref(),
        "X stays as read (after filtering)"
    );
    assert_eq!(got.layer("X_normed").unwrap(), &Matrix::Csr(normed));
    assert_eq!(got.layer("X_log1p").unwrap(), &Matrix::Csr(logged));
    assert_eq!(got.layer("X_scaled").unwrap(), &scaled);
    assert_eq!(got.layer("X_binned").unwrap(), &Matrix::Csr(binned));
    let got_edges = got.obsm_get("bin_edges").unwrap();
    assert_eq!(got_edges.shape(), (a.n_obs(), 51));
    assert_eq!(got_edges.to_dense_f64(), edges);
    let got_hv = got.var.column("highly_variable").unwrap();
    assert_eq!(
        (0..got.n_vars())
            .map(|j| got_hv.get_f64(j) == Some(1.0))
            .collect::<Vec<_>>(),
        hv.highly_variable
    );

    assert_eq!(s.input_kind, "counts");
    assert_eq!(s.cells, [300, a.n_obs()]);
    assert_eq!(s.genes[1], a.n_vars());
    assert_eq!(s.target_sum, Some(used));
    assert_eq!(s.highly_variable, Some(500));
    assert_eq!(
        s.steps,
        [
            "normalize_total(10000)",
            "log1p",
            "highly_variable_genes(seurat, 500)",
            "scale",
            "binning(51)"
        ]
    );
    assert_eq!(s.layers, ["X_normed", "X_log1p", "X_scaled", "X_binned"]);
    let steps = got
        .uns
        .iter()
        .find(|(k, _)| k == "scllm_preprocess")
        .map(|(_, v)| v.clone())
        .unwrap();
    match steps {
        UnsValue::Dict(d) => assert!(d
            .iter()
            .any(|(k, v)| k == "steps" && *v == UnsValue::Array(Column::Str(s.steps.clone())))),
        other => panic!("uns['scllm_preprocess'] is {other:?}"),
    }
}

#[test]
fn streamed_recipe_writes_the_in_memory_log1p_as_x() {
    let f = fixture("kang2018_pbmc_400.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    let base = PreprocessJob {
        min_genes: Some(200),
        normalize_total: Some(TotalTarget::Sum(1e4)),
        log1p: true,
        hvg: Some(200),
        batch_key: Some("donor".into()),
        block_cells: 53,
        ..quiet(f.clone(), tmp.path().join("mem.h5ad"))
    };
    let mem = in_memory(preprocess(&base, None).unwrap());
    let streamed = PreprocessJob {
        stream: true,
        output: tmp.path().join("stream.h5ad"),
        ..base
    };
    let s = match preprocess(&streamed, None).unwrap() {
        PreprocessOutcome::Streamed(s) => s,
        PreprocessOutcome::InMemory(_) => panic!("expected the streamed path"),
    };
    assert_eq!(s.cells, mem.cells);
    assert_eq!(s.genes, mem.genes[1]);
    assert_eq!(s.highly_variable, Some(200));
    assert!(s.streamed);
    let m = read_h5ad(tmp.path().join("mem.h5ad")).unwrap();
    let st = read_h5ad(tmp.path().join("stream.h5ad")).unwrap();
    assert_eq!(st.x.as_ref(), m.layer("X_log1p"));
    assert_eq!(
        st.var.column("highly_variable"),
        m.var.column("highly_variable")
    );
    assert_eq!(s.stored as usize, st.x.unwrap().stored());
}

/// Keeps the genes whose name starts with one of `prefixes`, ids in column order.
struct Prefixes(&'static [&'static str]);

impl VocabMatcher for Prefixes {
    fn match_vocab(
        &self,
        _vocab: &Path,
        var: &DataFrame,
        _gene_col: Option<&str>,
        _file: &Path,
    ) -> Result<VocabMatch, Box<dyn std::error::Error + Send + Sync>> {
        let ids: Vec<Option<u32>> = var
            .index
            .iter()
            .enumerate()
            .map(|(j, g)| {
                self.0
                    .iter()
                    .any(|p| g.starts_with(p))
                    .then_some(1000 + j as u32)
            })
            .collect();
        let n = ids.iter().flatten().count();
        if n == 0 {
            return Err("none of the genes is in the vocabulary".into());
        }
        Ok(VocabMatch {
            summary: format!("{n} genes matched"),
            ids,
        })
    }
}

#[test]
fn vocabulary_genes_are_kept_with_their_ids() {
    let f = fixture("pbmc3k_300.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("v.h5ad");
    let job = PreprocessJob {
        vocab: Some(PathBuf::from("vocab.json")),
        ..quiet(f.clone(), out.clone())
    };
    let s = in_memory(preprocess(&job, Some(&Prefixes(&["CD", "HLA"]))).unwrap());
    let a = read_h5ad(&f).unwrap();
    let keep: Vec<usize> = (0..a.n_vars())
        .filter(|&j| a.var.index[j].starts_with("CD") || a.var.index[j].starts_with("HLA"))
        .collect();
    assert!(!keep.is_empty());
    assert_eq!(s.genes, [keep.len(), keep.len()]);
    let got = read_h5ad(&out).unwrap();
    assert_eq!(
        got.var.index,
        keep.iter()
            .map(|&j| a.var.index[j].clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        got.var.column("id_in_vocab"),
        Some(&Column::I64(
            keep.iter().map(|&j| 1000 + j as i64).collect()
        ))
    );

    // the matcher's error is the run's error, word for word
    let e = preprocess(&job, Some(&Prefixes(&["NO_SUCH_GENE"]))).unwrap_err();
    assert_eq!(e.to_string(), "none of the genes is in the vocabulary");
    // a vocabulary without a matcher is refused, not ignored
    assert!(preprocess(&job, None)
        .unwrap_err()
        .to_string()
        .contains("--vocab"));
}

#[test]
fn jobs_that_cannot_work_are_refused_before_writing() {
    let f = fixture("kang2018_pbmc_400.h5ad");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.h5ad");
    let msg = |job: PreprocessJob| preprocess(&job, None).unwrap_err().to_string();
    let m = msg(PreprocessJob {
        stream: true,
        scale: true,
        bin: Some(51),
        ..quiet(f.clone(), out.clone())
    });
    assert!(
        m.contains("--stream does not support --scale, --bin"),
        "{m}"
    );
    let m = msg(PreprocessJob {
        stream: true,
        normalize_total: Some(TotalTarget::Median),
        ..quiet(f.clone(), out.clone())
    });
    assert!(m.contains("not the median"), "{m}");
    let m = msg(PreprocessJob {
        hvg: Some(10),
        hvg_flavor: HvgFlavor::Seurat,
        ..quiet(f.clone(), out.clone())
    });
    assert!(
        m.contains("--hvg-flavor seurat: needs log-normalized data"),
        "{m}"
    );
    let m = msg(PreprocessJob {
        label: Some("celltype".into()),
        ..quiet(f.clone(), out.clone())
    });
    assert!(m.contains("obs['celltype']"), "{m}");
    let m = msg(quiet(fixture("../bad/duplicate_genes.h5ad"), out.clone()));
    assert!(
        m.contains("duplicate gene names") && m.contains("--make-unique"),
        "{m}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn inspect_describes_a_committed_file() {
    let s = inspect(&InspectJob {
        file: fixture("kang2018_pbmc_400.h5ad"),
        label: None,
    })
    .unwrap();
    assert_eq!((s.n_obs, s.n_vars), (400, 1287));
    assert_eq!((s.x.storage, s.x.kind), ("csr", "counts"));
    let l = s
        .labels
        .as_ref()
        .expect("cell_type is found without --label");
    assert_eq!(l.column, "cell_type");
    assert_eq!(l.counts[0], ("CD4 T cells".to_string(), 173));
    assert_eq!(l.counts.iter().map(|c| c.1).sum::<usize>(), 400);
    assert!(s.obs.iter().any(|c| c.name == "donor"));
    // as JSON, the shape scripts read (`inspect --json | jq .x.kind`)
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["x"]["kind"], "counts");
    assert_eq!(
        v["labels"]["counts"][0],
        serde_json::json!(["CD4 T cells", 173])
    );

    let e = inspect(&InspectJob {
        file: fixture("kang2018_pbmc_400.h5ad"),
        label: Some("celltype".into()),
    })
    .unwrap_err();
    assert!(e.to_string().contains("celltype"), "{e}");
}

#[test]
fn inspect_in_blocks_tells_what_reading_whole_tells() {
    // sparse counts, dense counts, dense log data (the log check reads the first 200 rows)
    for name in [
        "kang2018_pbmc_400.h5ad",
        "pbmc3k_40_csv_scanpy.h5ad",
        "anndata_features.h5ad",
    ] {
        let job = InspectJob {
            file: fixture(name),
            label: None,
        };
        let whole = inspect(&job).unwrap();
        let blocks = inspect_in_blocks_above(&job, 0).unwrap();
        let (w, b) = (&whole.x, &blocks.x);
        assert_eq!(
            (w.storage, w.dtype, w.stored, w.kind, w.has_nan),
            (b.storage, b.dtype, b.stored, b.kind, b.has_nan),
            "{name}"
        );
        assert_eq!(
            (w.min, w.max, &w.explanation),
            (b.min, b.max, &b.explanation),
            "{name}"
        );
        assert_eq!((whole.n_obs, whole.n_vars), (blocks.n_obs, blocks.n_vars));
        assert_eq!(
            serde_json::to_value(&whole.obs).unwrap(),
            serde_json::to_value(&blocks.obs).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&whole.labels).unwrap(),
            serde_json::to_value(&blocks.labels).unwrap()
        );
        assert_eq!(whole.uns, blocks.uns, "{name}");
        let shapes = |s: &scllm_pp::inspect::DatasetSummary| -> Vec<(String, [usize; 2])> {
            s.obsm.iter().map(|o| (o.name.clone(), o.shape)).collect()
        };
        assert_eq!(shapes(&whole), shapes(&blocks), "{name}");
        // layers are named, not scanned
        let names = |s: &scllm_pp::inspect::DatasetSummary| -> Vec<String> {
            s.layers.iter().map(|l| l.name.clone()).collect()
        };
        assert_eq!(names(&whole), names(&blocks), "{name}");
    }
}
