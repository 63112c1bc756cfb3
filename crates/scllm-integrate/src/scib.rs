//! The scIB metric set of one embedding and the aggregates scib-metrics' `Benchmarker` reports
//! (scib_metrics/benchmark/_core.py, `get_results(min_max_scale=False)`): bio conservation =
//! the mean of isolated labels, (Leiden NMI/ARI,) k-means NMI and ARI, label silhouette and
//! cLISI; batch correction = the mean of BRAS, iLISI, kBET, graph connectivity and PCR
//! comparison; total = 0.4·batch + 0.6·bio. Metrics that come out NaN (kBET when every label
//! is skipped) are left out of a mean, as pandas does.
//!
//! One exact kNN at k = 90 serves LISI, and its first 50 / 15 neighbours kBET / graph
//! connectivity and Leiden, as the Benchmarker's `prepare`; it comes from the same pass over
//! all pairs as the label silhouettes ([`crate::pairwise`]).

use serde::Serialize;

use crate::clustering::{nmi_ari_kmeans, nmi_ari_leiden};
use crate::graph::graph_connectivity;
use crate::kbet::{kbet_per_label, KbetOptions, LabelKbet};
use crate::lisi::{clisi, ilisi};
use crate::pairwise::knn_and_silhouette;
use crate::pcr::{pcr, pcr_comparison};
use crate::silhouette::{bras, isolated, isolated_labels, silhouette_label};
use crate::Result;

/// The neighbour counts of the Benchmarker.
pub const NEIGHBORS: [usize; 3] = [15, 50, 90];

/// Which family a metric belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MetricKind {
    #[serde(rename = "Bio conservation")]
    Bio,
    #[serde(rename = "Batch correction")]
    Batch,
    #[serde(rename = "Aggregate score")]
    Aggregate,
}

impl MetricKind {
    /// The family's name in scib-metrics' results table.
    pub fn family(self) -> &'static str {
        match self {
            MetricKind::Bio => "Bio conservation",
            MetricKind::Batch => "Batch correction",
            MetricKind::Aggregate => "Aggregate score",
        }
    }
}

/// One metric of one embedding, under the name of scib-metrics' results table.
#[derive(Clone, Debug, Serialize)]
pub struct MetricValue {
    pub name: &'static str,
    pub kind: MetricKind,
    pub value: f64,
}

/// What to compute.
#[derive(Clone, Debug)]
pub struct ScibOptions {
    /// Leiden NMI/ARI over 10 resolutions (off in the Benchmarker's defaults).
    pub leiden: bool,
    /// k-means NMI/ARI (on in the Benchmarker's defaults).
    pub kmeans: bool,
    pub kbet: KbetOptions,
    pub seed: u64,
    pub progress: bool,
}

impl Default for ScibOptions {
    fn default() -> Self {
        ScibOptions {
            leiden: false,
            kmeans: true,
            kbet: KbetOptions::default(),
            seed: 0,
            progress: false,
        }
    }
}

/// Cells' labels and batches as codes 0..count (sorted names, as pandas' categories).
#[derive(Clone, Debug)]
pub struct Groups {
    pub labels: Vec<u32>,
    pub n_labels: usize,
    pub batch: Vec<u32>,
    pub n_batches: usize,
}

/// The scores of one embedding, in the order of the reference's table, then the aggregates.
#[derive(Clone, Debug, Serialize)]
pub struct EmbeddingScores {
    pub metrics: Vec<MetricValue>,
    pub kbet_per_label: Vec<LabelKbet>,
    /// The Leiden resolution with the best NMI, when Leiden ran.
    pub leiden_resolution: Option<f64>,
}

impl EmbeddingScores {
    /// A metric's value by its table name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

fn nanmean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, c) = v
        .filter(|x| !x.is_nan())
        .fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
    if c == 0 {
        f64::NAN
    } else {
        s / c as f64
    }
}

/// Steps [`score_embedding`] reports through its `step` callback (for a progress bar).
pub fn steps(opts: &ScibOptions) -> usize {
    7 + opts.leiden as usize + opts.kmeans as usize
}

