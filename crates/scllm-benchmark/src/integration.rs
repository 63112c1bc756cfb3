//! Running a `task = "integration"` config ([`crate::integration_config`]): the cells read and
//! filtered once, the unintegrated embedding computed once (the `n_hvg` seurat HVGs of log1p
//! CP10k, 50 principal components: scIB's "HVG + PCA"), every method's embedding of all cells
//! (wall time and peak memory measured around it), the scIB metrics of each
//! ([`scllm_integrate::scib`], the PCR comparison against the PCA), a ranking by the total
//! score, and the report (`results.json`, `results.md`, `scib_results.{png,svg}`).
//!
//! Built-in methods: `pca` (the unintegrated embedding itself) and `harmony` (Harmony on it,
//! as harmonypy). Model methods (a model's zero-shot cell embedding) are registered by the
//! caller, as for annotation benchmarks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use scllm_eval::anndata_input::log_normalized;
use scllm_eval::baselines::select_hvg;
use scllm_eval::encode_labels;
use scllm_eval::linalg::Pca;
use scllm_integrate::harmony::{harmony, HarmonyOptions};
use scllm_integrate::pcr::pcr;
use scllm_integrate::scib::{
    plot_scib_table, score_embedding, EmbeddingScores, Groups, ScibOptions,
};
use scllm_io::{read_h5ad, AnnData};
use serde::Serialize;

use crate::integration_config::LoadedIntegration;
use crate::memory::{MemoryReading, MEMORY_NOTE};
use crate::{cfg_err, BenchError, Result};

/// What a method sees: the benchmark's cells (every one labelled and in a batch) and the
/// unintegrated embedding.
pub struct EmbeddingContext<'a> {
    pub cells: &'a AnnData,
    /// PCA of the HVGs, row-major `n × pca_dims`.
    pub pca: &'a [f32],
    pub pca_dims: usize,
    pub batch: &'a [u32],
    pub n_batches: usize,
    /// The obs column of the batches.
    pub batch_column: &'a str,
    /// The obs column of the cell types (what a fine-tuning method trains on).
    pub label_column: &'a str,
    pub seed: u64,
}

/// A method's embedding of every cell.
pub struct Embedded {
    /// Row-major `n × dims`.
    pub x: Vec<f32>,
    pub dims: usize,
    /// What the method records about its run (model, options, ...).
    pub details: serde_json::Value,
}

/// A method of an integration benchmark.
pub trait EmbeddingMethod {
    fn embed(&self, ctx: &EmbeddingContext) -> std::result::Result<Embedded, String>;
}

/// Builds a method from its name (as listed in `methods`) and its `[options.NAME]` table.
pub type EmbeddingFactory = Box<
    dyn Fn(
        &str,
        Option<&toml::Table>,
        &LoadedIntegration,
    ) -> std::result::Result<Box<dyn EmbeddingMethod>, String>,
>;

/// Method names (or `prefix:` families) and how to build them.
pub struct EmbeddingRegistry {
    entries: Vec<(String, EmbeddingFactory)>,
}

impl Default for EmbeddingRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl EmbeddingRegistry {
    /// `pca` and `harmony`.
    pub fn builtin() -> Self {
        let mut r = EmbeddingRegistry {
            entries: Vec::new(),
        };
        r.add(
            "pca",
            Box::new(|_, opts, _| {
                no_options("pca", opts)?;
                Ok(Box::new(PcaMethod))
            }),
        );
        r.add(
            "harmony",
            Box::new(|_, opts, _| Ok(Box::new(HarmonyMethod::from_options(opts)?))),
        );
        r
    }

    /// Registers `name` (exact), or every `name...` when it ends in `:`.
    pub fn add(&mut self, name: &str, f: EmbeddingFactory) {
        self.entries.push((name.to_string(), f));
    }

