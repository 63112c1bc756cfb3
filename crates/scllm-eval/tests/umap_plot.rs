//! UMAP quality against umap-learn (tests/fixtures/eval/umap_reference.json, written by
//! tools/make_umap_fixture.py) and the pictures.

use std::path::{Path, PathBuf};

use scllm_eval::metrics::{classification_report, silhouette_score, Distance};
use scllm_eval::plot::{
    plot_confusion, plot_confusion_report, plot_embedding, plot_embedding_pair,
    plot_learning_curves, plot_per_class_f1_report, EpochRecord, ScatterOptions,
};
use scllm_eval::umap::{flatten, knn_preservation, trustworthiness, umap, UmapOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(name)
}

/// `obsm['X_pca']` (float32) and `obs['cell_type']` of the committed reference fixture.
fn kang_pca() -> (Vec<f32>, usize, usize, Vec<String>) {
    let a = scllm_io::read_h5ad(fixture("kang_ref.h5ad")).unwrap();
    let m = a.obsm_get("X_pca").unwrap();
    let (n, d) = m.shape();
    let x: Vec<f32> = m.to_dense_f64().iter().map(|&v| v as f32).collect();
    let labels = a
        .obs_column("cell_type")
        .unwrap()
        .to_strings()
        .into_iter()
        .map(|s| s.unwrap())
        .collect();
    (x, n, d, labels)
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("umap_reference.json")).unwrap()).unwrap()
}

fn silhouette_2d(y: &[f32], labels: &[String]) -> f64 {
    let yf: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    silhouette_score(&yf, 2, labels, Distance::Euclidean).unwrap()
}

#[test]
fn scores_match_sklearn_on_umap_learns_embedding() {
    let (x, n, d, labels) = kang_pca();
    let r = reference();
    assert_eq!(r["n"].as_u64().unwrap() as usize, n);
    assert_eq!(r["d"].as_u64().unwrap() as usize, d);
    let y: Vec<f32> = r["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let s = &r["scores"];
    let t = trustworthiness(&x, n, d, &y, 2, 15).unwrap();
    let want = s["trustworthiness"].as_f64().unwrap();
    assert!(
        (t - want).abs() < 1e-9,
        "trustworthiness {t} vs sklearn {want}"
    );
    let kp = knn_preservation(&x, n, d, &y, 2, 15).unwrap();
    let want = s["knn_preservation"].as_f64().unwrap();
    assert!((kp - want).abs() < 1e-9, "kNN preservation {kp} vs {want}");
    let sil = silhouette_2d(&y, &labels);
    let want = s["silhouette"].as_f64().unwrap();
    assert!(
        (sil - want).abs() < 1e-5,
        "silhouette {sil} vs sklearn {want}"
    );
}

#[test]
fn umap_is_as_good_as_umap_learn() {
    let (x, n, d, labels) = kang_pca();
    let r = reference();
    let s = &r["scores"];
    let t0 = std::time::Instant::now();
    let y = umap(&x, n, d, &UmapOptions::default()).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let yf = flatten(&y);
    let t = trustworthiness(&x, n, d, &yf, 2, 15).unwrap();
    let kp = knn_preservation(&x, n, d, &yf, 2, 15).unwrap();
    let sil = silhouette_2d(&yf, &labels);
    let (rt, rk, rs) = (
        s["trustworthiness"].as_f64().unwrap(),
        s["knn_preservation"].as_f64().unwrap(),
        s["silhouette"].as_f64().unwrap(),
    );
    eprintln!(
        "scllm UMAP ({n} cells, {secs:.2} s): trustworthiness {t:.4} (umap-learn {rt:.4}), \
         kNN preservation {kp:.4} (umap-learn {rk:.4}), silhouette {sil:.4} (umap-learn {rs:.4})"
    );
    assert!(
        t >= rt - 0.02,
        "trustworthiness {t} < umap-learn {rt} - 0.02"
    );
    assert!(
        kp >= rk - 0.05,
        "kNN preservation {kp} < umap-learn {rk} - 0.05"
    );
    assert!(sil > 0.0, "cell types do not separate (silhouette {sil})");
}

// ---------------------------------------------------------------------------------------------
// pictures

/// Width and height of a PNG after checking its signature and header chunk.
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert!(
        b.len() > 1000,
        "{} is too small ({} bytes)",
        p.display(),
        b.len()
    );
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    // decodes fully
    let dec = png::Decoder::new(std::io::Cursor::new(b));
    let mut rd = dec.read_info().unwrap();
    let mut buf = vec![0; rd.output_buffer_size().unwrap()];
    rd.next_frame(&mut buf).unwrap();
    // not blank: some dark pixels (text, axes)
    assert!(
        buf.iter().filter(|&&v| v < 80).count() > 200,
        "PNG looks blank"
    );
    (w, h)
}

