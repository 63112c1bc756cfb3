//! Running a benchmark: methods built (errors before any data is read), the split built once,
//! every method run on it (wall time and peak memory measured around `run`), scored with
//! `scllm-eval`'s metrics, then the few-shot settings. In held-out mode (`novel` or `coverage`)
//! each method predicts the query and the held-out training cells in one run; the latter pick the
//! `Unknown` threshold and calibrate conformal sets ([`crate::uncertainty`]).

use std::io::IsTerminal;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use scllm_eval::classification_report;

use crate::config::LoadedConfig;
use crate::fewshot::{sample_fraction, sample_shots, MeanCi};
use crate::memory::{MemoryReading, MEMORY_NOTE};
use crate::method::{BenchMethod, MethodRegistry, Predictions};
use crate::report::{
    BenchmarkReport, FewShotReport, FewShotRun, FewShotSetting, FewShotSummary, MethodResult,
    PredictionTable, Versions,
};
use crate::stack_cells::stack_cells;
use crate::train_query_split::{build_split, labels_of, Split};
use crate::uncertainty::{assess, Context, HeldOutSettings};
use crate::{BenchError, Result};

/// The label rejected cells get (as `scllm annotate` / `baseline --unknown-below`).
pub const UNKNOWN: &str = scllm_eval::baselines::UNKNOWN;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// A progress line per method on stderr.
    pub progress: bool,
    /// Skip the config's `[fewshot]` section.
    pub skip_fewshot: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            progress: true,
            skip_fewshot: false,
        }
    }
}

struct Line {
    bar: ProgressBar,
    plain: bool,
}

impl Line {
    fn start(show: bool, msg: String) -> Line {
        if !show {
            return Line {
                bar: ProgressBar::hidden(),
                plain: false,
            };
        }
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap());
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b.set_message(msg);
            b
        } else {
            ProgressBar::hidden()
        };
        Line { bar, plain: !tty }
    }
    fn finish(self, msg: String) {
        if self.plain {
            eprintln!("{msg}");
        } else if !self.bar.is_hidden() {
            self.bar.finish_with_message(msg);
        }
    }
}

/// One method on one split: predictions, timing, memory.
struct Outcome {
    pred: Result<Predictions>,
    wall: f64,
    mem: MemoryReading,
}

fn run_one(
    m: &dyn BenchMethod,
    train: &scllm_io::AnnData,
    query: &scllm_io::AnnData,
    label: &str,
    seed: u64,
) -> Outcome {
    let mem = MemoryReading::start();
    let t0 = Instant::now();
    let pred = m.run(train, query, label, seed);
    let wall = t0.elapsed().as_secs_f64();
    let mem = mem.finish();
    let pred = pred.and_then(|p| {
        if p.labels.len() != query.n_obs() {
            return Err(BenchError::Method(format!(
                "{}: returned {} predictions for {} query cells",
                m.name(),
                p.labels.len(),
                query.n_obs()
            )));
        }
        if let Some(s) = &p.class_scores {
            if s.classes.is_empty() || s.values.len() != s.classes.len() * query.n_obs() {
                return Err(BenchError::Method(format!(
                    "{}: returned {} class scores for {} query cells × {} classes",
                    m.name(),
                    s.values.len(),
                    query.n_obs(),
                    s.classes.len()
                )));
            }
        }
        if let Some(c) = &p.confidence {
            if c.len() != query.n_obs() {
                return Err(BenchError::Method(format!(
                    "{}: returned {} confidences for {} query cells",
                    m.name(),
                    c.len(),
                    query.n_obs()
                )));
            }
        }
        Ok(p)
    });
    Outcome { pred, wall, mem }
}

/// Labels after `unknown_below` (cells with confidence below it become `Unknown`).
fn final_labels(p: &Predictions, unknown_below: Option<f64>) -> (Vec<String>, usize) {
    let mut n = 0;
    let l = p
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| match (unknown_below, &p.confidence) {
            (Some(t), Some(c)) if (c[i] as f64) < t => {
                n += 1;
                UNKNOWN.to_string()
            }
            _ => l.clone(),
        })
        .collect();
    (l, n)
}

fn fmt_bytes(b: Option<u64>) -> String {
    b.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
        .unwrap_or_else(|| "n/a".into())
}

