//! Render every evaluation picture from the committed eval fixture, to look at them:
//!
//!   cargo run --release -p scllm-eval --example render_eval_plots -- OUT_DIR [TRAIN_LOG.jsonl]
//!
//! kNN label transfer (k=15, cosine) from kang_ref to kang_query on their `X_pca`, then:
//! UMAP of the query coloured by cell type, truth vs prediction side by side, the confusion
//! matrix, per-class F1, and learning curves of TRAIN_LOG (default: the small illustrative log
//! tests/fixtures/eval/train_log_example.jsonl), and the reference's UMAP coloured by cell type x
//! donor (~50 categories: palette and legend columns). PNG and SVG of each.
use std::path::{Path, PathBuf};
use std::time::Instant;

use scllm_eval::encode_labels;
use scllm_eval::knn::{kneighbors, vote, Vote};
use scllm_eval::metrics::{classification_report, Distance};
use scllm_eval::plot::{
    plot_confusion_report, plot_embedding, plot_embedding_pair, plot_learning_curves,
    plot_per_class_f1_report, EpochRecord, ScatterOptions,
};
use scllm_eval::umap::{umap, UmapOptions};

fn load(p: &Path) -> (Vec<f32>, usize, usize, Vec<String>) {
    let a = scllm_io::read_h5ad(p).unwrap();
    let m = a.obsm_get("X_pca").unwrap();
    let (n, d) = m.shape();
    let x = m.to_dense_f64().iter().map(|&v| v as f32).collect();
    let l = a
        .obs_column("cell_type")
        .unwrap()
        .to_strings()
        .into_iter()
        .map(|s| s.unwrap_or_else(|| "nan".into()))
        .collect();
    (x, n, d, l)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("eval_plots"));
    std::fs::create_dir_all(&out).unwrap();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval");
    let log = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| fx.join("train_log_example.jsonl"));
    let (xr, nr, d, lr) = load(&fx.join("kang_ref.h5ad"));
    let (xq, nq, _, lq) = load(&fx.join("kang_query.h5ad"));
    let (classes, codes) = encode_labels(&lr);
    let (idx, dist) = kneighbors(&xr, &xq, d, 15, Distance::Cosine, &|_| {});
    let (pc, _) = vote(&idx, &dist, 15, &codes, classes.len(), Vote::Majority);
    let pred: Vec<&str> = pc.iter().map(|&c| classes[c as usize].as_str()).collect();
    let rep = classification_report(&lq, &pred).unwrap();
    println!(
        "kNN transfer: accuracy {:.3}, macro F1 {:.3}",
        rep.accuracy, rep.f1_macro
    );
    let t = Instant::now();
    let y = umap(
        &xq,
        nq,
        d,
        &UmapOptions {
            progress: true,
            ..Default::default()
        },
    )
    .unwrap();
    println!("UMAP of {nq} cells: {:.2} s", t.elapsed().as_secs_f64());
    // the trainer's JSONL log (scllm-train reads it with `read_train_log`; parsed inline here so
    // this example does not depend on the training crate)
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
    let recs: Vec<EpochRecord> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            EpochRecord {
                epoch: num(&v, "epoch"),
                train_loss: num(&v, "train_loss"),
                val_loss: num(&v, "val_loss"),
                train_acc: num(&v, "train_acc"),
                val_acc: num(&v, "val_acc"),
                val_macro_f1: num(&v, "val_macro_f1"),
            }
        })
        .collect();
    // many categories (cell type x donor, ~50) on the reference, to check palette and legend
    let a = scllm_io::read_h5ad(fx.join("kang_ref.h5ad")).unwrap();
    let donors = a.obs_column("donor").unwrap().to_strings();
    let combo: Vec<String> = lr
        .iter()
        .zip(&donors)
        .map(|(c, d)| format!("{c} · {}", d.as_deref().unwrap_or("nan")))
        .collect();
    let yr = umap(&xr, nr, d, &UmapOptions::default()).unwrap();
    let o = ScatterOptions {
        categories: Some(rep.labels.clone()),
        ..Default::default()
    };
    for ext in ["png", "svg"] {
        let f = |n: &str| out.join(format!("{n}.{ext}"));
        plot_embedding(
            f("umap_cell_type"),
            &y,
            &lq,
            "Kang 2018 query (donor 101): cell type",
            &o,
        )
        .unwrap();
        plot_embedding(
            f("umap_prediction"),
            &y,
            &pred,
            "kNN label transfer: prediction",
            &o,
        )
        .unwrap();
        plot_embedding_pair(
            f("umap_truth_vs_prediction"),
            &y,
            &lq,
            &pred,
            "Kang 2018 query: kNN label transfer",
            &o,
        )
        .unwrap();
        plot_confusion_report(
            f("confusion"),
            &rep,
            "kNN label transfer: confusion (row-normalised)",
        )
        .unwrap();
        plot_per_class_f1_report(f("per_class_f1"), &rep, "kNN label transfer: per-class F1")
            .unwrap();
        plot_learning_curves(f("learning_curves"), &recs, "Learning curves").unwrap();
        plot_embedding(
            f("umap_many_categories"),
            &yr,
            &combo,
            "Kang 2018 reference: cell type x donor",
            &ScatterOptions::default(),
        )
        .unwrap();
    }
    println!("wrote {}", out.display());
}
