//! Parity with scikit-learn on committed fixtures (tools/make_eval_fixtures.py writes the inputs
//! and sklearn's own outputs), baseline accuracy on a leave-donor-out split, and bad input.

use std::path::PathBuf;

use scllm_eval::baselines::{run_baseline, BaselineOptions, Method};
use scllm_eval::evaluation::{evaluate, EvaluateOptions};
use scllm_eval::knn::Vote;
use scllm_eval::logreg::{fit, Design, SolverOptions};
use scllm_eval::{
    adjusted_rand_score, classification_report, encode_labels, normalized_mutual_info_score,
    silhouette_score, Distance, EvalError,
};
use scllm_io::{read_h5ad, AnnData, Column, UnsValue};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: scllm {a} vs sklearn {b}");
}

#[test]
fn classification_metrics_equal_sklearn() {
    let fx = json("metrics_parity.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let t = strings(&case["truth"]);
        let p = strings(&case["pred"]);
        let r = classification_report(&t, &p).unwrap();
        assert_eq!(r.labels, strings(&case["labels"]), "{name}: labels");
        for key in [
            "accuracy",
            "balanced_accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "precision_weighted",
            "recall_weighted",
            "f1_weighted",
        ] {
            let ours = serde_json::to_value(&r).unwrap()[key].as_f64().unwrap();
            close(
                ours,
                case[key].as_f64().unwrap(),
                1e-12,
                &format!("{name}: {key}"),
            );
        }
        let pc = &case["per_class"];
        for (i, row) in r.per_class.iter().enumerate() {
            close(
                row.precision,
                f64s(&pc["precision"])[i],
                1e-12,
                &format!("{name}: precision {}", row.label),
            );
            close(
                row.recall,
                f64s(&pc["recall"])[i],
                1e-12,
                &format!("{name}: recall {}", row.label),
            );
            close(
                row.f1,
                f64s(&pc["f1"])[i],
                1e-12,
                &format!("{name}: f1 {}", row.label),
            );
            assert_eq!(
                row.support as f64,
                f64s(&pc["support"])[i],
                "{name}: support"
            );
        }
        let cm: Vec<Vec<u64>> = case["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(r.confusion, cm, "{name}: confusion matrix");
    }
}

#[test]
fn ari_and_nmi_equal_sklearn() {
    let fx = json("metrics_parity.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let t = strings(&case["truth"]);
        let p = strings(&case["pred"]);
        close(
            adjusted_rand_score(&t, &p).unwrap(),
            case["ari"].as_f64().unwrap(),
            1e-12,
            &format!("{name}: ARI"),
        );
        close(
            normalized_mutual_info_score(&t, &p).unwrap(),
            case["nmi"].as_f64().unwrap(),
            1e-12,
            &format!("{name}: NMI"),
        );
    }
}

#[test]
fn silhouette_equals_sklearn_euclidean_and_cosine() {
    let fx = json("metrics_parity.json");
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let Some(emb) = case.get("embedding") else {
            continue;
        };
        let name = case["name"].as_str().unwrap();
        let x: Vec<f64> = emb.as_array().unwrap().iter().flat_map(f64s).collect();
        let d = case["dim"].as_u64().unwrap() as usize;
        let t = strings(&case["truth"]);
        let e = silhouette_score(&x, d, &t, Distance::Euclidean).unwrap();
        let c = silhouette_score(&x, d, &t, Distance::Cosine).unwrap();
        close(
            e,
            case["silhouette_euclidean"].as_f64().unwrap(),
            1e-10,
            &format!("{name}: euclidean"),
        );
        close(
            c,
            case["silhouette_cosine"].as_f64().unwrap(),
            1e-10,
            &format!("{name}: cosine"),
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

fn load_split() -> (AnnData, AnnData, Value) {
    (
        read_h5ad(fixture("kang_ref.h5ad")).unwrap(),
        read_h5ad(fixture("kang_query.h5ad")).unwrap(),
        json("kang_split_sklearn.json"),
    )
}

fn accuracy(q: &AnnData, col: &str) -> f64 {
    let t = q.obs.column("cell_type").unwrap().to_strings();
    let p = q.obs.column(col).unwrap().to_strings();
    t.iter().zip(&p).filter(|(a, b)| a == b).count() as f64 / t.len() as f64
}

fn l1_objective(
    m: &scllm_eval::logreg::LogReg,
    x: &scllm_io::Compressed,
    codes: &[u32],
    c: f64,
) -> f64 {
    let dec = m.decision(x);
    let mut obj = 0.0;
    for (k, w) in m.coef.iter().enumerate() {
        obj += w.iter().map(|v| v.abs()).sum::<f64>();
        for (i, dv) in dec.iter().enumerate() {
            let yy = if codes[i] == k as u32 { 1.0 } else { -1.0 };
            let z = -yy * dv[k];
            obj += c * if z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
        }
    }
    obj
}

/// The solver answers liblinear's problem. Solved tightly (tol 1e-8) on both sides, the
/// objectives (sum over the one-vs-rest problems of ‖w‖₁ + C·logistic loss) agree within 0.1%;
/// at scikit-learn's default tol (1e-4, where neither solver has reached the optimum at large C)
/// query accuracy is within one point at every C.
#[test]
fn logreg_matches_liblinear_objective_and_accuracy_per_c() {
    let (r, q, sk) = load_split();
    let rl = scllm_eval::anndata_input::log_normalized(&r, None).unwrap();
    let ql = scllm_eval::anndata_input::log_normalized(&q, None).unwrap();
    let y = r.obs.column("cell_type").unwrap().to_strings();
    let y: Vec<String> = y.into_iter().map(|s| s.unwrap()).collect();
    let (classes, codes) = encode_labels(&y);
    let yq: Vec<String> = q
        .obs
        .column("cell_type")
        .unwrap()
        .to_strings()
        .into_iter()
        .map(|s| s.unwrap())
        .collect();
    let d = Design::new(&rl.x);
    let mask = vec![true; codes.len()];
    let tight = SolverOptions {
        tol: 1e-8,
        max_iter: 1000,
        ..SolverOptions::default()
    };
    for point in sk["logreg"].as_array().unwrap() {
        let c = point["C"].as_f64().unwrap();
        let m = fit(
            &d,
            &codes,
            classes.len(),
            &mask,
            c,
            None,
            &SolverOptions::default(),
        );
        let obj = l1_objective(&m, &rl.x, &codes, c);
        let mt = fit(&d, &codes, classes.len(), &mask, c, None, &tight);
        let objt = l1_objective(&mt, &rl.x, &codes, c);
        let (sko, skt) = (
            point["objective"].as_f64().unwrap(),
            point["objective_tight"].as_f64().unwrap(),
        );
        eprintln!(
            "C={c}: objective {obj:.4} (liblinear {sko:.4}); tight {objt:.4} (liblinear {skt:.4}); nonzero genes {} (liblinear {})",
            m.nonzero_genes(),
            point["nonzero_genes"]
        );
        assert!(
            (objt - skt).abs() / skt < 1e-3,
            "C={c}: tight objective {objt} vs liblinear {skt}"
        );
        let (pred, _) = m.predict(&ql.x, classes.len());
        let acc = pred
            .iter()
            .zip(&yq)
            .filter(|(p, t)| classes[**p as usize] == **t)
            .count() as f64
            / yq.len() as f64;
        let ska = point["accuracy"].as_f64().unwrap();
        eprintln!("C={c}: query accuracy {acc} (sklearn {ska})");
        assert!(
            (acc - ska).abs() <= 0.01,
            "C={c}: accuracy {acc} vs sklearn {ska}"
        );
    }
}

#[test]
fn logreg_baseline_with_cv_is_within_one_point_of_sklearn_gridsearch() {
    let (r, mut q, sk) = load_split();
    let s = run_baseline(
        &r,
        &mut q,
        &BaselineOptions::new(Method::Logreg, "cell_type"),
    )
    .unwrap();
    let acc = accuracy(&q, "predicted_cell_type");
    let ska = sk["cv_best_query_accuracy"].as_f64().unwrap();
    eprintln!(
        "logreg: chosen C {} (sklearn {}), query accuracy {acc} (sklearn {ska}), cv {:?}",
        s.params["C"],
        sk["cv_best_C"],
        s.cv.iter().map(|p| p.mean_accuracy).collect::<Vec<_>>()
    );
    assert!((acc - ska).abs() <= 0.01, "accuracy {acc} vs sklearn {ska}");
    assert_eq!(s.metrics.as_ref().unwrap().accuracy, acc);
}

#[test]
fn knn_on_an_embedding_predicts_as_sklearn() {
    let (r, q0, sk) = load_split();
    for (vote, key) in [
        (Vote::Majority, "knn_uniform_pred"),
        (Vote::Distance, "knn_distance_pred"),
    ] {
        let mut q = q0.clone();
        let mut o = BaselineOptions::new(Method::Knn, "cell_type");
        o.use_rep = Some("X_pca".into());
        o.vote = vote;
        run_baseline(&r, &mut q, &o).unwrap();
        let ours = q.obs.column("predicted_cell_type").unwrap().to_strings();
        let theirs = strings(&sk[key]);
        let agree = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a.as_deref() == Some(b.as_str()))
            .count();
        // exact up to float32-vs-float64 ties among near-equidistant neighbours
        assert!(
            agree as f64 >= 0.99 * theirs.len() as f64,
            "{key}: {agree}/{} agree",
            theirs.len()
        );
    }
}

#[test]
fn knn_on_own_pca_is_within_two_points_of_sklearn_pca_knn() {
    let (r, mut q, sk) = load_split();
    let mut o = BaselineOptions::new(Method::Knn, "cell_type");
    o.n_pcs = 30;
    run_baseline(&r, &mut q, &o).unwrap();
    let acc = accuracy(&q, "predicted_cell_type");
    let ska = sk["knn_uniform_accuracy"].as_f64().unwrap();
    eprintln!("knn on own PCA: {acc} (sklearn PCA + kNN: {ska})");
    assert!((acc - ska).abs() <= 0.02, "{acc} vs {ska}");
}

#[test]
fn correlation_baseline_annotates_the_held_out_donor() {
    let (r, mut q, _) = load_split();
    let s = run_baseline(
        &r,
        &mut q,
        &BaselineOptions::new(Method::Correlation, "cell_type"),
    )
    .unwrap();
    let acc = accuracy(&q, "predicted_cell_type");
    eprintln!("correlation: accuracy {acc}, {} marker genes", s.n_genes);
    assert!(acc >= 0.85, "accuracy {acc}");
    assert!(s.n_genes > 50 && s.n_genes < 1287);
}

#[test]
fn baseline_output_round_trips_with_columns_and_parameters() {
    let (r, mut q, _) = load_split();
    let mut o = BaselineOptions::new(Method::Logreg, "cell_type");
    o.c = Some(0.1);
    o.unknown_below = Some(0.9);
    let s = run_baseline(&r, &mut q, &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.h5ad");
    scllm_io::write_h5ad(&q, &out, scllm_io::Compression::None).unwrap();
    let back = read_h5ad(&out).unwrap();
    let pred = back.obs.column("predicted_cell_type").unwrap();
    assert!(matches!(pred, Column::Categorical { .. }), "categorical");
    let Column::F32(conf) = back.obs.column("prediction_confidence").unwrap() else {
        panic!("prediction_confidence must be float32")
    };
    let labels = pred.to_strings();
    let mut unknown = 0;
    for (l, &c) in labels.iter().zip(conf) {
        if l.as_deref() == Some("Unknown") {
            unknown += 1;
            assert!(c < 0.9);
        } else {
            assert!(c >= 0.9);
        }
    }
    assert!(unknown > 0 && unknown == s.n_unknown);
    let Some(UnsValue::Dict(d)) = back.uns_get("scllm_baseline") else {
        panic!("uns")
    };
    let get = |k: &str| d.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("method"), Some(UnsValue::Str("logreg".into())));
    assert_eq!(get("C"), Some(UnsValue::F64(0.1)));
    assert!(matches!(get("genes"), Some(UnsValue::Array(Column::Str(g))) if g.len() == 1287));
}

// ---- bad input

fn err_text(e: EvalError) -> String {
    e.to_string()
}

#[test]
fn missing_label_column_names_the_file_and_the_columns() {
    let (r, mut q, _) = load_split();
    let e = err_text(
        run_baseline(
            &r,
            &mut q,
            &BaselineOptions::new(Method::Logreg, "celltype"),
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("kang_ref.h5ad") && e.contains("obs['celltype']") && e.contains("cell_type"),
        "{e}"
    );
}

#[test]
fn scaled_input_is_refused_with_the_fix() {
    let (mut r, mut q, _) = load_split();
    let x = r.x().unwrap().to_dense_f64();
    let (n, g) = r.x().unwrap().shape();
    r.x = Some(scllm_io::Matrix::Dense {
        nrows: n,
        ncols: g,
        data: scllm_io::Values::F64(x.iter().map(|v| v - 1.0).collect()),
    });
    let e = err_text(
        run_baseline(&r, &mut q, &BaselineOptions::new(Method::Knn, "cell_type")).unwrap_err(),
    );
    assert!(e.contains("scaled") && e.contains("--layer counts"), "{e}");
}

#[test]
fn disjoint_genes_are_refused() {
    let (r, mut q, _) = load_split();
    q.var
        .index
        .iter_mut()
        .for_each(|g| g.insert_str(0, "ENSG_"));
    let e = err_text(
        run_baseline(
            &r,
            &mut q,
            &BaselineOptions::new(Method::Correlation, "cell_type"),
        )
        .unwrap_err(),
    );
    assert!(e.contains("shares none") && e.contains("var.index"), "{e}");
}

#[test]
fn a_single_class_reference_is_refused() {
    let (mut r, mut q, _) = load_split();
    r.obs.set(
        "one",
        Column::categorical_from(&vec![Some("T".to_string()); r.n_obs()]),
    );
    let e = err_text(
        run_baseline(&r, &mut q, &BaselineOptions::new(Method::Logreg, "one")).unwrap_err(),
    );
    assert!(e.contains("at least 2"), "{e}");
}

#[test]
fn knn_on_a_missing_embedding_lists_obsm_keys() {
    let (r, mut q, _) = load_split();
    let mut o = BaselineOptions::new(Method::Knn, "cell_type");
    o.use_rep = Some("X_scgpt".into());
    let e = err_text(run_baseline(&r, &mut q, &o).unwrap_err());
    assert!(e.contains("obsm['X_scgpt']") && e.contains("X_pca"), "{e}");
}

#[test]
fn evaluate_scores_predictions_embedding_and_clusters_skipping_unlabeled() {
    let (_, mut q, _) = load_split();
    let mut t = q.obs.column("cell_type").unwrap().to_strings();
    t[0] = None; // an unlabeled cell is left out
    let pred: Vec<Option<String>> = t
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i % 10 == 1 {
                Some("Unknown".into())
            } else {
                l.clone()
            }
        })
        .collect();
    q.obs.set("truth", Column::categorical_from(&t));
    q.obs.set("pred", Column::categorical_from(&pred));
    let o = EvaluateOptions {
        truth: "truth".into(),
        pred: Some("pred".into()),
        embedding: Some("X_pca".into()),
        distances: vec![Distance::Euclidean, Distance::Cosine],
        cluster: Some("pred".into()),
        silhouette_max_cells: 100_000,
        seed: 0,
    };
    let rep = evaluate(&q, &o).unwrap();
    assert_eq!(rep.n_scored, 499);
    assert_eq!(rep.n_unlabeled_skipped, 1);
    assert_eq!(rep.n_unknown, 50);
    assert_eq!(rep.accuracy_on_accepted, Some(1.0));
    close(
        rep.classification.unwrap().accuracy,
        449.0 / 499.0,
        1e-12,
        "accuracy",
    );
    assert_eq!(rep.silhouette.len(), 2);
    assert!(rep.ari.unwrap() > 0.5 && rep.ari.unwrap() < 1.0);
}

#[test]
fn evaluate_with_nothing_to_compute_says_what_to_pass() {
    let (_, q, _) = load_split();
    let o = EvaluateOptions {
        truth: "cell_type".into(),
        pred: None,
        embedding: None,
        distances: vec![],
        cluster: None,
        silhouette_max_cells: 10,
        seed: 0,
    };
    let e = err_text(evaluate(&q, &o).unwrap_err());
    assert!(e.contains("--pred") && e.contains("kang_query.h5ad"), "{e}");
}