/// All metrics of the row-major `n × d` embedding `x`; `pre_pcr` is the batch's share of
/// variance in the unintegrated embedding ([`pcr`] of it). `step` is told the name of each
/// step as it starts.
pub fn score_embedding(
    x: &[f32],
    n: usize,
    d: usize,
    groups: &Groups,
    pre_pcr: f64,
    opts: &ScibOptions,
    step: &dyn Fn(&'static str),
) -> Result<EmbeddingScores> {
    let (labels, n_labels) = (&groups.labels[..], groups.n_labels);
    let (batch, n_batches) = (&groups.batch[..], groups.n_batches);
    step("neighbours and silhouettes");
    let (nn90, sil) = knn_and_silhouette(x, n, d, NEIGHBORS[2], labels, n_labels);
    let nn50 = nn90.subset(NEIGHBORS[1]);
    let nn15 = nn90.subset(NEIGHBORS[0]);
    let mut m = Vec::new();
    let mut push = |name, kind, value| m.push(MetricValue { name, kind, value });

    let iso = isolated(labels, n_labels, batch, n_batches);
    push(
        "Isolated labels",
        MetricKind::Bio,
        isolated_labels(&sil, labels, &iso),
    );
    let mut leiden_resolution = None;
    if opts.leiden {
        step("Leiden");
        let (s, r) = nmi_ari_leiden(&nn15.connectivities(), labels, opts.seed)?;
        push("Leiden NMI", MetricKind::Bio, s.nmi);
        push("Leiden ARI", MetricKind::Bio, s.ari);
        leiden_resolution = Some(r);
    }
    if opts.kmeans {
        step("k-means");
        let s = nmi_ari_kmeans(x, n, d, labels, n_labels, opts.seed)?;
        push("KMeans NMI", MetricKind::Bio, s.nmi);
        push("KMeans ARI", MetricKind::Bio, s.ari);
    }
    push("Silhouette label", MetricKind::Bio, silhouette_label(&sil));
    step("cLISI");
    push("cLISI", MetricKind::Bio, clisi(&nn90, labels, n_labels));
    step("BRAS");
    push(
        "BRAS",
        MetricKind::Batch,
        bras(x, n, d, labels, n_labels, batch),
    );
    step("iLISI");
    push("iLISI", MetricKind::Batch, ilisi(&nn90, batch, n_batches));
    step("kBET");
    let (kbet, per_label) =
        kbet_per_label(&nn50.connectivities(), batch, labels, n_labels, &opts.kbet);
    push("KBET", MetricKind::Batch, kbet);
    step("graph connectivity");
    push(
        "Graph connectivity",
        MetricKind::Batch,
        graph_connectivity(&nn15.distance_graph(), labels, n_labels),
    );
    step("PCR");
    push(
        "PCR comparison",
        MetricKind::Batch,
        pcr_comparison(pre_pcr, pcr(x, n, d, batch, n_batches)),
    );
    let batch_score = nanmean(
        m.iter()
            .filter(|v| v.kind == MetricKind::Batch)
            .map(|v| v.value),
    );
    let bio_score = nanmean(
        m.iter()
            .filter(|v| v.kind == MetricKind::Bio)
            .map(|v| v.value),
    );
    for (name, value) in [
        ("Batch correction", batch_score),
        ("Bio conservation", bio_score),
        ("Total", 0.4 * batch_score + 0.6 * bio_score),
    ] {
        m.push(MetricValue {
            name,
            kind: MetricKind::Aggregate,
            value,
        });
    }
    Ok(EmbeddingScores {
        metrics: m,
        kbet_per_label: per_label,
        leiden_resolution,
    })
}

/// The results table of several embeddings (`(name, scores)`) as a picture, best total first:
/// `scib_results.png` and `.svg` in `dir`; returns them. Nothing when `rows` is empty.
pub fn plot_scib_table(
    dir: &std::path::Path,
    title: &str,
    rows: &[(&str, &EmbeddingScores)],
) -> Result<Vec<std::path::PathBuf>> {
    use scllm_eval::plot::{plot_score_table, ScoreColumn};
    let Some((_, first)) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns: Vec<ScoreColumn> = first
        .metrics
        .iter()
        .map(|m| ScoreColumn {
            group: m.kind.family().to_string(),
            name: m.name.to_string(),
            bar: m.kind == MetricKind::Aggregate,
        })
        .collect();
    let total = |s: &EmbeddingScores| s.get("Total").unwrap_or(f64::NAN);
    let mut order: Vec<&(&str, &EmbeddingScores)> = rows.iter().collect();
    order.sort_by(|a, b| total(b.1).total_cmp(&total(a.1)));
    let names: Vec<String> = order.iter().map(|r| r.0.to_string()).collect();
    let values: Vec<Vec<f64>> = order
        .iter()
        .map(|r| r.1.metrics.iter().map(|m| m.value).collect())
        .collect();
    let mut out = Vec::new();
    for ext in ["png", "svg"] {
        let p = dir.join(format!("scib_results.{ext}"));
        plot_score_table(&p, title, &names, &columns, &values)?;
        out.push(p);
    }
    Ok(out)
}