/// Run the benchmark `lc` describes with the methods of `registry`.
pub fn run_benchmark(
    lc: &LoadedConfig,
    registry: &MethodRegistry,
    opts: &RunOptions,
) -> Result<BenchmarkReport> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let methods = registry.instantiate(lc)?;
    let split = build_split(lc)?;
    let truth = split.query_labels();
    // held-out mode: the query and the held-out training cells, predicted in one run
    let stacked = match &split.held_out {
        Some(h) => Some(stack_cells(&split.query, h)?),
        None => None,
    };
    let held_truth = split.held_out_labels();
    let ucx = Context {
        truth: &truth,
        train_classes: &split.info.train_classes,
        novel: &lc.config.novel,
        held_out_truth: split.held_out.as_ref().map(|_| held_truth.as_slice()),
        unknown_quantile: lc.unknown_quantile(),
        coverage: lc.coverage(),
        seed: lc.config.seed,
    };
    let c = &lc.config;
    let nm = methods.len();
    let mut results = Vec::new();
    let mut table = PredictionTable {
        cell_ids: split.query.obs.index.clone(),
        truth: truth.clone(),
        methods: Vec::new(),
    };
    for (k, m) in methods.iter().enumerate() {
        let name = m.name();
        let line = Line::start(
            opts.progress,
            format!(
                "[{}/{nm}] {name}: training on {} cells, predicting {}",
                k + 1,
                split.info.n_train,
                split.info.n_query
            ),
        );
        let input = stacked.as_ref().unwrap_or(&split.query);
        let o = run_one(m.as_ref(), &split.train, input, &split.label, c.seed);
        let mut r = MethodResult {
            name: name.clone(),
            status: "ok".into(),
            error: None,
            trainable_params: m.trainable_params(),
            metrics: None,
            n_unknown: 0,
            accuracy_on_accepted: None,
            wall_seconds: o.wall,
            memory: o.mem,
            peak_increase_bytes: o.mem.increase_bytes(),
            details: serde_json::Value::Null,
            notes: vec![],
            calibration: None,
            novel_types: None,
            conformal: None,
        };
        match o.pred {
            Ok(p) => {
                let (p, held) = if stacked.is_some() {
                    let (q, h) = p.split_at(split.query.n_obs());
                    (q, Some(h))
                } else {
                    (p, None)
                };
                let u = assess(&p, held.as_ref(), &ucx)?;
                let (labels, n_unknown) = final_labels(&p, c.unknown_below);
                if c.unknown_below.is_some() && p.confidence.is_none() {
                    r.notes
                        .push("unknown_below not applied: this method gives no confidence".into());
                }
                let rep = classification_report(&truth, &labels)?;
                if n_unknown > 0 {
                    let acc: Vec<usize> = (0..labels.len())
                        .filter(|&i| labels[i] != UNKNOWN)
                        .collect();
                    if !acc.is_empty() {
                        r.accuracy_on_accepted = Some(
                            acc.iter().filter(|&&i| labels[i] == truth[i]).count() as f64
                                / acc.len() as f64,
                        );
                    }
                }
                r.n_unknown = n_unknown;
                r.trainable_params = p.trainable_params.or(r.trainable_params);
                r.details = p.details;
                r.notes.extend(p.notes);
                r.notes.extend(u.notes);
                r.calibration = u.calibration;
                r.novel_types = u.novel_types;
                r.conformal = u.conformal;
                line.finish(format!(
                    "[{}/{nm}] {name}: accuracy {:.4}, macro F1 {:.4}, {:.1} s, peak {}",
                    k + 1,
                    rep.accuracy,
                    rep.f1_macro,
                    o.wall,
                    fmt_bytes(o.mem.peak_rss_bytes)
                ));
                r.metrics = Some(rep);
                table.methods.push((name.clone(), labels));
                if let Some(sets) = u.set_labels {
                    table.methods.push((format!("{name} conformal set"), sets));
                }
            }
            Err(e) => {
                line.finish(format!("[{}/{nm}] {name}: FAILED: {e}", k + 1));
                r.status = "failed".into();
                r.error = Some(e.to_string());
            }
        }
        results.push(r);
    }
    let fewshot = match (&c.fewshot, opts.skip_fewshot) {
        (Some(fs), false) => Some(run_fewshot(lc, &split, &methods, fs, opts)?),
        _ => None,
    };
    let rare = rare_classes(&split, c.rare_classes);
    Ok(BenchmarkReport {
        schema: 1,
        name: lc.name(),
        description: c.description.clone(),
        config_file: lc.file(),
        config: serde_json::to_value(c).unwrap_or(serde_json::Value::Null),
        config_text: lc.text.clone(),
        versions: Versions::current(),
        started_unix: started,
        split: split.info.clone(),
        methods: results,
        rare_classes: rare,
        held_out: lc.held_out_mode().then(|| HeldOutSettings {
            novel_types: c.novel.clone(),
            n_held_out: split.info.n_held_out,
            fraction: lc.held_out_fraction(),
            unknown_quantile: lc.unknown_quantile(),
            threshold_rule: scllm_eval::novelty::THRESHOLD_RULE.to_string(),
            coverage: lc.coverage(),
        }),
        fewshot,
        memory_note: MEMORY_NOTE.to_string(),
        predictions: table,
    })
}

