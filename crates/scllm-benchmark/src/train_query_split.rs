//! Reading the data and building the train / query sets, once per benchmark.
//!
//! Order of operations, per file: cells whose label is missing (NaN) are dropped; `data.include`
//! keeps only matching cells, `data.exclude` drops matching cells; labels are mapped through
//! `label_map` (a label absent from the map is an error, listed); cells whose (mapped) label is in
//! `data.drop_labels` are dropped; then the split. Two-file configs keep the genes the files
//! share (train order; names upper-cased first with `gene_case = "upper"`). Then cells of the
//! config's `novel` types leave the training set (they stay in the query), each class is capped
//! (`max_train_per_class` / `max_query_per_class`), and in held-out mode (`novel` or `coverage`)
//! a stratified `held_out_fraction` of the training cells is set apart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use scllm_io::{read_h5ad, AnnData, Column};
use serde::Serialize;

use crate::config::{Filter, GeneCase, LoadedConfig, SplitPlan};
use crate::{cfg_err, Result};

/// The obs column holding mapped labels when a `label_map` is given.
pub const MAPPED_LABEL: &str = "benchmark_label";

/// Train and query sets ready for the methods: every cell labeled, labels in `label`.
pub struct Split {
    pub train: AnnData,
    pub query: AnnData,
    /// The obs column (of both) holding the labels methods train on and are scored against.
    pub label: String,
    /// Training cells held out of training (held-out mode): methods predict them to pick the
    /// `Unknown` threshold and calibrate conformal sets.
    pub held_out: Option<AnnData>,
    pub info: SplitInfo,
}

impl Split {
    pub fn train_labels(&self) -> Vec<String> {
        labels_of(&self.train, &self.label)
    }
    pub fn query_labels(&self) -> Vec<String> {
        labels_of(&self.query, &self.label)
    }
    pub fn held_out_labels(&self) -> Vec<String> {
        self.held_out
            .as_ref()
            .map(|h| labels_of(h, &self.label))
            .unwrap_or_default()
    }
}

pub(crate) fn labels_of(a: &AnnData, col: &str) -> Vec<String> {
    a.obs
        .column(col)
        .map(|c| {
            c.to_strings()
                .into_iter()
                .map(|s| s.unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// What the split did, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct SplitInfo {
    pub plan: SplitPlan,
    pub description: String,
    pub label_column: String,
    pub n_train: usize,
    pub n_query: usize,
    pub n_genes: usize,
    pub train_classes: BTreeMap<String, usize>,
    pub query_classes: BTreeMap<String, usize>,
    /// Query classes absent from training (no method can predict them).
    pub query_only_classes: Vec<String>,
    /// The config's `novel` types: removed from training, kept in the query.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub novel_types: Vec<String>,
    /// Training cells held out (held-out mode), per class.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held_out_classes: BTreeMap<String, usize>,
    pub n_held_out: usize,
    /// Cells removed before splitting, by reason.
    pub removed: BTreeMap<String, usize>,
    pub notes: Vec<String>,
}

fn read(p: &Path, cfg: &str, field: &str) -> Result<AnnData> {
    read_h5ad(p).map_err(|e| cfg_err(format!("{cfg}: field `{field}`: {e}")))
}

fn obs_col<'a>(a: &'a AnnData, col: &str, cfg: &str, field: &str) -> Result<&'a Column> {
    a.obs.column(col).ok_or_else(|| {
        cfg_err(format!(
            "{cfg}: field `{field}`: {} has no obs column `{col}`; obs columns: {}",
            a.source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            if a.obs.columns.is_empty() {
                "(none)".into()
            } else {
                a.obs.column_names().join(", ")
            }
        ))
    })
}

fn value_counts(col: &Column) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in col.to_strings() {
        *m.entry(v.unwrap_or_else(|| "NaN".into())).or_insert(0) += 1;
    }
    m
}