fn svg_text(p: &Path, must: &[&str]) {
    let s = std::fs::read_to_string(p).unwrap();
    assert!(s.contains("<svg"), "not an SVG");
    for m in must {
        let esc = m
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(s.contains(m) || s.contains(&esc), "SVG lacks text {m:?}");
    }
}

fn toy() -> (Vec<[f32; 2]>, Vec<String>, Vec<String>) {
    let names = ["CD4 T cells", "B cells", "CD14+ Monocytes", "NK cells"];
    let mut rng = scllm_eval::Rng::new(3);
    let mut coords = Vec::new();
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    for i in 0..400 {
        let c = i % 4;
        coords.push([
            (c as f64 * 5.0 + rng.normal()) as f32,
            ((c % 2) as f64 * 4.0 + rng.normal()) as f32,
        ]);
        truth.push(names[c].to_string());
        pred.push(names[if i % 10 == 0 { (c + 1) % 4 } else { c }].to_string());
    }
    (coords, truth, pred)
}

#[test]
fn embedding_plots_write_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (coords, truth, pred) = toy();
    let o = ScatterOptions::default();
    let png = dir.path().join("umap.png");
    plot_embedding(&png, &coords, &truth, "UMAP: cell type", &o).unwrap();
    let (w, h) = png_size(&png);
    assert!(w >= 800 && h >= 600, "{w}x{h}");
    let svg = dir.path().join("umap.svg");
    plot_embedding(&svg, &coords, &truth, "UMAP: cell type", &o).unwrap();
    svg_text(
        &svg,
        &[
            "UMAP: cell type",
            "CD4 T cells",
            "CD14+ Monocytes",
            "NK cells",
        ],
    );
    let pair = dir.path().join("pair.svg");
    plot_embedding_pair(&pair, &coords, &truth, &pred, "truth vs prediction", &o).unwrap();
    svg_text(&pair, &["truth", "prediction", "B cells"]);
    png_size(&{
        let p = dir.path().join("pair.png");
        plot_embedding_pair(&p, &coords, &truth, &pred, "truth vs prediction", &o).unwrap();
        p
    });
    // no temporary files left behind
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty());
}

