//! The file-level jobs of `scllm baseline`, `scllm evaluate` and `scllm umap` on the committed
//! Kang fixtures: what they write, what they report, and what they refuse before reading.

use std::path::{Path, PathBuf};

use scllm_eval::baselines::{baseline, BaselineJob, BaselineOptions, Method};
use scllm_eval::evaluation::{evaluate_file, EvaluateJob, EvaluateOptions};
use scllm_eval::umap_file::{umap_file, UmapJob};
use scllm_eval::Distance;
use scllm_pp::HvgFlavor;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(name)
}

fn knn_job(output: PathBuf) -> BaselineJob {
    let mut options = BaselineOptions::new(Method::Knn, "cell_type");
    options.use_rep = Some("X_pca".into());
    BaselineJob {
        reference: fixture("kang_ref.h5ad"),
        query: fixture("kang_query.h5ad"),
        output,
        options,
    }
}

#[test]
fn baseline_then_evaluate_with_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred.h5ad");
    let b = baseline(&knn_job(pred.clone())).unwrap();
    assert_eq!(b.output, pred.display().to_string());
    assert_eq!(b.summary.n_query, 500);
    let a = scllm_io::read_h5ad(&pred).unwrap();
    assert!(a.obs.column("predicted_cell_type").is_some());
    // the JSON the command prints: the summary's fields plus `output`
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["method"], "knn");
    assert_eq!(v["output"], b.output);

    let plots = tmp.path().join("plots");
    let e = evaluate_file(&EvaluateJob {
        file: pred.clone(),
        options: EvaluateOptions {
            truth: "cell_type".into(),
            pred: Some("predicted_cell_type".into()),
            embedding: Some("X_pca".into()),
            distances: vec![Distance::Euclidean],
            cluster: None,
            silhouette_max_cells: 20_000,
            seed: 0,
        },
        plots: Some(plots.clone()),
        progress: false,
    })
    .unwrap();
    let acc = e.report.classification.as_ref().unwrap().accuracy;
    assert!(acc > 0.8, "kNN on the held-out donor: accuracy {acc}");
    assert_eq!(e.report.silhouette.len(), 1);
    let written = e.plots.as_ref().unwrap();
    assert_eq!(written.len(), 6, "{written:?}");
    for f in [
        "confusion.png",
        "confusion.svg",
        "per_class_f1.png",
        "umap.svg",
    ] {
        assert!(
            std::fs::metadata(plots.join(f)).unwrap().len() > 1000,
            "{f}"
        );
    }
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["plots"].as_array().unwrap().len(), 6);
    assert!(v["classification"]["accuracy"].is_number());

    // no pictures asked for: none written, no `plots` key
    let e = evaluate_file(&EvaluateJob {
        file: pred,
        options: EvaluateOptions {
            truth: "cell_type".into(),
            pred: Some("predicted_cell_type".into()),
            embedding: None,
            distances: vec![],
            cluster: None,
            silhouette_max_cells: 20_000,
            seed: 0,
        },
        plots: None,
        progress: false,
    })
    .unwrap();
    assert!(e.plots.is_none());
    assert!(serde_json::to_value(&e).unwrap().get("plots").is_none());
}

#[test]
fn baseline_refuses_options_that_cannot_work_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.h5ad");
    let mut job = knn_job(out.clone());
    job.reference = PathBuf::from("/no/such/reference.h5ad");
    job.options.hvg_flavor = HvgFlavor::SeuratV3;
    let e = baseline(&job).unwrap_err().to_string();
    assert!(e.contains("seurat_v3 needs counts"), "{e}");
    job.options.hvg_flavor = HvgFlavor::Seurat;
    job.options.k = 0;
    let e = baseline(&job).unwrap_err().to_string();
    assert!(e.contains("--k must be at least 1"), "{e}");
    let mut job = knn_job(out.clone());
    job.options.label = "celltype".into();
    let e = baseline(&job).unwrap_err().to_string();
    assert!(e.contains("celltype"), "{e}");
    assert!(!out.exists());
}

#[test]
fn umap_of_an_embedding_and_of_pca_of_the_log_data() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("u.png");
    let out = tmp.path().join("u.h5ad");
    let s = umap_file(&UmapJob {
        use_rep: Some("X_pca".into()),
        color: vec!["cell_type".into()],
        plot: Some(png.clone()),
        output: Some(out.clone()),
        progress: false,
        ..UmapJob::new(fixture("kang_query.h5ad"))
    })
    .unwrap();
    assert_eq!((s.cells, s.dims), (500, 30));
    assert_eq!(s.representation, "obsm['X_pca']");
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let a = scllm_io::read_h5ad(&out).unwrap();
    assert_eq!(a.obsm_get("X_umap").unwrap().shape(), (500, 2));

    // no embedding: PCA of log1p(CP10k) X
    let s = umap_file(&UmapJob {
        output: Some(tmp.path().join("pca.h5ad")),
        progress: false,
        ..UmapJob::new(fixture("kang_query.h5ad"))
    })
    .unwrap();
    assert!(
        s.representation.starts_with("PCA ("),
        "{}",
        s.representation
    );
    assert_eq!(s.plot, None);

    // refused before reading: nothing to write, a picture without colours
    let e = umap_file(&UmapJob::new(PathBuf::from("/no/such.h5ad"))).unwrap_err();
    assert!(e.to_string().contains("nothing to write"), "{e}");
    let e = umap_file(&UmapJob {
        plot: Some(png.clone()),
        ..UmapJob::new(PathBuf::from("/no/such.h5ad"))
    })
    .unwrap_err();
    assert!(e.to_string().contains("--plot needs --color"), "{e}");
    // a colour column that does not exist: the columns listed
    let bad = tmp.path().join("bad.png");
    let e = umap_file(&UmapJob {
        color: vec!["celltype".into()],
        plot: Some(bad.clone()),
        ..UmapJob::new(fixture("kang_query.h5ad"))
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("celltype") && e.to_string().contains("cell_type"),
        "{e}"
    );
    assert!(!bad.exists());
}
