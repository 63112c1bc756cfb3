//! The file-level work behind `scllm baseline`: train a classical annotator (logreg, kNN,
//! correlation) on the labeled cells of a reference AnnData and annotate a query in place
//! ([`run_baseline`]); the command's job ([`baseline`]) adds reading both files and writing the
//! query. Printing and argument parsing live in the `scllm` command.

use std::path::PathBuf;
use std::time::Instant;

use scllm_io::{read_h5ad, write_h5ad, AnnData, Column, Compressed, Compression, UnsValue};
use scllm_pp::{highly_variable_genes, HvgFlavor, HvgOptions};
use serde::Serialize;

use crate::anndata_input::{
    align_genes, labeled_cells, log_normalized, name, names_of, obsm_finite,
};
use crate::class_scores::{ClassScores, ScoreKind};
use crate::conformal::{calibration_uniforms, query_uniforms, ConformalCalibrator};
use crate::correlation::{CorrelationOptions, Reference};
use crate::held_out::{stratified_holdout, HELD_OUT_FRACTION};
use crate::knn::{kneighbors, vote_shares, Vote};
use crate::logreg::{cross_validate, fit, CvPoint, Design, SolverOptions};
use crate::metrics::{classification_report, ClassificationReport, Distance};
use crate::novelty::{auto_threshold, UNKNOWN_QUANTILE};
use crate::prediction_sets::{write_prediction_sets, SetSummary};
use crate::progress::bar;
use crate::{encode_labels, invalid, Result};

/// The label given to rejected cells, as `annotate` does.
pub const UNKNOWN: &str = "Unknown";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Logreg,
    Knn,
    Correlation,
}