/// The `n` query classes with the fewest cells (ties by name), that training also has.
fn rare_classes(split: &Split, n: usize) -> Vec<String> {
    let mut v: Vec<(&String, &usize)> = split
        .info
        .query_classes
        .iter()
        .filter(|(k, _)| split.info.train_classes.contains_key(*k))
        .collect();
    v.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    v.into_iter().take(n).map(|(k, _)| k.clone()).collect()
}

fn run_fewshot(
    lc: &LoadedConfig,
    split: &Split,
    methods: &[Box<dyn BenchMethod>],
    fs: &crate::config::FewShotConfig,
    opts: &RunOptions,
) -> Result<FewShotReport> {
    let train_labels = labels_of(&split.train, &split.label);
    let truth = split.query_labels();
    let unknown_below = lc.config.unknown_below;
    let mut settings: Vec<(&'static str, f64)> =
        fs.fractions.iter().map(|&f| ("fraction", f)).collect();
    settings.extend(fs.shots.iter().map(|&k| ("shots", k as f64)));
    let total = settings.len() * fs.seeds.len() * methods.len();
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template(
                "few-shot [{bar:30}] {pos}/{len} ({elapsed}, eta {eta}) {msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut out = Vec::new();
    for (kind, value) in settings {
        let mut runs = Vec::new();
        for &seed in &fs.seeds {
            let idx = if kind == "fraction" {
                sample_fraction(&train_labels, value, seed)
            } else {
                sample_shots(&train_labels, value as usize, seed)
            };
            let sub = split.train.select_obs(&idx);
            for m in methods {
                bar.set_message(format!("{} {kind}={value} seed={seed}", m.name()));
                let o = run_one(m.as_ref(), &sub, &split.query, &split.label, seed);
                let mut run = FewShotRun {
                    method: m.name(),
                    seed,
                    n_train: idx.len(),
                    accuracy: None,
                    balanced_accuracy: None,
                    f1_macro: None,
                    f1_weighted: None,
                    wall_seconds: o.wall,
                    peak_rss_bytes: o.mem.peak_rss_bytes,
                    error: None,
                };
                match o.pred {
                    Ok(p) => {
                        let (labels, _) = final_labels(&p, unknown_below);
                        let rep = classification_report(&truth, &labels)?;
                        run.accuracy = Some(rep.accuracy);
                        run.balanced_accuracy = Some(rep.balanced_accuracy);
                        run.f1_macro = Some(rep.f1_macro);
                        run.f1_weighted = Some(rep.f1_weighted);
                    }
                    Err(e) => run.error = Some(e.to_string()),
                }
                bar.inc(1);
                runs.push(run);
            }
        }
        let summary = methods
            .iter()
            .map(|m| {
                let name = m.name();
                let mine: Vec<&FewShotRun> = runs.iter().filter(|r| r.method == name).collect();
                let get = |f: &dyn Fn(&FewShotRun) -> Option<f64>| {
                    MeanCi::of(&mine.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
                };
                FewShotSummary {
                    method: name.clone(),
                    n_ok: mine.iter().filter(|r| r.error.is_none()).count(),
                    n_failed: mine.iter().filter(|r| r.error.is_some()).count(),
                    n_train_mean: mine.iter().map(|r| r.n_train as f64).sum::<f64>()
                        / mine.len().max(1) as f64,
                    accuracy: get(&|r| r.accuracy),
                    balanced_accuracy: get(&|r| r.balanced_accuracy),
                    f1_macro: get(&|r| r.f1_macro),
                    f1_weighted: get(&|r| r.f1_weighted),
                }
            })
            .collect();
        if opts.progress && !std::io::stderr().is_terminal() {
            eprintln!("few-shot {kind} = {value}: {} runs done", runs.len());
        }
        out.push(FewShotSetting {
            kind: kind.to_string(),
            value,
            runs,
            summary,
        });
    }
    bar.finish_and_clear();
    Ok(FewShotReport {
        seeds: fs.seeds.clone(),
        definition: "shots = k: k training cells per class, all cells of classes with fewer than k; fraction = f: max(1, round(f * n_class)) cells per class; seeded shuffles; query set unchanged. mean ± half-width of the 95% Student-t interval over seeds".into(),
        settings: out,
    })
}