fn fmt_counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} ({v})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A filter's column values and the values it matches.
type FilterCol = (Vec<Option<String>>, HashSet<String>);

/// The label map: `(dataset or "", fine) -> coarse`.
struct LabelMap {
    map: HashMap<(String, String), String>,
    per_dataset: bool,
}

fn read_label_map(lc: &LoadedConfig) -> Result<Option<LabelMap>> {
    let (Some(path), Some(m)) = (&lc.label_map, &lc.config.label_map) else {
        return Ok(None);
    };
    let cfg = lc.file();
    let text = std::fs::read_to_string(path).map_err(|e| crate::BenchError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| {
            cfg_err(format!(
                "{cfg}: field `label_map.file`: {} is empty",
                path.display()
            ))
        })?
        .split('\t')
        .collect();
    let find = |name: &str, field: &str| -> Result<usize> {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            cfg_err(format!(
                "{cfg}: field `label_map.{field}`: {} has no column `{name}` (tab-separated header: {})",
                path.display(),
                header.join(", ")
            ))
        })
    };
    let from = find(&m.from, "from")?;
    let to = find(&m.to, "to")?;
    let ds = match &m.dataset_column {
        Some(d) => Some(find(d, "dataset_column")?),
        None => None,
    };
    let mut map = HashMap::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let need = from.max(to).max(ds.unwrap_or(0));
        if f.len() <= need {
            return Err(cfg_err(format!(
                "{cfg}: field `label_map.file`: {} line {}: {} fields, expected at least {}",
                path.display(),
                n + 2,
                f.len(),
                need + 1
            )));
        }
        let key = ds.map(|d| f[d].trim().to_string()).unwrap_or_default();
        map.insert((key, f[from].trim().to_string()), f[to].trim().to_string());
    }
    Ok(Some(LabelMap {
        map,
        per_dataset: ds.is_some(),
    }))
}

/// Cells of `a` kept by the filters and with a label; the labels (mapped); removal counts.
fn prepare(
    a: &AnnData,
    lc: &LoadedConfig,
    lmap: Option<&LabelMap>,
    dataset: &str,
    dataset_field: &str,
    removed: &mut BTreeMap<String, usize>,
) -> Result<(Vec<usize>, Vec<String>)> {
    let cfg = lc.file();
    let c = &lc.config;
    let labels = obs_col(a, &c.label, &cfg, "label")?.to_strings();
    let filt = |fs: &[Filter], field: &str| -> Result<Vec<FilterCol>> {
        fs.iter()
            .enumerate()
            .map(|(i, f)| {
                let col = obs_col(a, &f.column, &cfg, &format!("data.{field}[{i}].column"))?;
                let vals: HashSet<String> = f.values.iter().map(|v| v.as_text()).collect();
                let present: HashSet<String> = col.to_strings().into_iter().flatten().collect();
                if !vals.iter().any(|v| present.contains(v)) {
                    let vc = value_counts(col);
                    return Err(cfg_err(format!(
                        "{cfg}: field `data.{field}[{i}].values`: none of {:?} occurs in obs['{}']; its values: {}",
                        f.values.iter().map(|v| v.as_text()).collect::<Vec<_>>(),
                        f.column,
                        fmt_counts(&vc)
                    )));
                }
                Ok((col.to_strings(), vals))
            })
            .collect()
    };
    let inc = filt(&c.data.include, "include")?;
    let exc = filt(&c.data.exclude, "exclude")?;
    let drop: HashSet<&str> = c.data.drop_labels.iter().map(|s| s.as_str()).collect();
    let mut keep = Vec::new();
    let mut out = Vec::new();
    let mut unmapped: BTreeMap<String, usize> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        let Some(l) = l else {
            *removed.entry("unlabeled (NaN)".into()).or_insert(0) += 1;
            continue;
        };
        let matches = |(col, vals): &FilterCol| col[i].as_ref().is_some_and(|v| vals.contains(v));
        if !inc.iter().all(matches) {
            *removed.entry("not in data.include".into()).or_insert(0) += 1;
            continue;
        }
        if exc.iter().any(matches) {
            *removed.entry("in data.exclude".into()).or_insert(0) += 1;
            continue;
        }
        let lab = match lmap {
            Some(m) => {
                let key = (
                    if m.per_dataset {
                        dataset.to_string()
                    } else {
                        String::new()
                    },
                    l.clone(),
                );
                match m.map.get(&key) {
                    Some(v) => v.clone(),
                    None => {
                        *unmapped.entry(l.clone()).or_insert(0) += 1;
                        continue;
                    }
                }
            }
            None => l.clone(),
        };
        if drop.contains(lab.as_str()) {
            *removed
                .entry(format!("label `{lab}` in data.drop_labels"))
                .or_insert(0) += 1;
            continue;
        }
        keep.push(i);
        out.push(lab);
    }
    if !unmapped.is_empty() {
        let lm = c.label_map.as_ref().unwrap();
        return Err(cfg_err(format!(
            "{cfg}: field `label_map`: labels of {} (dataset `{dataset}`{}) missing from {}: {}; add rows for them{}",
            a.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            if lm.dataset_column.is_some() { format!(", from `label_map.{dataset_field}` or the file stem") } else { String::new() },
            lc.label_map.as_ref().unwrap().display(),
            fmt_counts(&unmapped),
            if lm.dataset_column.is_some() { " or set the dataset name" } else { "" }
        )));
    }
    Ok((keep, out))
}

