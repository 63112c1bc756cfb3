//! `scllm baseline celltypist` against celltypist 1.7.1 itself on real models
//! (tests/fixtures/celltypist, made by tools/make_celltypist_fixture.py): the STCAT T-cell models
//! on 120 T cells (labels, probabilities, scores, confidence, majority voting over celltypist's
//! own over-clustering), CellTypist's 2020 test model against the probability matrix its
//! repository expects, and the inputs that must be refused.

use std::path::{Path, PathBuf};

use scllm_eval::celltypist::model::{CellTypistModel, ModelFormat};
use scllm_eval::celltypist::{
    celltypist, run_celltypist, CellTypistJob, CellTypistOptions, Mode, PROBABILITY_KEY,
};
use scllm_io::{read_h5ad, AnnData, UnsValue};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/celltypist")
}

fn strings(a: &AnnData, col: &str) -> Vec<String> {
    a.obs
        .column(col)
        .unwrap_or_else(|| panic!("no obs column {col}"))
        .to_strings()
        .into_iter()
        .map(|s| s.unwrap())
        .collect()
}

fn dense(a: &AnnData, key: &str) -> (Vec<f64>, usize) {
    let m = a.obsm_get(key).unwrap_or_else(|| panic!("no obsm {key}"));
    (m.to_dense_f64(), m.shape().1)
}

fn uns_strings(a: &AnnData, key: &str) -> Vec<String> {
    match a.uns_get(key) {
        Some(UnsValue::Array(c)) => c.to_strings().into_iter().map(|s| s.unwrap()).collect(),
        other => panic!("uns {key}: {other:?}"),
    }
}

fn run(
    model: &Path,
    query: &mut AnnData,
    opts: &CellTypistOptions,
) -> scllm_eval::celltypist::CellTypistSummary {
    let m = CellTypistModel::load(model).unwrap();
    run_celltypist(&m, model, query, opts).unwrap()
}

#[test]
fn stcat_models_match_celltypist() {
    let expected = read_h5ad(dir().join("tcells_expected.h5ad")).unwrap();
    let p_thres = match expected.uns_get("p_thres") {
        Some(UnsValue::F64(p)) => *p,
        other => panic!("{other:?}"),
    };
    for name in ["T_cell", "cd4", "cd8"] {
        let model = dir().join("models").join(format!("{name}.pkl"));
        for mode in [Mode::BestMatch, Mode::ProbMatch] {
            let mut q = read_h5ad(dir().join("tcells_query.h5ad")).unwrap();
            let opts = CellTypistOptions {
                mode,
                p_thres,
                majority_voting: true,
                over_clustering: Some("celltypist_over_clustering".into()),
                decision: true,
                ..Default::default()
            };
            let s = run(&model, &mut q, &opts);
            assert_eq!(s.model_format, ModelFormat::Dict);
            assert_eq!(
                s.classes,
                uns_strings(&expected, &format!("{name}_classes"))
            );
            let tag = if mode == Mode::BestMatch {
                "best"
            } else {
                "prob"
            };
            assert_eq!(
                strings(&q, "predicted_labels"),
                strings(&expected, &format!("{name}_{tag}")),
                "{name} {tag}"
            );
            assert_eq!(
                strings(&q, "majority_voting"),
                strings(&expected, &format!("{name}_{tag}_mv")),
                "{name} {tag} majority voting"
            );
            assert_eq!(
                strings(&q, "over_clustering"),
                strings(&q, "celltypist_over_clustering")
            );
            let (p, nc) = dense(&q, PROBABILITY_KEY);
            let (pe, nce) = dense(&expected, &format!("{name}_probability"));
            assert_eq!(nc, nce);
            let dp = p
                .iter()
                .zip(&pe)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            eprintln!("{name} {tag}: probabilities within {dp:e}");
            assert!(dp <= 1e-10, "{name}: probabilities differ by {dp:e}");
            let (d, _) = dense(&q, "celltypist_decision");
            let (de, _) = dense(&expected, &format!("{name}_decision"));
            let dd = d
                .iter()
                .zip(&de)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0.0, f64::max);
            assert!(dd <= 1e-10, "{name}: scores differ by {dd:e}");
            let conf = match q.obs.column("conf_score").unwrap() {
                scllm_io::Column::F64(v) => v.clone(),
                other => panic!("{other:?}"),
            };
            let ce = match expected.obs.column(&format!("{name}_conf")).unwrap() {
                scllm_io::Column::F64(v) => v.clone(),
                other => panic!("{other:?}"),
            };
            let dc = conf
                .iter()
                .zip(&ce)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(dc <= 1e-12, "{name}: conf_score differs by {dc:e}");
            // the wu2020 labels are other names than STCAT's: metrics are computed, not good
            assert!(s.metrics.is_some() && s.metrics_majority_voting.is_some());
        }
    }
}