    fn build(&self, name: &str, lc: &LoadedIntegration) -> Result<Box<dyn EmbeddingMethod>> {
        let opts = lc.config.options.get(name);
        let found = self
            .entries
            .iter()
            .find(|(k, _)| k == name || (k.ends_with(':') && name.starts_with(k.as_str())));
        match found {
            Some((_, f)) => f(name, opts, lc)
                .map_err(|e| cfg_err(format!("{}: method `{name}`: {e}", lc.file_name()))),
            None => Err(cfg_err(format!(
                "{}: field `methods`: unknown method `{name}`; integration methods: {}",
                lc.file_name(),
                self.entries
                    .iter()
                    .map(|(k, _)| match k.as_str() {
                        "finetune:" => format!("{k}<strategy>"),
                        _ if k.ends_with(':') => format!("{k}<model folder>"),
                        _ => k.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

fn no_options(name: &str, opts: Option<&toml::Table>) -> std::result::Result<(), String> {
    match opts.and_then(|t| t.keys().next()) {
        Some(k) => Err(format!(
            "option `{k}` does not apply to `{name}` (it takes none)"
        )),
        None => Ok(()),
    }
}

struct PcaMethod;

impl EmbeddingMethod for PcaMethod {
    fn embed(&self, ctx: &EmbeddingContext) -> std::result::Result<Embedded, String> {
        Ok(Embedded {
            x: ctx.pca.to_vec(),
            dims: ctx.pca_dims,
            details: serde_json::json!({"what": "the unintegrated embedding (HVG + PCA)"}),
        })
    }
}

struct HarmonyMethod {
    options: HarmonyOptions,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HarmonyToml {
    theta: Option<f32>,
    lambda: Option<f32>,
    sigma: Option<f32>,
    nclust: Option<usize>,
    max_iter_harmony: Option<usize>,
}

impl HarmonyMethod {
    fn from_options(opts: Option<&toml::Table>) -> std::result::Result<Self, String> {
        let t: HarmonyToml = match opts {
            Some(t) => t.clone().try_into().map_err(|e| format!("{e}"))?,
            None => HarmonyToml::default(),
        };
        let d = HarmonyOptions::default();
        Ok(HarmonyMethod {
            options: HarmonyOptions {
                theta: t.theta.unwrap_or(d.theta),
                lambda: t.lambda.or(d.lambda),
                sigma: t.sigma.unwrap_or(d.sigma),
                nclust: t.nclust.or(d.nclust),
                max_iter_harmony: t.max_iter_harmony.unwrap_or(d.max_iter_harmony),
                ..d
            },
        })
    }
}

impl EmbeddingMethod for HarmonyMethod {
    fn embed(&self, ctx: &EmbeddingContext) -> std::result::Result<Embedded, String> {
        let n = ctx.cells.n_obs();
        let o = HarmonyOptions {
            random_state: ctx.seed as u32,
            ..self.options.clone()
        };
        let r = harmony(ctx.pca, n, ctx.pca_dims, ctx.batch, ctx.n_batches, &o)
            .map_err(|e| e.to_string())?;
        Ok(Embedded {
            x: r.corrected,
            dims: ctx.pca_dims,
            details: serde_json::json!({
                "what": "Harmony on the PCA (harmonypy 2.1.0's algorithm)",
                "clusters": r.nclust, "iterations": r.iterations, "converged": r.converged,
            }),
        })
    }
}

/// One method's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct IntegrationMethodResult {
    pub name: String,
    /// Rank by total score (1 = best), among methods that ran.
    pub rank: Option<usize>,
    pub dims: Option<usize>,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub scores: Option<EmbeddingScores>,
    pub details: serde_json::Value,
    pub error: Option<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct IntegrationReport {
    pub name: String,
    pub task: &'static str,
    pub description: Option<String>,
    pub data: String,
    pub cells: usize,
    pub label: String,
    pub labels: BTreeMap<String, usize>,
    pub batch: String,
    pub batches: BTreeMap<String, usize>,
    pub removed: BTreeMap<String, usize>,
    pub notes: Vec<String>,
    pub pca: String,
    pub memory_note: &'static str,
    pub methods: Vec<IntegrationMethodResult>,
    pub config: String,
}

impl IntegrationReport {
    pub fn failures(&self) -> Vec<&IntegrationMethodResult> {
        self.methods.iter().filter(|m| m.error.is_some()).collect()
    }
}

fn counts(values: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v.clone()).or_insert(0) += 1;
    }
    m
}

/// The values of obs column `col` (every cell has one once [`cells`] has kept it).
fn present_values(a: &AnnData, col: &str) -> Result<Vec<String>> {
    Ok(a.obs_column(col)?
        .to_strings()
        .into_iter()
        .flatten()
        .collect())
}

/// A filter's obs column (each cell's value) and the values it names.
type FilterColumn = (Vec<Option<String>>, Vec<String>);

/// The cells of the benchmark: filtered, labelled, in a batch, capped per batch.
fn cells(
    lc: &LoadedIntegration,
    removed: &mut BTreeMap<String, usize>,
    notes: &mut Vec<String>,
) -> Result<AnnData> {
    let cfg = lc.file_name();
    let c = &lc.config;
    let a = read_h5ad(&lc.file)?;
    let col = |name: &str, field: &str| {
        a.obs_column(name).map(|c| c.to_strings()).map_err(|_| {
            cfg_err(format!(
                "{cfg}: field `{field}`: no obs column `{name}` in {} (columns: {})",
                lc.file.display(),
                a.obs.column_names().join(", ")
            ))
        })
    };
    let labels = col(&c.label, "label")?;
    let batch = col(&c.batch, "batch")?;
    let filters = |fs: &[crate::config::Filter], field: &str| -> Result<Vec<FilterColumn>> {
        fs.iter()
            .enumerate()
            .map(|(i, f)| {
                Ok((
                    col(&f.column, &format!("data.{field}[{i}].column"))?,
                    f.values.iter().map(|v| v.as_text()).collect(),
                ))
            })
            .collect()
    };
    let inc = filters(&c.data.include, "include")?;
    let exc = filters(&c.data.exclude, "exclude")?;
    let mut keep = Vec::new();
    for i in 0..a.n_obs() {
        let hit = |(v, vals): &FilterColumn| v[i].as_ref().is_some_and(|x| vals.contains(x));
        let why = if labels[i].is_none() {
            Some("unlabeled (NaN)".to_string())
        } else if batch[i].is_none() {
            Some("no batch (NaN)".to_string())
        } else if !inc.iter().all(hit) {
            Some("not in data.include".to_string())
        } else if exc.iter().any(hit) {
            Some("in data.exclude".to_string())
        } else if c.data.drop_labels.contains(labels[i].as_ref().unwrap()) {
            Some(format!(
                "label `{}` in data.drop_labels",
                labels[i].as_ref().unwrap()
            ))
        } else {
            None
        };
        match why {
            Some(w) => *removed.entry(w).or_insert(0) += 1,
            None => keep.push(i),
        }
    }
    let mut a = a.select_obs(&keep);
    if let Some(k) = c.data.max_cells_per_batch {
        let b = present_values(&a, &c.batch)?;
        let sel = crate::fewshot::sample_shots(&b, k, c.seed);
        if sel.len() < b.len() {
            notes.push(format!(
                "at most {k} cells per batch (seed {}): {} of {} cells",
                c.seed,
                sel.len(),
                b.len()
            ));
            a = a.select_obs(&sel);
        }
    }
    Ok(a)
}

/// Runs every method of `lc` (built from `reg`; unknown names fail before any data is read).
pub fn run_integration(
    lc: &LoadedIntegration,
    reg: &EmbeddingRegistry,
    progress: bool,
) -> Result<IntegrationReport> {
    let cfg = lc.file_name();
    let c = &lc.config;
    let methods: Vec<(String, Box<dyn EmbeddingMethod>)> = c
        .methods
        .iter()
        .map(|m| Ok((m.clone(), reg.build(m, lc)?)))
        .collect::<Result<_>>()?;
    let mut removed = BTreeMap::new();
    let mut notes = Vec::new();
    let a = cells(lc, &mut removed, &mut notes)?;
    let n = a.n_obs();
    let labels = present_values(&a, &c.label)?;
    let batches = present_values(&a, &c.batch)?;
    let (lab_names, lab) = encode_labels(&labels);
    let (bat_names, bat) = encode_labels(&batches);
    if bat_names.len() < 2 {
        return Err(cfg_err(format!(
            "{cfg}: field `batch`: obs['{}'] has one value among the cells kept; integration needs two batches or more",
            c.batch
        )));
    }
    if lab_names.len() < 2 {
        return Err(cfg_err(format!(
            "{cfg}: field `label`: obs['{}'] has one value among the cells kept; the metrics need two labels or more",
            c.label
        )));
    }
    if n < scllm_integrate::scib::NEIGHBORS[2] {
        return Err(cfg_err(format!(
            "{cfg}: {n} cells kept, fewer than the 90 neighbours LISI uses"
        )));
    }
    // the unintegrated embedding: HVGs of log1p CP10k, 50 PCs
    let log = log_normalized(&a, None)?;
    let hvg = select_hvg(&log.x, &log.genes, c.n_hvg, scllm_pp::HvgFlavor::Seurat)?;
    let xh = match scllm_io::Matrix::Csr(log.x.clone()).select_cols(&hvg) {
        scllm_io::Matrix::Csr(m) => m,
        other => other.to_csr(),
    };
    let pca_fit = Pca::fit(&xh, 50, 20, c.seed);
    let pca = pca_fit.transform(&xh);
    let pca_dims = pca_fit.n_comps;
    let groups = Groups {
        labels: lab,
        n_labels: lab_names.len(),
        batch: bat,
        n_batches: bat_names.len(),
    };
    let pre_pcr = pcr(&pca, n, pca_dims, &groups.batch, groups.n_batches);
    let ctx = EmbeddingContext {
        cells: &a,
        pca: &pca,
        pca_dims,
        batch: &groups.batch,
        n_batches: groups.n_batches,
        batch_column: &c.batch,
        label_column: &c.label,
        seed: c.seed,
    };
    let opts = ScibOptions {
        leiden: c.leiden,
        seed: c.seed,
        ..Default::default()
    };
    let mut results = Vec::new();
    for (name, m) in &methods {
        if progress {
            eprintln!("{name}: embedding {n} cells");
        }
        let mem = MemoryReading::start();
        let t = Instant::now();
        let out = m.embed(&ctx);
        let seconds = t.elapsed().as_secs_f64();
        let mem = mem.finish();
        let (dims, scores, details, error) = match out {
            Ok(e) if e.x.len() != n * e.dims => {
                let msg = format!(
                    "returned {} values for {n} cells x {} dims",
                    e.x.len(),
                    e.dims
                );
                (None, None, e.details, Some(msg))
            }
            Ok(e) => {
                let scores = score_embedding(&e.x, n, e.dims, &groups, pre_pcr, &opts, &|_| {})
                    .map_err(|e| BenchError::Method(format!("{name}: scoring: {e}")))?;
                if progress {
                    eprintln!(
                        "{name}: total {:.3} in {seconds:.1} s",
                        scores.get("Total").unwrap_or(f64::NAN)
                    );
                }
                (Some(e.dims), Some(scores), e.details, None)
            }
            Err(msg) => {
                if progress {
                    eprintln!("{name}: failed: {msg}");
                }
                (None, None, serde_json::Value::Null, Some(msg))
            }
        };
        let r = IntegrationMethodResult {
            name: name.clone(),
            rank: None,
            dims,
            seconds,
            peak_rss_bytes: mem.peak_rss_bytes,
            scores,
            details,
            error,
        };
        results.push(r);
    }
    let total = |r: &IntegrationMethodResult| {
        r.scores
            .as_ref()
            .and_then(|s| s.get("Total"))
            .unwrap_or(f64::NAN)
    };
    let mut order: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].scores.is_some())
        .collect();
    order.sort_by(|&x, &y| total(&results[y]).total_cmp(&total(&results[x])));
    for (rank, &i) in order.iter().enumerate() {
        results[i].rank = Some(rank + 1);
    }
    Ok(IntegrationReport {
        name: lc.name(),
        task: "integration",
        description: c.description.clone(),
        data: lc.file.display().to_string(),
        cells: n,
        label: c.label.clone(),
        labels: counts(&labels),
        batch: c.batch.clone(),
        batches: counts(&batches),
        removed,
        notes,
        pca: format!(
            "{} seurat HVGs of log1p(CP10k) ({}), {pca_dims} principal components; the PCR comparison's reference",
            hvg.len(),
            log.note
        ),
        memory_note: MEMORY_NOTE,
        methods: results,
        config: lc.text.clone(),
    })
}

fn f3(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "n/a".into(),
    }
}

/// The results table, best total first; failed methods at the end with their error.
pub fn render_integration_table(r: &IntegrationReport) -> String {
    let Some(first) = r.methods.iter().find_map(|m| m.scores.as_ref()) else {
        return "no method produced an embedding".into();
    };
    let names: Vec<&str> = first.metrics.iter().map(|m| m.name).collect();
    let mut s = format!("| rank | method | {} | s | peak MiB |\n", names.join(" | "));
    s.push_str(&format!(
        "|---|---|{}---|---|\n",
        "---|".repeat(names.len())
    ));
    let mut rows: Vec<&IntegrationMethodResult> = r.methods.iter().collect();
    rows.sort_by_key(|m| m.rank.unwrap_or(usize::MAX));
    for m in rows {
        let vals: Vec<String> = match &m.scores {
            Some(sc) => names.iter().map(|n| f3(sc.get(n))).collect(),
            None => names.iter().map(|_| "—".to_string()).collect(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} |\n",
            m.rank
                .map(|x| x.to_string())
                .unwrap_or_else(|| "failed".into()),
            m.name,
            vals.join(" | "),
            m.seconds,
            m.peak_rss_bytes
                .map(|b| format!("{:.0}", b as f64 / 1048576.0))
                .unwrap_or_else(|| "n/a".into())
        ));
    }
    s
}

/// `results.md`: what was run on which cells, the table, failures.
pub fn render_integration_markdown(r: &IntegrationReport) -> String {
    let mut s = format!("# {} (integration)\n\n", r.name);
    if let Some(d) = &r.description {
        s.push_str(&format!("{d}\n\n"));
    }
    s.push_str(&format!(
        "Data: {} — {} cells; labels `{}` ({}), batches `{}` ({}).\n\n",
        r.data,
        r.cells,
        r.label,
        r.labels.len(),
        r.batch,
        r.batches
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !r.removed.is_empty() {
        s.push_str(&format!(
            "Removed: {}.\n\n",
            r.removed
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for n in &r.notes {
        s.push_str(&format!("Note: {n}.\n\n"));
    }
    s.push_str(&format!(
        "Unintegrated embedding: {}. Metrics: scib-metrics' Benchmarker set (scllm-integrate), exact neighbours; Total = 0.4 x batch correction + 0.6 x bio conservation.\n\n",
        r.pca
    ));
    s.push_str(&render_integration_table(r));
    for m in r.failures() {
        s.push_str(&format!(
            "\n`{}` failed: {}\n",
            m.name,
            m.error.as_deref().unwrap_or("")
        ));
    }
    s.push_str(&format!(
        "\n{}\n\n![scIB results](scib_results.png)\n",
        r.memory_note
    ));
    s
}

/// Writes `results.json`, `results.md` and `scib_results.{png,svg}` into `dir`; returns them.
pub fn write_integration_report(r: &IntegrationReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::File {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut out = Vec::new();
    let json = serde_json::to_string_pretty(r).map_err(|e| BenchError::Method(e.to_string()))?;
    for (name, bytes) in [
        ("results.json", json.into_bytes()),
        ("results.md", render_integration_markdown(r).into_bytes()),
    ] {
        let p = dir.join(name);
        scllm_fs::write_atomic(&p, &bytes).map_err(|e| BenchError::File {
            path: p.display().to_string(),
            source: e,
        })?;
        out.push(p);
    }
    let rows: Vec<(&str, &EmbeddingScores)> = r
        .methods
        .iter()
        .filter_map(|m| m.scores.as_ref().map(|s| (m.name.as_str(), s)))
        .collect();
    let title = format!("{} — scIB metrics", r.name);
    out.extend(plot_scib_table(dir, &title, &rows).map_err(|e| match e {
        scllm_integrate::IntegrateError::Eval(e) => BenchError::Eval(e),
        other => BenchError::Method(format!("pictures: {other}")),
    })?);
    Ok(out)
}