fn with_labels(a: &AnnData, keep: &[usize], labels: &[String], mapped: bool) -> AnnData {
    let mut s = a.select_obs(keep);
    if mapped {
        let l: Vec<Option<String>> = labels.iter().cloned().map(Some).collect();
        s.obs.set(MAPPED_LABEL, Column::categorical_from(&l));
    }
    s
}

/// At most `max` cells per class of `a` (a seeded draw; smaller classes whole), noted.
fn cap_per_class(
    a: AnnData,
    label: &str,
    max: Option<usize>,
    seed: u64,
    which: &str,
    notes: &mut Vec<String>,
) -> AnnData {
    let Some(k) = max else { return a };
    let labels = labels_of(&a, label);
    let keep = crate::fewshot::sample_shots(&labels, k, seed);
    if keep.len() == labels.len() {
        return a;
    }
    notes.push(format!(
        "{which} set subsampled to at most {k} cells per class (seed {seed}): {} of {} cells",
        keep.len(),
        labels.len()
    ));
    a.select_obs(&keep)
}

fn counts(labels: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in labels {
        *m.entry(l.clone()).or_insert(0) += 1;
    }
    m
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Stratified query selection: per class, `round(fraction · n)` cells (at least one cell stays
/// in training for classes with 2+ cells), after a seeded shuffle. Returns sorted positions.
pub fn stratified_query(labels: &[String], fraction: f64, seed: u64) -> Vec<usize> {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by.entry(l.as_str()).or_default().push(i);
    }
    let mut rng = scllm_eval::Rng::new(seed);
    let mut out = Vec::new();
    for (_, mut v) in by {
        rng.shuffle(&mut v);
        let n = v.len();
        let mut k = (fraction * n as f64).round() as usize;
        if n >= 2 {
            k = k.min(n - 1);
        }
        out.extend_from_slice(&v[..k.min(n)]);
    }
    out.sort_unstable();
    out
}

fn norm_gene(g: &str, case: GeneCase) -> String {
    match case {
        GeneCase::Exact => g.to_string(),
        GeneCase::Upper => g.to_uppercase(),
    }
}

/// Build the split the config describes.
pub fn build_split(lc: &LoadedConfig) -> Result<Split> {
    let cfg = lc.file();
    let c = &lc.config;
    let lmap = read_label_map(lc)?;
    let mapped = lmap.is_some();
    let label = if mapped {
        MAPPED_LABEL.to_string()
    } else {
        c.label.clone()
    };
    let mut removed = BTreeMap::new();
    let mut notes = Vec::new();
    let lm_cfg = c.label_map.as_ref();
    let (train, query, description) = match &lc.plan {
        SplitPlan::Holdout {
            file,
            column,
            value,
        } => {
            let a = read(file, &cfg, "data.file")?;
            let ds = lm_cfg
                .and_then(|m| m.train_dataset.clone())
                .unwrap_or_else(|| stem(file));
            let col = obs_col(&a, column, &cfg, "split.holdout.column")?;
            let vals = col.to_strings();
            if !vals.iter().any(|v| v.as_deref() == Some(value.as_str())) {
                return Err(cfg_err(format!(
                    "{cfg}: field `split.holdout.value`: `{value}` does not occur in obs['{column}'] of {}; its values: {}",
                    file.display(),
                    fmt_counts(&value_counts(col))
                )));
            }
            let (keep, labs) = prepare(&a, lc, lmap.as_ref(), &ds, "train_dataset", &mut removed)?;
            let (mut ti, mut tl, mut qi, mut ql) = (vec![], vec![], vec![], vec![]);
            for (k, &i) in keep.iter().enumerate() {
                if vals[i].as_deref() == Some(value.as_str()) {
                    qi.push(i);
                    ql.push(labs[k].clone());
                } else {
                    ti.push(i);
                    tl.push(labs[k].clone());
                }
            }
            check_nonempty(
                &cfg,
                ti.len(),
                qi.len(),
                &format!("obs['{column}'] == `{value}`"),
            )?;
            (
                with_labels(&a, &ti, &tl, mapped),
                with_labels(&a, &qi, &ql, mapped),
                format!(
                    "{}: query = cells with obs['{column}'] == `{value}`, train = the rest",
                    stem(file)
                ),
            )
        }
        SplitPlan::Fraction {
            file,
            fraction,
            seed,
        } => {
            let a = read(file, &cfg, "data.file")?;
            let ds = lm_cfg
                .and_then(|m| m.train_dataset.clone())
                .unwrap_or_else(|| stem(file));
            let (keep, labs) = prepare(&a, lc, lmap.as_ref(), &ds, "train_dataset", &mut removed)?;
            let qpos = stratified_query(&labs, *fraction, *seed);
            let qset: HashSet<usize> = qpos.iter().copied().collect();
            let (mut ti, mut tl, mut qi, mut ql) = (vec![], vec![], vec![], vec![]);
            for (k, &i) in keep.iter().enumerate() {
                if qset.contains(&k) {
                    qi.push(i);
                    ql.push(labs[k].clone());
                } else {
                    ti.push(i);
                    tl.push(labs[k].clone());
                }
            }
            check_nonempty(&cfg, ti.len(), qi.len(), &format!("fraction {fraction}"))?;
            (
                with_labels(&a, &ti, &tl, mapped),
                with_labels(&a, &qi, &ql, mapped),
                format!(
                    "{}: stratified random split, query fraction {fraction}, seed {seed}",
                    stem(file)
                ),
            )
        }
        SplitPlan::TwoFiles { train, query } => {
            let a = read(train, &cfg, "data.train")?;
            let b = read(query, &cfg, "data.query")?;
            let dsa = lm_cfg
                .and_then(|m| m.train_dataset.clone())
                .unwrap_or_else(|| stem(train));
            let dsb = lm_cfg
                .and_then(|m| m.query_dataset.clone())
                .unwrap_or_else(|| stem(query));
            let (ka, la) = prepare(&a, lc, lmap.as_ref(), &dsa, "train_dataset", &mut removed)?;
            let mut rq = BTreeMap::new();
            let (kb, lb) = prepare(&b, lc, lmap.as_ref(), &dsb, "query_dataset", &mut rq)?;
            for (k, v) in rq {
                removed.insert(format!("query file: {k}"), v);
            }
            check_nonempty(&cfg, ka.len(), kb.len(), "the two files")?;
            let (ta, tb, n_shared) = align_two(
                with_labels(&a, &ka, &la, mapped),
                with_labels(&b, &kb, &lb, mapped),
                c.data.gene_case,
                &cfg,
            )?;
            notes.push(format!(
                "genes: {n_shared} shared by both files (train {}, query {}{}); both restricted to them",
                a.n_vars(),
                b.n_vars(),
                if c.data.gene_case == GeneCase::Upper {
                    ", names upper-cased before matching"
                } else {
                    ", names matched exactly"
                }
            ));
            (
                ta,
                tb,
                format!("train = {}, query = {}", stem(train), stem(query)),
            )
        }
    };
    let train = remove_novel(train, &query, &label, lc, &mut removed)?;
    let train = cap_per_class(
        train,
        &label,
        c.data.max_train_per_class,
        c.seed,
        "training",
        &mut notes,
    );
    let query = cap_per_class(
        query,
        &label,
        c.data.max_query_per_class,
        c.seed,
        "query",
        &mut notes,
    );
    let (train, held_out) = if lc.held_out_mode() {
        let tl = labels_of(&train, &label);
        let frac = lc.held_out_fraction();
        let (keep, held) = scllm_eval::held_out::stratified_holdout(&tl, frac, c.seed);
        if held.is_empty() {
            return Err(cfg_err(format!(
                "{cfg}: field `held_out_fraction`: {frac} of the training cells holds out none (every class too small); raise it or give more training cells"
            )));
        }
        notes.push(format!(
            "{} training cells held out (stratified {:.0}%, seed {}) to pick the Unknown threshold and calibrate conformal sets; methods train on the other {}",
            held.len(),
            frac * 100.0,
            c.seed,
            keep.len()
        ));
        (train.select_obs(&keep), Some(train.select_obs(&held)))
    } else {
        (train, None)
    };
    let tl = labels_of(&train, &label);
    let ql = labels_of(&query, &label);
    let train_classes = counts(&tl);
    let query_classes = counts(&ql);
    let query_only: Vec<String> = query_classes
        .keys()
        .filter(|k| !train_classes.contains_key(*k))
        .cloned()
        .collect();
    if !query_only.is_empty() {
        notes.push(format!(
            "query classes absent from training (never predictable): {}",
            query_only.join(", ")
        ));
    }
    if train_classes.len() < 2 {
        return Err(cfg_err(format!(
            "{cfg}: the training set has {} class(es) ({}); a classifier needs at least 2: check `label`, `split` and the filters",
            train_classes.len(),
            fmt_counts(&train_classes)
        )));
    }
    let info = SplitInfo {
        plan: lc.plan.clone(),
        description,
        label_column: if mapped {
            format!(
                "{} mapped through {} ({} -> {})",
                c.label,
                lc.label_map.as_ref().unwrap().display(),
                lm_cfg.unwrap().from,
                lm_cfg.unwrap().to
            )
        } else {
            c.label.clone()
        },
        n_train: train.n_obs(),
        n_query: query.n_obs(),
        n_genes: train.n_vars(),
        train_classes,
        query_classes,
        query_only_classes: query_only,
        novel_types: c.novel.clone(),
        held_out_classes: held_out
            .as_ref()
            .map(|h| counts(&labels_of(h, &label)))
            .unwrap_or_default(),
        n_held_out: held_out.as_ref().map(|h| h.n_obs()).unwrap_or(0),
        removed,
        notes,
    };
    Ok(Split {
        train,
        query,
        label,
        held_out,
        info,
    })
}

/// Cells of the config's `novel` types leave `train`; each must occur in the query (else there
/// is nothing to measure) and so in the data.
fn remove_novel(
    train: AnnData,
    query: &AnnData,
    label: &str,
    lc: &LoadedConfig,
    removed: &mut BTreeMap<String, usize>,
) -> Result<AnnData> {
    let novel = &lc.config.novel;
    if novel.is_empty() {
        return Ok(train);
    }
    let cfg = lc.file();
    let tl = labels_of(&train, label);
    let ql = labels_of(query, label);
    let tc = counts(&tl);
    let qc = counts(&ql);
    for (i, t) in novel.iter().enumerate() {
        if !qc.contains_key(t) {
            let mut all = tc.clone();
            for (k, v) in &qc {
                *all.entry(k.clone()).or_insert(0) += v;
            }
            return Err(cfg_err(if tc.contains_key(t) {
                format!(
                    "{cfg}: field `novel[{i}]`: `{t}` has no cell in the query (only {} in training), so its cells cannot be kept in the query; pick a type the query has: {}",
                    tc[t],
                    fmt_counts(&qc)
                )
            } else {
                format!(
                    "{cfg}: field `novel[{i}]`: `{t}` does not occur in the data's labels ({}, after filters and label_map); labels present: {}",
                    lc.config.label,
                    fmt_counts(&all)
                )
            }));
        }
    }
    let set: HashSet<&str> = novel.iter().map(|s| s.as_str()).collect();
    let keep: Vec<usize> = (0..tl.len())
        .filter(|&i| !set.contains(tl[i].as_str()))
        .collect();
    for t in novel {
        if let Some(&n) = tc.get(t) {
            removed.insert(format!("novel type `{t}` (training cells)"), n);
        }
    }
    if keep.len() == tl.len() {
        return Ok(train);
    }
    Ok(train.select_obs(&keep))
}

fn check_nonempty(cfg: &str, n_train: usize, n_query: usize, what: &str) -> Result<()> {
    if n_train == 0 {
        return Err(cfg_err(format!(
            "{cfg}: field `split`: the training set is empty after the split ({what}) and filters; check `split`, `data.include`/`exclude` and `data.drop_labels`"
        )));
    }
    if n_query == 0 {
        return Err(cfg_err(format!(
            "{cfg}: field `split`: the query set is empty after the split ({what}) and filters; check `split`, `data.include`/`exclude` and `data.drop_labels`"
        )));
    }
    Ok(())
}

/// Restrict both to their shared genes, in the train file's order.
fn align_two(
    a: AnnData,
    b: AnnData,
    case: GeneCase,
    cfg: &str,
) -> Result<(AnnData, AnnData, usize)> {
    let mut bpos: HashMap<String, usize> = HashMap::new();
    for (j, g) in b.var.index.iter().enumerate() {
        bpos.entry(norm_gene(g, case)).or_insert(j);
    }
    let mut seen = HashSet::new();
    let mut ia = Vec::new();
    let mut ib = Vec::new();
    for (j, g) in a.var.index.iter().enumerate() {
        let k = norm_gene(g, case);
        if let Some(&jb) = bpos.get(&k) {
            if seen.insert(k) {
                ia.push(j);
                ib.push(jb);
            }
        }
    }
    if ia.is_empty() {
        return Err(cfg_err(format!(
            "{cfg}: field `data.query`: shares no gene name with `data.train` (e.g. train {:?}, query {:?}); both must name genes the same way{}",
            a.var.index.iter().take(3).collect::<Vec<_>>(),
            b.var.index.iter().take(3).collect::<Vec<_>>(),
            if case == GeneCase::Exact { "; try data.gene_case = \"upper\"" } else { "" }
        )));
    }
    let n = ia.len();
    let a2 = a.select_vars(&ia);
    let mut b2 = b.select_vars(&ib);
    // the query takes the train file's names so that methods matching by name see one gene space
    b2.var.index = a2.var.index.clone();
    Ok((a2, b2, n))
}