/// The 2020 model's expected matrix, CSV as pandas wrote it: header of class names, then one
/// row per cell.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .skip(1)
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| l.split(',').skip(1).map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn the_2020_model_reproduces_its_expected_probability_matrix() {
    let model = dir().join("models/legacy_immune.pkl.gz");
    let mut q = read_h5ad(dir().join("legacy_query.h5ad")).unwrap();
    let s = run(&model, &mut q, &CellTypistOptions::default());
    assert_eq!(s.model_format, ModelFormat::Bare2020);
    let (classes, rows) = read_csv(&dir().join("legacy_expected_probability_matrix.csv"));
    assert_eq!(s.classes, classes);
    let (p, nc) = dense(&q, PROBABILITY_KEY);
    assert_eq!(rows.len(), q.n_obs());
    let mut worst = 0.0f64;
    for (i, r) in rows.iter().enumerate() {
        for (j, v) in r.iter().enumerate() {
            let e: f64 = v.parse().unwrap();
            worst = worst.max((p[i * nc + j] - e).abs());
        }
    }
    eprintln!("2020 model: expected matrix reproduced within {worst:e}");
    assert!(worst <= 1e-9, "expected matrix reproduced within {worst:e}");
    let (_, labels) = read_csv(&dir().join("legacy_expected_labels.csv"));
    let want: Vec<String> = labels.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(strings(&q, "predicted_labels"), want);
}

#[test]
fn the_computed_over_clustering_votes_within_its_clusters() {
    let model = dir().join("models/T_cell.pkl");
    let mut q = read_h5ad(dir().join("tcells_query.h5ad")).unwrap();
    let opts = CellTypistOptions {
        majority_voting: true,
        ..Default::default()
    };
    let s = run(&model, &mut q, &opts);
    assert!(s
        .over_clustering
        .as_deref()
        .unwrap()
        .starts_with("computed"));
    let clusters = strings(&q, "over_clustering");
    let ours = s.n_over_clusters.unwrap();
    assert!(ours > 3, "{ours} clusters");
    // every cluster carries one label
    let mv = strings(&q, "majority_voting");
    for (c, l) in clusters.iter().zip(&mv) {
        let first = clusters.iter().position(|x| x == c).unwrap();
        assert_eq!(&mv[first], l);
    }
    // close to celltypist's clustering of the same cells (not equal: see over_cluster.rs)
    let theirs = strings(&q, "celltypist_over_clustering");
    let ari = scllm_eval::adjusted_rand_score(&theirs, &clusters).unwrap();
    eprintln!("computed over-clustering: {ours} clusters, ARI {ari:.3} vs celltypist's");
    assert!(ari > 0.2, "ARI {ari}");
}

#[test]
fn bad_models_and_queries_are_refused_by_name() {
    let models = dir().join("models");
    let e = CellTypistModel::load(&models.join("bad_os_system.pkl"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad_os_system.pkl") && e.contains("system`"),
        "{e}"
    );
    let e = CellTypistModel::load(&models.join("bad_svc.pkl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sklearn.svm._classes.SVC"), "{e}");
    // a query sharing no gene with the model
    let mut q = read_h5ad(dir().join("tcells_query.h5ad")).unwrap();
    q.var.index = (0..q.n_vars()).map(|i| format!("ENSG{i:011}")).collect();
    let m = CellTypistModel::load(&models.join("cd8.pkl")).unwrap();
    let e = run_celltypist(
        &m,
        &models.join("cd8.pkl"),
        &mut q,
        &CellTypistOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("shares none of the 2213 genes"), "{e}");
    // a missing over-clustering column
    let mut q = read_h5ad(dir().join("tcells_query.h5ad")).unwrap();
    let opts = CellTypistOptions {
        over_clustering: Some("leiden".into()),
        ..Default::default()
    };
    let e = run_celltypist(&m, &models.join("cd8.pkl"), &mut q, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("obs['leiden']") && e.contains("no such column"),
        "{e}"
    );
}

#[test]
fn the_job_writes_the_annotated_query() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.h5ad");
    let o = celltypist(&CellTypistJob {
        query: dir().join("tcells_query.h5ad"),
        model: dir().join("models/cd8.pkl"),
        output: out.clone(),
        options: CellTypistOptions {
            over_clustering: Some("celltypist_over_clustering".into()),
            ..Default::default()
        },
    })
    .unwrap();
    let a = read_h5ad(&out).unwrap();
    for c in [
        "predicted_labels",
        "over_clustering",
        "majority_voting",
        "conf_score",
    ] {
        assert!(a.obs.column(c).is_some(), "{c}");
    }
    assert_eq!(a.obsm_get(PROBABILITY_KEY).unwrap().shape(), (120, 21));
    assert_eq!(o.summary.n_genes_matched, 1974);
    let j = serde_json::to_value(&o).unwrap();
    assert_eq!(j["mode"], "best match");
}