#[test]
fn many_categories_get_distinct_colours() {
    let p = scllm_eval::plot::palette(30);
    for i in 0..30 {
        for j in 0..i {
            assert_ne!(p[i], p[j], "colours {i} and {j} are equal");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let coords: Vec<[f32; 2]> = (0..3000)
        .map(|i| [(i % 97) as f32, (i / 97) as f32])
        .collect();
    let labels: Vec<String> = (0..3000).map(|i| format!("type {}", i % 45)).collect();
    let path = dir.path().join("many.png");
    plot_embedding(
        &path,
        &coords,
        &labels,
        "45 types",
        &ScatterOptions::default(),
    )
    .unwrap();
    png_size(&path);
}

#[test]
fn confusion_and_f1_plots_write_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (_, truth, pred) = toy();
    let rep = classification_report(&truth, &pred).unwrap();
    for ext in ["png", "svg"] {
        let p = dir.path().join(format!("cm.{ext}"));
        plot_confusion_report(&p, &rep, "Confusion matrix").unwrap();
        let q = dir.path().join(format!("f1.{ext}"));
        plot_per_class_f1_report(&q, &rep, "Per-class F1").unwrap();
        if ext == "png" {
            png_size(&p);
            png_size(&q);
        } else {
            svg_text(
                &p,
                &["Confusion matrix", "CD14+ Monocytes", "NK cells", "0.80"],
            );
            svg_text(&q, &["Per-class F1", "B cells", "n=100"]);
        }
    }
    // more than 15 classes: no values written, still a picture
    let names: Vec<String> = (0..20).map(|i| format!("class {i}")).collect();
    let cm: Vec<Vec<u64>> = (0..20)
        .map(|i| {
            (0..20)
                .map(|j| if i == j { 9 } else { (i + j) as u64 % 3 })
                .collect()
        })
        .collect();
    let p = dir.path().join("cm20.png");
    plot_confusion(&p, &names, &cm, "20 classes").unwrap();
    png_size(&p);
}

#[test]
fn learning_curves_from_jsonl() {
    let rec =
        |epoch: Option<f64>, tl: f64, vl: Option<f64>, ta: f64, va: Option<f64>| EpochRecord {
            epoch,
            train_loss: Some(tl),
            val_loss: vl,
            train_acc: Some(ta),
            val_acc: va,
            val_macro_f1: None,
        };
    let mut recs = vec![
        rec(Some(1.0), 1.9, Some(1.7), 0.41, None),
        rec(Some(2.0), 1.2, Some(1.1), 0.62, Some(0.6)),
        rec(Some(3.0), 0.8, None, 0.75, Some(0.7)),
        EpochRecord {
            train_loss: Some(0.6),
            ..Default::default()
        },
    ];
    recs[1].val_macro_f1 = Some(0.5);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("curves.png");
    plot_learning_curves(&p, &recs, "Fine-tuning").unwrap();
    assert_eq!(png_size(&p), (1200, 520));
    let s = dir.path().join("curves.svg");
    plot_learning_curves(&s, &recs, "Fine-tuning").unwrap();
    svg_text(
        &s,
        &[
            "Fine-tuning",
            "loss",
            "accuracy",
            "validation macro F1",
            "epoch",
        ],
    );
    // only losses: the accuracy panel says so
    let recs = vec![EpochRecord {
        epoch: Some(1.0),
        train_loss: Some(2.0),
        ..Default::default()
    }];
    plot_learning_curves(&s, &recs, "losses only").unwrap();
    svg_text(&s, &["accuracy: not in the log"]);
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (coords, truth, _) = toy();
    let o = ScatterOptions::default();
    let e = plot_embedding(dir.path().join("x.jpg"), &coords, &truth, "t", &o).unwrap_err();
    assert!(e.to_string().contains(".png or .svg"), "{e}");
    let none: Vec<String> = vec![];
    let e = plot_embedding(dir.path().join("x.png"), &[], &none, "t", &o).unwrap_err();
    assert!(e.to_string().contains("nothing to plot"), "{e}");
    let e = plot_embedding(dir.path().join("x.png"), &coords, &truth[..3], "t", &o).unwrap_err();
    assert!(e.to_string().contains("labels for"), "{e}");
    let e = plot_confusion(dir.path().join("x.svg"), &[], &[], "t").unwrap_err();
    assert!(e.to_string().contains("nothing to plot"), "{e}");
    let e = plot_learning_curves(dir.path().join("x.svg"), &[], "t").unwrap_err();
    assert!(e.to_string().contains("nothing to plot"), "{e}");
    let e = plot_embedding(
        dir.path().join("no/such/dir/x.png"),
        &coords,
        &truth,
        "t",
        &o,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn obsm_in_and_out() {
    let a = scllm_io::read_h5ad(fixture("kang_query.h5ad")).unwrap();
    let (x, n, d) = scllm_eval::umap::obsm_f32(&a, "X_pca").unwrap();
    assert_eq!((n, d, x.len()), (500, 30, 500 * 30));
    let e = scllm_eval::umap::obsm_f32(&a, "X_scgpt").unwrap_err();
    assert!(e.to_string().contains("X_pca"), "{e}");
    let layout = umap(&x, n, d, &UmapOptions::default()).unwrap();
    let m = scllm_eval::umap::layout_matrix(&layout);
    assert_eq!(m.shape(), (500, 2));
}

#[test]
fn plot_lines_writes_a_step_chart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("loss.png");
    let gep: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 10.0 / (1.0 + s as f64)))
        .collect();
    scllm_eval::plot::plot_lines(
        &p,
        "pretraining",
        "step",
        "masked MSE",
        &[("GEP".into(), gep)],
    )
    .unwrap();
    let b = std::fs::read(&p).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    assert!(scllm_eval::plot::plot_lines(&p, "t", "x", "y", &[("a".into(), vec![])]).is_err());
}
