//! The report: `results.json` (everything), `results.md` (the tables), `predictions.tsv`
//! (cell id, truth, one column per method). Every file is written to a temporary name in the
//! report folder and renamed into place, so a reader never sees half a file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use scllm_eval::calibration::Calibration;
use scllm_eval::conformal::ConformalReport;
use scllm_eval::novelty::NovelTypeReport;
use scllm_eval::ClassificationReport;
use serde::Serialize;

use crate::fewshot::MeanCi;
use crate::memory::MemoryReading;
use crate::train_query_split::SplitInfo;
use crate::uncertainty::HeldOutSettings;
use crate::uncertainty_tables::{render_uncertainty_sections, MethodRow};
use crate::{BenchError, Result};

#[derive(Clone, Debug, Serialize)]
pub struct Versions {
    pub scllm_benchmark: &'static str,
    pub os: &'static str,
    pub arch: &'static str,
    /// Cores available to the process (`std::thread::available_parallelism`).
    pub cpus: usize,
}

impl Versions {
    pub fn current() -> Versions {
        Versions {
            scllm_benchmark: env!("CARGO_PKG_VERSION"),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// One method on the main split.
#[derive(Clone, Debug, Serialize)]
pub struct MethodResult {
    pub name: String,
    /// `ok` or `failed` (then `error` says why; the other methods still ran).
    pub status: String,
    pub error: Option<String>,
    pub trainable_params: Option<usize>,
    pub metrics: Option<ClassificationReport>,
    /// Query cells predicted `Unknown` (confidence below `unknown_below`).
    pub n_unknown: usize,
    pub accuracy_on_accepted: Option<f64>,
    /// Wall time of the method's `run` (training and prediction, after the data was loaded).
    pub wall_seconds: f64,
    pub memory: MemoryReading,
    pub peak_increase_bytes: Option<u64>,
    pub details: serde_json::Value,
    pub notes: Vec<String>,
    /// Calibration of the method's probabilities on query cells of known types (methods with
    /// probabilities only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Novel-type results (configs with `novel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novel_types: Option<NovelTypeReport>,
    /// Conformal prediction sets calibrated on the held-out training cells (held-out mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conformal: Option<ConformalReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FewShotRun {
    pub method: String,
    pub seed: u64,
    pub n_train: usize,
    pub accuracy: Option<f64>,
    pub balanced_accuracy: Option<f64>,
    pub f1_macro: Option<f64>,
    pub f1_weighted: Option<f64>,
    pub wall_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FewShotSummary {
    pub method: String,
    pub n_ok: usize,
    pub n_failed: usize,
    pub n_train_mean: f64,
    pub accuracy: MeanCi,
    pub balanced_accuracy: MeanCi,
    pub f1_macro: MeanCi,
    pub f1_weighted: MeanCi,
}

#[derive(Clone, Debug, Serialize)]
pub struct FewShotSetting {
    /// `fraction` or `shots`.
    pub kind: String,
    pub value: f64,
    pub runs: Vec<FewShotRun>,
    pub summary: Vec<FewShotSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FewShotReport {
    pub seeds: Vec<u64>,
    pub definition: String,
    pub settings: Vec<FewShotSetting>,
}

/// Per-cell predictions of the main split (written to `predictions.tsv`, not to the JSON).
#[derive(Clone, Debug, Default)]
pub struct PredictionTable {
    pub cell_ids: Vec<String>,
    pub truth: Vec<String>,
    pub methods: Vec<(String, Vec<String>)>,
}

/// Everything a benchmark run produced.
#[derive(Clone, Debug, Serialize)]
pub struct BenchmarkReport {
    pub schema: u32,
    pub name: String,
    pub description: Option<String>,
    pub config_file: String,
    /// The parsed config (defaults filled in).
    pub config: serde_json::Value,
    /// The config file's text as read.
    pub config_text: String,
    pub versions: Versions,
    pub started_unix: u64,
    pub split: SplitInfo,
    pub methods: Vec<MethodResult>,
    /// The query classes with the fewest cells (the rare-type table's columns).
    pub rare_classes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOutSettings>,
    pub fewshot: Option<FewShotReport>,
    pub memory_note: String,
    #[serde(skip)]
    pub predictions: PredictionTable,
}

impl BenchmarkReport {
    /// Methods that failed (the CLI may exit non-zero when this is not empty).
    pub fn failures(&self) -> Vec<&MethodResult> {
        self.methods.iter().filter(|m| m.status != "ok").collect()
    }
}

fn f4(x: f64) -> String {
    format!("{x:.4}")
}

fn params(p: Option<usize>) -> String {
    match p {
        None => "n/a".into(),
        Some(n) if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        Some(n) if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        Some(n) => n.to_string(),
    }
}

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
        .unwrap_or_else(|| "n/a".into())
}

fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// The main table (the scPEFT paper's Table 3 layout): one row per method.
pub fn render_main_table(r: &BenchmarkReport) -> String {
    let mut s = String::new();
    s.push_str("| Method | Trainable params | Accuracy | Macro precision | Macro recall | Macro F1 | Weighted F1 | Wall time | Peak memory (+increase) |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in &r.methods {
        match &m.metrics {
            Some(x) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} (+{}) |",
                    m.name,
                    params(m.trainable_params),
                    f4(x.accuracy),
                    f4(x.precision_macro),
                    f4(x.recall_macro),
                    f4(x.f1_macro),
                    f4(x.f1_weighted),
                    secs(m.wall_seconds),
                    mib(m.memory.peak_rss_bytes),
                    mib(m.peak_increase_bytes)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | {} | failed | | | | | {} | {} |",
                    m.name,
                    params(m.trainable_params),
                    secs(m.wall_seconds),
                    mib(m.memory.peak_rss_bytes)
                );
            }
        }
    }
    s
}

/// Per-class F1 of the rarest query classes (the scPEFT paper's Tables 4-6 layout).
pub fn render_rare_table(r: &BenchmarkReport) -> String {
    if r.rare_classes.is_empty() {
        return String::new();
    }
    let mut s = String::from("| Method |");
    for c in &r.rare_classes {
        let n = r.split.query_classes.get(c).copied().unwrap_or(0);
        let _ = write!(s, " {c} (n={n}) |");
    }
    s.push('\n');
    s.push_str("|---|");
    for _ in &r.rare_classes {
        s.push_str("---:|");
    }
    s.push('\n');
    for m in &r.methods {
        let _ = write!(s, "| {} |", m.name);
        for c in &r.rare_classes {
            let v = m
                .metrics
                .as_ref()
                .and_then(|x| x.per_class.iter().find(|row| &row.label == c))
                .map(|row| f4(row.f1))
                .unwrap_or_else(|| "n/a".into());
            let _ = write!(s, " {v} |");
        }
        s.push('\n');
    }
    s
}

/// Few-shot tables: accuracy and macro F1, mean ± 95% CI over seeds, setting × method.
pub fn render_fewshot_tables(r: &BenchmarkReport) -> String {
    let Some(fs) = &r.fewshot else {
        return String::new();
    };
    let methods: Vec<String> = r.methods.iter().map(|m| m.name.clone()).collect();
    let mut s = String::new();
    for (title, pick) in [
        (
            "Accuracy",
            (|x: &crate::report::FewShotSummary| x.accuracy) as fn(&FewShotSummary) -> MeanCi,
        ),
        ("Macro F1", |x: &FewShotSummary| x.f1_macro),
    ] {
        let _ = writeln!(s, "**{title}** (mean ± 95% CI over seeds {:?})\n", fs.seeds);
        s.push_str("| Setting | Train cells (mean) |");
        for m in &methods {
            let _ = write!(s, " {m} |");
        }
        s.push_str("\n|---|---:|");
        for _ in &methods {
            s.push_str("---:|");
        }
        s.push('\n');
        for st in &fs.settings {
            let label = if st.kind == "shots" {
                format!("{} per class", st.value as usize)
            } else {
                format!("fraction {}", st.value)
            };
            let ntr = st.summary.first().map(|x| x.n_train_mean).unwrap_or(0.0);
            let _ = write!(s, "| {label} | {ntr:.0} |");
            for m in &methods {
                let v = st
                    .summary
                    .iter()
                    .find(|x| &x.method == m)
                    .map(|x| {
                        if x.n_ok == 0 {
                            "failed".to_string()
                        } else {
                            let mut t = pick(x).display(4);
                            if x.n_failed > 0 {
                                let _ = write!(t, " ({} failed)", x.n_failed);
                            }
                            t
                        }
                    })
                    .unwrap_or_else(|| "n/a".into());
                let _ = write!(s, " {v} |");
            }
            s.push('\n');
        }
        s.push('\n');
    }
    s
}

/// The whole `results.md`; `pictures` are paths (relative to the report folder) to link.
pub fn render_markdown(r: &BenchmarkReport, pictures: &[PathBuf]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark: {}\n", r.name);
    if let Some(d) = &r.description {
        let _ = writeln!(s, "{d}\n");
    }
    let sp = &r.split;
    let _ = writeln!(s, "- config: `{}`", r.config_file);
    let _ = writeln!(s, "- split: {}", sp.description);
    let _ = writeln!(s, "- labels: {}", sp.label_column);
    let _ = writeln!(
        s,
        "- train: {} cells, {} classes; query: {} cells, {} classes; {} genes",
        sp.n_train,
        sp.train_classes.len(),
        sp.n_query,
        sp.query_classes.len(),
        sp.n_genes
    );
    if !sp.removed.is_empty() {
        let _ = writeln!(
            s,
            "- removed before the split: {}",
            sp.removed
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    for n in &sp.notes {
        let _ = writeln!(s, "- {n}");
    }
    let _ = writeln!(
        s,
        "- machine: {} {}, {} cores; scllm-benchmark {}",
        r.versions.os, r.versions.arch, r.versions.cpus, r.versions.scllm_benchmark
    );
    s.push_str("\n## Results\n\n");
    s.push_str(&render_main_table(r));
    s.push_str("\nTrainable params: parameters fitted on the training set (logreg: (genes + 1) × classes; knn-pca: PCA loadings; correlation: one profile per class over the marker genes; models: as reported by the method). ");
    let _ = writeln!(
        s,
        "Wall time: the method's training plus prediction, data loading excluded. Memory: {}.\n",
        r.memory_note
    );
    for m in &r.methods {
        if let Some(e) = &m.error {
            let _ = writeln!(s, "- **{} failed**: {e}", m.name);
        }
        if m.n_unknown > 0 {
            let _ = writeln!(
                s,
                "- {}: {} query cells predicted Unknown; accuracy on the others {}",
                m.name,
                m.n_unknown,
                m.accuracy_on_accepted
                    .map(f4)
                    .unwrap_or_else(|| "n/a".into())
            );
        }
    }
    if !r.rare_classes.is_empty() {
        s.push_str("\n## Rare cell types: per-class F1\n\nThe query classes with the fewest cells (n = query cells).\n\n");
        s.push_str(&render_rare_table(r));
    }
    let support: Vec<String> = sp
        .query_classes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(s, "\nQuery composition: {}.", support.join(", "));
    let rows: Vec<MethodRow> = r
        .methods
        .iter()
        .map(|m| MethodRow {
            name: &m.name,
            ok: m.status == "ok",
            calibration: m.calibration.as_ref(),
            novel_types: m.novel_types.as_ref(),
            conformal: m.conformal.as_ref(),
        })
        .collect();
    s.push_str(&render_uncertainty_sections(
        &rows,
        &r.split,
        r.held_out.as_ref(),
    ));
    if r.fewshot.is_some() {
        s.push_str("\n## Few-shot\n\n");
        if let Some(fs) = &r.fewshot {
            let _ = writeln!(s, "{}.\n", fs.definition);
        }
        s.push_str(&render_fewshot_tables(r));
    }
    if !pictures.is_empty() {
        s.push_str("\n## Pictures\n\n");
        // PNGs shown; each has an SVG twin next to it
        for p in pictures
            .iter()
            .filter(|p| p.extension().is_none_or(|e| e != "svg"))
        {
            let _ = writeln!(s, "![{}]({})", p.display(), p.display());
        }
    }
    s
}

/// Draws pictures of a report into the report folder and returns their paths relative to it.
/// This is the hook for `scllm-eval`'s plotting (UMAP, confusion heat maps); nothing is drawn
/// unless the caller passes one to [`write_report`].
pub type PictureHook = dyn Fn(&BenchmarkReport, &Path) -> Result<Vec<PathBuf>>;

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    scllm_fs::write_atomic(path, bytes).map_err(|e| BenchError::File {
        path: path.display().to_string(),
        source: e,
    })
}

fn tsv_field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// `predictions.tsv`: `cell_id`, `truth`, one column per method.
pub fn render_predictions_tsv(r: &BenchmarkReport) -> String {
    let p = &r.predictions;
    let mut s = String::from("cell_id\ttruth");
    for (m, _) in &p.methods {
        let _ = write!(s, "\t{}", tsv_field(m));
    }
    s.push('\n');
    for i in 0..p.cell_ids.len() {
        s.push_str(&tsv_field(&p.cell_ids[i]));
        s.push('\t');
        s.push_str(&tsv_field(&p.truth[i]));
        for (_, l) in &p.methods {
            s.push('\t');
            s.push_str(&tsv_field(&l[i]));
        }
        s.push('\n');
    }
    s
}

/// Write `results.json`, `results.md` and `predictions.tsv` into `dir` (created if needed);
/// `pictures`, when given, draws first and its files are linked from `results.md`.
/// Returns the paths written.
pub fn write_report(
    r: &BenchmarkReport,
    dir: &Path,
    pictures: Option<&PictureHook>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::File {
        path: dir.display().to_string(),
        source: e,
    })?;
    let pics = match pictures {
        Some(h) => h(r, dir)?,
        None => Vec::new(),
    };
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| BenchError::Method(format!("results.json: {e}")))?;
    let out = vec![
        dir.join("results.json"),
        dir.join("results.md"),
        dir.join("predictions.tsv"),
    ];
    write_file(&out[0], json.as_bytes())?;
    write_file(&out[1], render_markdown(r, &pics).as_bytes())?;
    write_file(&out[2], render_predictions_tsv(r).as_bytes())?;
    Ok(out
        .into_iter()
        .chain(pics.into_iter().map(|p| dir.join(p)))
        .collect())
}