impl Method {
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Logreg => "logreg",
            Method::Knn => "knn",
            Method::Correlation => "correlation",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BaselineOptions {
    pub method: Method,
    pub label: String,
    /// Use this layer (or `raw`) of both files instead of X.
    pub layer: Option<String>,
    /// Highly variable genes selected on the reference (0: all genes); logreg and knn-on-PCA.
    pub n_hvg: usize,
    pub hvg_flavor: HvgFlavor,
    pub unknown_below: Option<f64>,
    /// `--unknown-below auto`: pick `unknown_below` on held-out reference cells
    /// ([`run_baseline_held_out`]); the model is then trained on the other reference cells.
    pub unknown_below_auto: bool,
    /// `--coverage`: conformal prediction sets at this coverage, calibrated on held-out
    /// reference cells ([`run_baseline_held_out`]).
    pub coverage: Option<f64>,
    /// logreg: a fixed C (skips cross-validation).
    pub c: Option<f64>,
    pub c_grid: Vec<f64>,
    pub folds: usize,
    pub solver: SolverOptions,
    /// knn
    pub k: usize,
    pub use_rep: Option<String>,
    pub n_pcs: usize,
    pub vote: Vote,
    pub metric: Distance,
    /// correlation
    pub correlation: CorrelationOptions,
    pub seed: u64,
    pub progress: bool,
}

impl BaselineOptions {
    pub fn new(method: Method, label: &str) -> Self {
        BaselineOptions {
            method,
            label: label.to_string(),
            layer: None,
            n_hvg: 2000,
            hvg_flavor: HvgFlavor::Seurat,
            unknown_below: None,
            unknown_below_auto: false,
            coverage: None,
            c: None,
            c_grid: vec![0.01, 0.1, 1.0, 10.0, 100.0],
            folds: 5,
            solver: SolverOptions::default(),
            k: 15,
            use_rep: None,
            n_pcs: 50,
            vote: Vote::Majority,
            metric: Distance::Cosine,
            correlation: CorrelationOptions::default(),
            seed: 0,
            progress: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BaselineSummary {
    pub method: &'static str,
    pub reference: String,
    pub query: String,
    pub label: String,
    pub n_train: usize,
    pub n_reference_unlabeled: usize,
    pub n_query: usize,
    pub classes: Vec<String>,
    pub n_genes: usize,
    /// Genes of the feature set found in the query.
    pub n_genes_in_query: usize,
    pub params: serde_json::Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cv: Vec<CvPoint>,
    pub n_unknown: usize,
    pub train_seconds: f64,
    pub predict_seconds: f64,
    pub notes: Vec<String>,
    /// With `--coverage`: what the query's conformal sets came to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_sets: Option<SetSummary>,
    /// When the query has the label column too: metrics on its labeled cells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ClassificationReport>,
}

/// Columns of the `n` most variable genes of `x` (all columns when `n` is 0 or covers them all).
pub fn select_hvg(
    x: &Compressed,
    genes: &[String],
    n: usize,
    flavor: HvgFlavor,
) -> Result<Vec<usize>> {
    if n == 0 || n >= genes.len() {
        return Ok((0..genes.len()).collect());
    }
    let r = highly_variable_genes(x, &HvgOptions::new(n, flavor), None)?;
    Ok((0..genes.len()).filter(|&j| r.highly_variable[j]).collect())
}

fn check_overlap(
    refname: &str,
    qname: &str,
    n: usize,
    found: usize,
    notes: &mut Vec<String>,
) -> Result<()> {
    if found == 0 {
        return Err(invalid(format!(
            "{qname}: field `var.index`: shares none of the {n} reference genes of {refname}; both files must name genes the same way (symbols or Ensembl ids)"
        )));
    }
    if found < n {
        notes.push(format!(
            "{qname}: {found} of {n} reference genes found; the missing {} are treated as zero",
            n - found
        ));
    }
    Ok(())
}

/// Train `opts.method` on the labeled cells of `reference` and annotate `query` in place:
/// `obs['predicted_cell_type']`, `obs['prediction_confidence']`, `uns['scllm_baseline']`.
pub fn run_baseline(
    reference: &AnnData,
    query: &mut AnnData,
    opts: &BaselineOptions,
) -> Result<BaselineSummary> {
    Ok(run_baseline_scored(reference, query, opts)?.0)
}

/// [`run_baseline`] plus every query cell's score for every class: probabilities for logreg
/// (scikit-learn's OvR `predict_proba`) and knn (vote shares), first-round Spearman ρ for
/// correlation (similarities, not probabilities).
pub fn run_baseline_scored(
    reference: &AnnData,
    query: &mut AnnData,
    opts: &BaselineOptions,
) -> Result<(BaselineSummary, ClassScores)> {
    let rname = name(reference);
    let qname = name(query);
    let (lab_idx, lab) = labeled_cells(reference, &opts.label)?;
    let (classes, codes) = encode_labels(&lab);
    if classes.len() < 2 {
        return Err(invalid(format!(
            "{rname}: field `obs['{}']`: {} distinct label(s) among {} labeled cells; a classifier needs at least 2",
            opts.label,
            classes.len(),
            lab.len()
        )));
    }
    if let Some(p) = opts.unknown_below {
        if !(0.0..=1.0).contains(&p) && opts.method != Method::Correlation {
            return Err(invalid(format!(
                "--unknown-below {p}: must be between 0 and 1"
            )));
        }
    }
    let mut notes = Vec::new();
    let t0 = Instant::now();
    let mut params = serde_json::Map::new();
    let mut uns: Vec<(String, UnsValue)> = vec![
        ("method".into(), UnsValue::Str(opts.method.as_str().into())),
        ("label".into(), UnsValue::Str(opts.label.clone())),
        ("reference".into(), UnsValue::Str(rname.clone())),
    ];
    let mut cv = Vec::new();
    let n_genes;
    let n_found;
    let (pred, conf, scores, train_s, t1);
    // the obsm route of knn needs no expression at all
    if let (Method::Knn, Some(key)) = (opts.method, opts.use_rep.as_ref()) {
        let get = |a: &AnnData, an: &str| -> Result<Vec<f32>> {
            let m = a.obsm_get(key).ok_or_else(|| {
                invalid(format!(
                    "{an}: field `obsm['{key}']`: no such embedding (obsm keys: {}); compute it for both files or drop --use-rep to use PCA of the expression",
                    names_of(&a.obsm)
                ))
            })?;
            obsm_finite(m, an, key)
        };
        let r_all = get(reference, &rname)?;
        let q = get(query, &qname)?;
        let dr = reference.obsm_get(key).unwrap().shape().1;
        let dq = query.obsm_get(key).unwrap().shape().1;
        if dr != dq {
            return Err(invalid(format!(
                "{qname}: field `obsm['{key}']`: has {dq} dimensions but the reference's has {dr}; embed both files with the same model"
            )));
        }
        let r: Vec<f32> = lab_idx
            .iter()
            .flat_map(|&i| r_all[i * dr..(i + 1) * dr].iter().cloned())
            .collect();
        n_genes = 0;
        n_found = 0;
        params.insert("use_rep".into(), key.clone().into());
        params.insert("dims".into(), dr.into());
        uns.push(("use_rep".into(), UnsValue::Str(key.clone())));
        train_s = t0.elapsed().as_secs_f64();
        t1 = Instant::now();
        let (p, c, sc) = knn_predict(&r, &q, dr, &codes, classes.len(), opts);
        pred = p;
        conf = c;
        scores = sc;
    } else {
        let rl = log_normalized(reference, opts.layer.as_deref())?;
        let ql = log_normalized(query, opts.layer.as_deref())?;
        notes.push(rl.note.clone());
        notes.push(ql.note.clone());
        let rx = rl.x.select_major(&lab_idx, true);
        match opts.method {
            Method::Logreg | Method::Knn => {
                let hv = select_hvg(&rx, &rl.genes, opts.n_hvg, opts.hvg_flavor)?;
                let genes: Vec<String> = hv.iter().map(|&j| rl.genes[j].clone()).collect();
                let rxs = align_genes(&rx, &rl.genes, &genes).0;
                let (qx, found) = align_genes(&ql.x, &ql.genes, &genes);
                check_overlap(&rname, &qname, genes.len(), found, &mut notes)?;
                n_genes = genes.len();
                n_found = found;
                params.insert("n_hvg".into(), n_genes.into());
                uns.push(("genes".into(), UnsValue::Array(Column::Str(genes.clone()))));
                if opts.method == Method::Logreg {
                    let (p, c, sc, tr) = logreg_train_predict(
                        &rxs,
                        &qx,
                        &codes,
                        classes.len(),
                        opts,
                        &mut params,
                        &mut uns,
                        &mut cv,
                    )?;
                    train_s = tr;
                    t1 = Instant::now();
                    pred = p;
                    conf = c;
                    scores = sc;
                } else {
                    let pca = crate::linalg::Pca::fit(&rxs, opts.n_pcs, 4, opts.seed);
                    let r = pca.transform(&rxs);
                    let q = pca.transform(&qx);
                    params.insert("n_pcs".into(), pca.n_comps.into());
                    uns.push(("n_pcs".into(), UnsValue::I64(pca.n_comps as i64)));
                    train_s = t0.elapsed().as_secs_f64();
                    t1 = Instant::now();
                    let (p, c, sc) = knn_predict(&r, &q, pca.n_comps, &codes, classes.len(), opts);
                    pred = p;
                    conf = c;
                    scores = sc;
                }
            }
            Method::Correlation => {
                // genes present in both files (SingleR intersects first)
                let qset: std::collections::HashSet<&str> =
                    ql.genes.iter().map(|s| s.as_str()).collect();
                let genes: Vec<String> = rl
                    .genes
                    .iter()
                    .filter(|g| qset.contains(g.as_str()))
                    .cloned()
                    .collect();
                check_overlap(&rname, &qname, rl.genes.len(), genes.len(), &mut notes)?;
                let rxs = align_genes(&rx, &rl.genes, &genes).0;
                let (qx, found) = align_genes(&ql.x, &ql.genes, &genes);
                let refm = Reference::train(&rxs, &codes, classes.len(), opts.correlation);
                let all: Vec<u32> = (0..classes.len() as u32).collect();
                let markers = refm.genes_for(&all);
                n_genes = markers.len();
                n_found = found.min(markers.len());
                params.insert("de_n".into(), refm.de_n.into());
                params.insert("n_marker_genes".into(), markers.len().into());
                params.insert("tune_thresh".into(), opts.correlation.tune_thresh.into());
                params.insert("fine_tune".into(), opts.correlation.fine_tune.into());
                uns.push(("de_n".into(), UnsValue::I64(refm.de_n as i64)));
                uns.push((
                    "tune_thresh".into(),
                    UnsValue::F64(opts.correlation.tune_thresh),
                ));
                uns.push((
                    "genes".into(),
                    UnsValue::Array(Column::Str(
                        markers.iter().map(|&j| genes[j as usize].clone()).collect(),
                    )),
                ));
                train_s = t0.elapsed().as_secs_f64();
                t1 = Instant::now();
                let b = bar(qx.nrows as u64, "correlation", opts.progress);
                let (p, c, sc) = refm.classify_all_scored(&qx, &|| b.inc(1));
                b.finish_and_clear();
                pred = p;
                conf = c;
                scores = sc;
            }
        }
    }
    if opts.method == Method::Knn {
        params.insert("k".into(), opts.k.into());
        params.insert("vote".into(), serde_json::to_value(opts.vote).unwrap());
        params.insert("metric".into(), serde_json::to_value(opts.metric).unwrap());
        uns.push(("k".into(), UnsValue::I64(opts.k as i64)));
        uns.push((
            "vote".into(),
            UnsValue::Str(
                serde_json::to_value(opts.vote)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .into(),
            ),
        ));
        uns.push((
            "metric".into(),
            UnsValue::Str(
                serde_json::to_value(opts.metric)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .into(),
            ),
        ));
    }
    if let Some(p) = opts.unknown_below {
        params.insert("unknown_below".into(), p.into());
        uns.push(("unknown_below".into(), UnsValue::F64(p)));
    }
    uns.push(("n_genes".into(), UnsValue::I64(n_genes as i64)));
    let mut n_unknown = 0;
    let labels: Vec<Option<String>> = pred
        .iter()
        .zip(&conf)
        .map(|(&p, &c)| {
            if opts.unknown_below.is_some_and(|t| (c as f64) < t) {
                n_unknown += 1;
                Some(UNKNOWN.to_string())
            } else {
                Some(classes[p as usize].clone())
            }
        })
        .collect();
    let predict_s = t1.elapsed().as_secs_f64();
    let metrics = match query.obs.column(&opts.label) {
        Some(col) => {
            let t = col.to_strings();
            let idx: Vec<usize> = (0..t.len()).filter(|&i| t[i].is_some()).collect();
            if idx.is_empty() {
                None
            } else {
                let tt: Vec<&str> = idx.iter().map(|&i| t[i].as_deref().unwrap()).collect();
                let pp: Vec<&str> = idx.iter().map(|&i| labels[i].as_deref().unwrap()).collect();
                Some(classification_report(&tt, &pp)?)
            }
        }
        None => None,
    };
    query
        .obs
        .set("predicted_cell_type", Column::categorical_from(&labels));
    query.obs.set("prediction_confidence", Column::F32(conf));
    query.set_uns("scllm_baseline", UnsValue::Dict(uns));
    let class_scores = ClassScores {
        classes: classes.clone(),
        kind: if opts.method == Method::Correlation {
            ScoreKind::Similarity
        } else {
            ScoreKind::Probability
        },
        values: scores,
    };
    let summary = BaselineSummary {
        method: opts.method.as_str(),
        reference: rname,
        query: qname,
        label: opts.label.clone(),
        n_train: lab_idx.len(),
        n_reference_unlabeled: reference.n_obs() - lab_idx.len(),
        n_query: query.n_obs(),
        classes,
        n_genes,
        n_genes_in_query: n_found,
        params: serde_json::Value::Object(params),
        cv,
        n_unknown,
        train_seconds: train_s,
        predict_seconds: predict_s,
        notes,
        metrics,
        prediction_sets: None,
    };
    Ok((summary, class_scores))
}

/// `--unknown-below auto` and/or `--coverage`: [`run_baseline`] calibrated on the reference's own
/// held-out cells, never on the query. A stratified [`HELD_OUT_FRACTION`] of the labelled
/// reference cells (seeded by `seed`) is held out; the baseline trains on the rest and predicts
/// them. With `unknown_below_auto`, the threshold is the [`UNKNOWN_QUANTILE`] quantile of their
/// confidence ([`crate::novelty::auto_threshold`]); with `coverage`, class-conditional conformal
/// sets are fitted on their per-class scores ([`ConformalCalibrator`]). The query is then
/// predicted by the same model (same training cells and HVGs; logreg with the C the first run's
/// cross-validation chose, so the fit is identical): cells below the threshold `Unknown`, sets
/// written by [`write_prediction_sets`]. The rules and the held-out count go to
/// `uns['scllm_baseline']`.
pub fn run_baseline_held_out(
    reference: &AnnData,
    query: &mut AnnData,
    opts: &BaselineOptions,
) -> Result<BaselineSummary> {
    let rname = name(reference);
    let what = match (opts.unknown_below_auto, opts.coverage.is_some()) {
        (true, true) => "--unknown-below auto and --coverage need",
        (true, false) => "--unknown-below auto needs",
        _ => "--coverage needs",
    };
    if let Some(c) = opts.coverage {
        if !(c > 0.0 && c < 1.0) {
            return Err(invalid(format!(
                "--coverage {c}: must be strictly between 0 and 1 (e.g. 0.9)"
            )));
        }
    }
    let (lab_idx, lab) = labeled_cells(reference, &opts.label)?;
    let (keep, held) = stratified_holdout(&lab, HELD_OUT_FRACTION, opts.seed);
    if held.is_empty() {
        return Err(invalid(format!(
            "{rname}: field `obs['{}']`: {what} held-out reference cells, but no class has 2 or more labelled cells to spare; give --unknown-below a number and no --coverage",
            opts.label
        )));
    }
    let fit_rows: Vec<usize> = keep.iter().map(|&k| lab_idx[k]).collect();
    let held_rows: Vec<usize> = held.iter().map(|&k| lab_idx[k]).collect();
    let held_truth: Vec<&str> = held.iter().map(|&k| lab[k].as_str()).collect();
    let fit_ref = reference.select_obs(&fit_rows);
    let mut held_q = reference.select_obs(&held_rows);
    held_q.obs.remove(&opts.label);
    let mut o = opts.clone();
    o.unknown_below_auto = false;
    o.coverage = None;
    if opts.unknown_below_auto {
        o.unknown_below = None;
    }
    let (first, held_scores) = run_baseline_scored(&fit_ref, &mut held_q, &o)?;
    let threshold = if opts.unknown_below_auto {
        let conf = match held_q.obs.column("prediction_confidence") {
            Some(Column::F32(v)) => v.clone(),
            _ => return Err(invalid("held-out reference cells got no confidence")),
        };
        let t = auto_threshold(&conf, UNKNOWN_QUANTILE)?;
        o.unknown_below = Some(t.threshold);
        Some(t)
    } else {
        None
    };
    let calibrator = match opts.coverage {
        Some(c) => Some(ConformalCalibrator::fit_on(
            &held_scores,
            &held_truth,
            &calibration_uniforms(held_truth.len(), opts.seed),
            c,
        )?),
        None => None,
    };
    if o.method == Method::Logreg && o.c.is_none() {
        o.c = first.params.get("C").and_then(|v| v.as_f64());
    }
    let (mut s, scores) = run_baseline_scored(&fit_ref, query, &o)?;
    if let (serde_json::Value::Object(p), serde_json::Value::Object(p1)) =
        (&mut s.params, &first.params)
    {
        for (k, v) in p1 {
            p.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(t) = &threshold {
            p.insert("unknown_below_rule".into(), t.rule.clone().into());
            p.insert("unknown_below_quantile".into(), t.quantile.into());
        }
        p.insert("n_held_out".into(), held_rows.len().into());
    }
    if s.cv.is_empty() {
        s.cv = first.cv;
    }
    s.reference = rname;
    s.n_reference_unlabeled = reference.n_obs() - lab_idx.len();
    s.notes.push(format!(
        "{} of {} labelled reference cells held out (stratified {:.0}%, seed {}) to calibrate on; trained on the other {}",
        held_rows.len(),
        lab_idx.len(),
        HELD_OUT_FRACTION * 100.0,
        opts.seed,
        fit_rows.len(),
    ));
    if let Some(t) = &threshold {
        s.notes.push(format!(
            "--unknown-below auto: threshold {:.6} = the {} quantile of the held-out cells' confidence",
            t.threshold, t.quantile
        ));
    }
    let mut extra: Vec<(String, UnsValue)> = Vec::new();
    if let Some(t) = &threshold {
        extra.push(("unknown_below_rule".into(), UnsValue::Str(t.rule.clone())));
        extra.push(("unknown_below_quantile".into(), UnsValue::F64(t.quantile)));
    }
    extra.push(("n_held_out".into(), UnsValue::I64(held_rows.len() as i64)));
    extra.push(("n_train".into(), UnsValue::I64(fit_rows.len() as i64)));
    if let Some(cal) = &calibrator {
        let sets = cal.sets(&scores.values, &query_uniforms(scores.n_cells(), opts.seed));
        let (entries, summary) =
            write_prediction_sets(&mut query.obs, cal, &sets, "held-out reference cells");
        extra.extend(entries);
        s.notes.push(format!(
            "--coverage {}: conformal sets ({}); mean set size {:.2}, {} cells with no label (Unknown), {} ambiguous",
            cal.coverage,
            cal.kind.rule(),
            summary.mean_set_size,
            summary.unknown,
            summary.ambiguous
        ));
        s.prediction_sets = Some(summary);
    }
    if let Some((_, UnsValue::Dict(d))) = query.uns.iter_mut().find(|(k, _)| k == "scllm_baseline")
    {
        d.extend(extra);
    }
    Ok(s)
}

fn knn_predict(
    r: &[f32],
    q: &[f32],
    d: usize,
    codes: &[u32],
    nc: usize,
    opts: &BaselineOptions,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let nq = q.len() / d.max(1);
    let b = bar(nq as u64, "knn", opts.progress);
    let k = opts.k.min(codes.len()).max(1);
    let (idx, dist) = kneighbors(r, q, d, k, opts.metric, &|m| b.inc(m as u64));
    b.finish_and_clear();
    vote_shares(&idx, &dist, k, codes, nc, opts.vote)
}

/// Predicted codes, their confidence, every class's probability (`cells × classes`) and the
/// training seconds.
type Scored = (Vec<u32>, Vec<f32>, Vec<f32>, f64);

#[allow(clippy::too_many_arguments)]
fn logreg_train_predict(
    rx: &Compressed,
    qx: &Compressed,
    codes: &[u32],
    nc: usize,
    opts: &BaselineOptions,
    params: &mut serde_json::Map<String, serde_json::Value>,
    uns: &mut Vec<(String, UnsValue)>,
    cv_out: &mut Vec<CvPoint>,
) -> Result<Scored> {
    let t0 = Instant::now();
    let design = Design::new(rx);
    let solver = SolverOptions {
        seed: opts.seed.wrapping_add(1),
        ..opts.solver
    };
    let c = match opts.c {
        Some(c) => {
            if c <= 0.0 {
                return Err(invalid(format!("--c {c}: must be positive")));
            }
            c
        }
        None => {
            if opts.c_grid.is_empty() || opts.c_grid.iter().any(|&c| c <= 0.0) {
                return Err(invalid(
                    "--c-grid: give positive values, e.g. 0.01,0.1,1,10,100",
                ));
            }
            if opts.folds < 2 {
                return Err(invalid(format!("--folds {}: needs at least 2", opts.folds)));
            }
            let b = bar(
                (opts.folds * opts.c_grid.len()) as u64,
                "cv fits",
                opts.progress,
            );
            let cv = cross_validate(
                &design,
                rx,
                codes,
                nc,
                &opts.c_grid,
                opts.folds,
                &solver,
                &|| b.inc(1),
            );
            b.finish_and_clear();
            // best mean accuracy; ties go to the smaller C (stronger regularisation)
            let best = cv.iter().fold(&cv[0], |b, p| {
                if p.mean_accuracy > b.mean_accuracy {
                    p
                } else {
                    b
                }
            });
            let c = best.c;
            params.insert("cv_folds".into(), opts.folds.into());
            params.insert(
                "c_grid".into(),
                serde_json::to_value(cv.iter().map(|p| p.c).collect::<Vec<_>>()).unwrap(),
            );
            params.insert(
                "cv_accuracy".into(),
                serde_json::to_value(cv.iter().map(|p| p.mean_accuracy).collect::<Vec<_>>())
                    .unwrap(),
            );
            uns.push((
                "c_grid".into(),
                UnsValue::Array(Column::F64(cv.iter().map(|p| p.c).collect())),
            ));
            uns.push((
                "cv_accuracy".into(),
                UnsValue::Array(Column::F64(cv.iter().map(|p| p.mean_accuracy).collect())),
            ));
            *cv_out = cv;
            c
        }
    };
    let mask = vec![true; rx.nrows];
    let model = fit(&design, codes, nc, &mask, c, None, &solver);
    let train_s = t0.elapsed().as_secs_f64();
    params.insert("C".into(), c.into());
    params.insert("penalty".into(), "l1".into());
    params.insert("multi_class".into(), "ovr".into());
    params.insert("nonzero_genes".into(), model.nonzero_genes().into());
    uns.push(("C".into(), UnsValue::F64(c)));
    uns.push((
        "nonzero_genes".into(),
        UnsValue::I64(model.nonzero_genes() as i64),
    ));
    let (p, conf) = model.predict(qx, nc);
    let proba = model.predict_proba(qx, nc);
    Ok((p, conf, proba, train_s))
}

/// One `scllm baseline` run: train on `reference`, annotate `query`, write it to `output`.
#[derive(Clone, Debug)]
pub struct BaselineJob {
    /// `.h5ad` with labels.
    pub reference: PathBuf,
    /// `.h5ad` to annotate.
    pub query: PathBuf,
    /// The query plus predictions (written to a temporary file, then renamed).
    pub output: PathBuf,
    pub options: BaselineOptions,
}

/// What `scllm baseline` reports: the run's summary and where the query went.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineOutcome {
    #[serde(flatten)]
    pub summary: BaselineSummary,
    pub output: String,
}

/// Read both files, train and annotate ([`baseline_cells`]), write the annotated query.
pub fn baseline(job: &BaselineJob) -> Result<BaselineOutcome> {
    // options that cannot work are refused before the files are read
    checked(&job.options)?;
    let reference = read_h5ad(&job.reference)?;
    let mut query = read_h5ad(&job.query)?;
    let summary = baseline_cells(&reference, &mut query, &job.options)?;
    write_h5ad(&query, &job.output, Compression::None)?;
    Ok(BaselineOutcome {
        summary,
        output: job.output.display().to_string(),
    })
}

/// `scllm baseline` on cells held in memory: train on `reference`, annotate `query` in place
/// (held-out calibration for `unknown_below_auto` and `coverage`). Options that cannot work
/// are refused first.
pub fn baseline_cells(
    reference: &AnnData,
    query: &mut AnnData,
    options: &BaselineOptions,
) -> Result<BaselineSummary> {
    let o = checked(options)?;
    if o.unknown_below_auto || o.coverage.is_some() {
        run_baseline_held_out(reference, query, &o)
    } else {
        run_baseline(reference, query, &o)
    }
}

/// The options, refused when they cannot work (before any data is read), `n_pcs` at least 1.
fn checked(options: &BaselineOptions) -> Result<BaselineOptions> {
    let mut o = options.clone();
    if o.hvg_flavor == HvgFlavor::SeuratV3 {
        return Err(invalid(
            "--hvg-flavor seurat_v3 needs counts; baselines select HVGs on log data: use seurat or cell_ranger",
        ));
    }
    if o.k == 0 {
        return Err(invalid("--k must be at least 1"));
    }
    o.n_pcs = o.n_pcs.max(1);
    Ok(o)
}
