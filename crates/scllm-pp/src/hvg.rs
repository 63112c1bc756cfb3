//! Highly variable genes, flavour by flavour as scanpy computes them.
//!
//! * `seurat`: dispersion of expm1(log data), log-dispersion z-scored within 20 equal-width bins of
//!   log1p(mean) (pandas `cut` edges reproduced exactly).
//! * `cell_ranger`: dispersion of the log data, normalised by median/MAD within mean-percentile bins.
//! * `seurat_v3`: on counts; per batch, a loess fit (span 0.3, degree 2) of log10 variance on log10
//!   mean, variance of values clipped at mean + sqrt(n)·fitted sd; genes ranked per batch, then by
//!   median rank and number of batches. The loess is [`crate::loess`] (see its docs for how it
//!   relates to netlib's interpolated surface used by scikit-misc).

use scllm_io::{Column, Compressed, DataFrame};

use crate::{PpError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvgFlavor {
    Seurat,
    CellRanger,
    SeuratV3,
}

impl std::str::FromStr for HvgFlavor {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "seurat" => Ok(HvgFlavor::Seurat),
            "cell_ranger" => Ok(HvgFlavor::CellRanger),
            "seurat_v3" => Ok(HvgFlavor::SeuratV3),
            o => Err(format!("unknown HVG flavor `{o}`: use seurat_v3 (counts), seurat or cell_ranger (log data)")),
        }
    }
}

impl HvgFlavor {
    /// scanpy's name of the flavor (what [`FromStr`](std::str::FromStr) reads).
    pub fn as_str(&self) -> &'static str {
        match self {
            HvgFlavor::Seurat => "seurat",
            HvgFlavor::CellRanger => "cell_ranger",
            HvgFlavor::SeuratV3 => "seurat_v3",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct HvgOptions {
    pub n_top_genes: usize,
    pub flavor: HvgFlavor,
    /// loess span for seurat_v3 (scanpy: 0.3)
    pub span: f64,
    /// mean bins for seurat (scanpy: 20)
    pub n_bins: usize,
    /// seurat/cell_ranger: select by these bounds instead of the top `n_top_genes` (scanpy's
    /// selection when `n_top_genes` is not given); seurat_v3 always takes the top genes.
    pub cutoffs: Option<Cutoffs>,
}

impl HvgOptions {
    pub fn new(n_top_genes: usize, flavor: HvgFlavor) -> Self {
        HvgOptions {
            n_top_genes,
            flavor,
            span: 0.3,
            n_bins: 20,
            cutoffs: None,
        }
    }
}

/// scanpy's `_Cutoffs`: a gene is highly variable where its (reported) mean and normalised
/// dispersion lie strictly inside the bounds; a NaN normalised dispersion counts as 0 (as
/// Seurat). scanpy's defaults: mean in (0.0125, 3), dispersion in (0.5, inf).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cutoffs {
    pub min_mean: f64,
    pub max_mean: f64,
    pub min_disp: f64,
    pub max_disp: f64,
}

impl Default for Cutoffs {
    fn default() -> Self {
        Cutoffs {
            min_mean: 0.0125,
            max_mean: 3.0,
            min_disp: 0.5,
            max_disp: f64::INFINITY,
        }
    }
}

impl Cutoffs {
    /// `clamp_infinite`: numpy's `nan_to_num` (scanpy's single batch) also makes an infinite
    /// normalised dispersion the largest finite one; the batched path's `fillna(0)` does not.
    fn in_bounds(&self, mean: &[f64], norm: &[f64], clamp_infinite: bool) -> Vec<bool> {
        mean.iter()
            .zip(norm)
            .map(|(&m, &d)| {
                let d = if d.is_nan() {
                    0.0
                } else if clamp_infinite {
                    d.clamp(f64::MIN, f64::MAX)
                } else {
                    d
                };
                m > self.min_mean && m < self.max_mean && d > self.min_disp && d < self.max_disp
            })
            .collect()
    }
}

impl HvgOptions {
    /// One batch's (or the only) selection: by the cutoffs, else the top genes.
    fn select(&self, mean: &[f64], norm: &[f64]) -> Vec<bool> {
        match &self.cutoffs {
            Some(c) => c.in_bounds(mean, norm, true),
            None => top_by_norm(norm, self.n_top_genes),
        }
    }
}

/// Per-gene results, named as scanpy names the `var` columns.
#[derive(Clone, Debug, Default)]
pub struct HvgResult {
    pub highly_variable: Vec<bool>,
    pub means: Vec<f64>,
    pub dispersions: Option<Vec<f64>>,
    pub dispersions_norm: Option<Vec<f64>>,
    pub variances: Option<Vec<f64>>,
    pub variances_norm: Option<Vec<f64>>,
    pub highly_variable_rank: Option<Vec<f64>>,
    pub highly_variable_nbatches: Option<Vec<i64>>,
    /// Batched seurat/cell_ranger: selected in every batch.
    pub highly_variable_intersection: Option<Vec<bool>>,
}

/// The batch of each cell (`batch_key`).
#[derive(Clone, Copy, Debug)]
pub struct Batches<'a> {
    /// One id per cell; batches are processed in ascending id order.
    pub ids: &'a [u32],
    /// The genes' names in `var` order. Batched seurat/cell_ranger break ties between genes by
    /// name, as scanpy's `groupby("gene")` orders them; without names, by position.
    pub gene_names: Option<&'a [String]>,
}

impl HvgResult {
    /// Write the columns into `var` as scanpy does (`highly_variable`, `means`, ...).
    pub fn write_var(&self, var: &mut DataFrame) {
        var.set(
            "highly_variable",
            Column::Bool(self.highly_variable.clone()),
        );
        var.set("means", Column::F64(self.means.clone()));
        let f = |v: &Option<Vec<f64>>| v.clone().map(Column::F64);
        if let Some(c) = f(&self.dispersions) {
            var.set("dispersions", c);
        }
        if let Some(c) = f(&self.dispersions_norm) {
            var.set("dispersions_norm", c);
        }
        if let Some(c) = f(&self.highly_variable_rank) {
            var.set("highly_variable_rank", c);
        }
        if let Some(c) = f(&self.variances) {
            var.set("variances", c);
        }
        if let Some(c) = f(&self.variances_norm) {
            var.set("variances_norm", c);
        }
        if let Some(n) = &self.highly_variable_nbatches {
            var.set("highly_variable_nbatches", Column::I64(n.clone()));
        }
        if let Some(b) = &self.highly_variable_intersection {
            var.set("highly_variable_intersection", Column::Bool(b.clone()));
        }
    }
    pub fn n_selected(&self) -> usize {
        self.highly_variable.iter().filter(|&&b| b).count()
    }
}

/// Column means and unbiased variances (ddof=1) over the rows in `rows` (all when `None`), summed
/// in f64 with squares formed in the data's float32 precision — scanpy's numba kernel.
pub fn mean_var(
    x: &Compressed,
    rows: Option<&[usize]>,
    transform: Option<fn(f32) -> f32>,
) -> (Vec<f64>, Vec<f64>) {
    let mut s = vec![0.0f64; x.ncols];
    let mut sq = vec![0.0f64; x.ncols];
    let vals = crate::normalize::values_f32(x);
    let mut visit = |i: usize| {
        for k in x.range(i) {
            let mut v = vals[k];
            if let Some(t) = transform {
                v = t(v);
            }
            let j = x.indices[k] as usize;
            s[j] += v as f64;
            sq[j] += (v * v) as f64;
        }
    };
    let n = match rows {
        Some(r) => {
            r.iter().for_each(|&i| visit(i));
            r.len()
        }
        None => {
            (0..x.nrows).for_each(&mut visit);
            x.nrows
        }
    } as f64;
    let mut mean = vec![0.0; x.ncols];
    let mut var = vec![0.0; x.ncols];
    for j in 0..x.ncols {
        mean[j] = s[j] / n;
        var[j] = sq[j] / n - (s[j] / n) * (s[j] / n);
        if n > 1.0 {
            var[j] *= n / (n - 1.0);
        }
    }
    (mean, var)
}

/// numpy's linear quantile of sorted f64 data (`q` in [0, 1]).
fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let n = s.len();
    let v = (n as f64 - 1.0) * q;
    if v >= n as f64 - 1.0 {
        return s[n - 1];
    }
    let lo = v.floor().max(0.0) as usize;
    let hi = (lo + 1).min(n - 1);
    let g = v - lo as f64;
    let d = s[hi] - s[lo];
    if g >= 0.5 {
        s[hi] - d * (1.0 - g)
    } else {
        s[lo] + d * g
    }
}

fn median_of(mut v: Vec<f64>) -> f64 {
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// pandas `cut(x, bins=n)` bin labels (right-closed, lowest edge lowered by 0.1% of the range).
fn cut_equal_width(x: &[f64], n_bins: usize) -> Vec<Option<usize>> {
    let mn = x.iter().cloned().fold(f64::INFINITY, f64::min);
    let mx = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut edges: Vec<f64>;
    if mn == mx {
        // pandas widens a zero range by 0.1% on both sides
        let (lo, hi) = if mn != 0.0 {
            (mn - mn.abs() * 0.001, mx + mx.abs() * 0.001)
        } else {
            (-0.001, 0.001)
        };
        edges = linspace(lo, hi, n_bins + 1);
    } else {
        edges = linspace(mn, mx, n_bins + 1);
        edges[0] -= (mx - mn) * 0.001;
    }
    cut_with_edges(x, &edges)
}

fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    y[num - 1] = stop;
    y
}

/// Right-closed bins `(e[i], e[i+1]]`: label = searchsorted(edges, x, 'left') - 1.
fn cut_with_edges(x: &[f64], edges: &[f64]) -> Vec<Option<usize>> {
    x.iter()
        .map(|&v| {
            if v.is_nan() {
                return None;
            }
            let id = edges.partition_point(|&e| e < v);
            (id > 0 && id < edges.len()).then(|| id - 1)
        })
        .collect()
}

/// Normalised dispersions within bins: (d - avg_bin) / dev_bin.
fn normalise_in_bins(
    disp: &[f64],
    bins: &[Option<usize>],
    n_bins: usize,
    flavor: HvgFlavor,
) -> Vec<f64> {
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); n_bins];
    let mut members: Vec<usize> = vec![0; n_bins];
    for (d, b) in disp.iter().zip(bins) {
        if let Some(b) = b {
            members[*b] += 1;
            if flavor == HvgFlavor::CellRanger || !d.is_nan() {
                groups[*b].push(*d);
            }
        }
    }
    let stats: Vec<(f64, f64)> = groups
        .iter()
        .map(|g| match flavor {
            HvgFlavor::Seurat => {
                // pandas mean/std skip NaN; std has ddof=1 (NaN for one value)
                let n = g.len() as f64;
                if g.is_empty() {
                    return (f64::NAN, f64::NAN);
                }
                let mean = g.iter().sum::<f64>() / n;
                let std = if g.len() > 1 {
                    (g.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
                } else {
                    f64::NAN
                };
                if std.is_nan() {
                    // scanpy: a bin whose std is NaN gets avg 0 and dev = avg, so norm = d / avg
                    (0.0, mean)
                } else {
                    (mean, std)
                }
            }
            _ => {
                // median (NaN skipped) and statsmodels' MAD (NaN propagates)
                let finite: Vec<f64> = g.iter().cloned().filter(|v| !v.is_nan()).collect();
                let med = median_of(finite);
                let m = median_of(g.clone());
                let mad = median_of(
                    g.iter()
                        .map(|v| (v - m).abs() / 0.674_489_750_196_081_7)
                        .collect(),
                );
                (med, mad)
            }
        })
        .collect();
    disp.iter()
        .zip(bins)
        .map(|(d, b)| match b {
            Some(b) => (d - stats[*b].0) / stats[*b].1,
            None => f64::NAN,
        })
        .collect()
}

/// Genes whose normalised dispersion reaches the n-th highest (ties included, as scanpy).
fn top_by_norm(norm: &[f64], n_top: usize) -> Vec<bool> {
    let mut v: Vec<f64> = norm.iter().cloned().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return vec![false; norm.len()];
    }
    v.sort_by(|a, b| b.total_cmp(a));
    let n = n_top.min(v.len()).max(1);
    let cut = v[n - 1];
    norm.iter().map(|&x| !x.is_nan() && x >= cut).collect()
}

/// Highly variable genes of `x` (CSR float32, cells × genes), per batch when `batches` is given
/// (batches processed in ascending id order as numpy's `unique` would).
pub fn highly_variable_genes(
    x: &Compressed,
    opts: &HvgOptions,
    batches: Option<Batches>,
) -> Result<HvgResult> {
    if opts.n_top_genes == 0 && (opts.cutoffs.is_none() || opts.flavor == HvgFlavor::SeuratV3) {
        return Err(PpError::Invalid("--hvg must be at least 1".into()));
    }
    if let Some(b) = batches {
        if b.ids.len() != x.nrows {
            return Err(PpError::Invalid(format!(
                "{} batch labels for {} cells",
                b.ids.len(),
                x.nrows
            )));
        }
        if b.gene_names.is_some_and(|g| g.len() != x.ncols) {
            return Err(PpError::Invalid(format!(
                "{} gene names for {} genes",
                b.gene_names.map_or(0, <[String]>::len),
                x.ncols
            )));
        }
    }
    match (opts.flavor, batches) {
        (HvgFlavor::SeuratV3, b) => seurat_v3(x, opts, b.map(|b| b.ids)),
        (_, Some(b)) => dispersion_batched(x, opts, b),
        (HvgFlavor::Seurat | HvgFlavor::CellRanger, None) => dispersion_based(x, opts),
    }
}

/// The flavor's transform of the values before their moments (seurat: `expm1` of log data).
fn dispersion_transform(flavor: HvgFlavor) -> Option<fn(f32) -> f32> {
    (flavor == HvgFlavor::Seurat).then_some(|v: f32| v.exp_m1())
}

fn dispersion_based(x: &Compressed, opts: &HvgOptions) -> Result<HvgResult> {
    crate::check_nonnegative(
        x,
        "highly_variable_genes",
        "the seurat/cell_ranger flavors (log-normalised data)",
    )?;
    let (mean, var) = mean_var(x, None, dispersion_transform(opts.flavor));
    let (mean, disp, norm) = dispersions(mean, var, opts)?;
    Ok(HvgResult {
        highly_variable: opts.select(&mean, &norm),
        means: mean,
        dispersions: Some(disp),
        dispersions_norm: Some(norm),
        ..Default::default()
    })
}

/// scanpy's `_highly_variable_genes_batched` for seurat/cell_ranger: in each batch, the genes
/// with a positive value there (its `filter_genes(min_cells=1)`) get the single-batch means,
/// dispersions, normalised dispersions and top genes; a gene's results are then averaged over
/// the batches (0 where a batch lacks it; NaN skipped, as pandas' `mean`), `nbatches` counts the
/// batches that selected it, and the top genes are the first `n_top_genes` by (nbatches,
/// normalised dispersion) descending, NaN last, ties in gene-name order.
fn dispersion_batched(x: &Compressed, opts: &HvgOptions, b: Batches) -> Result<HvgResult> {
    crate::check_nonnegative(
        x,
        "highly_variable_genes",
        "the seurat/cell_ranger flavors (log-normalised data)",
    )?;
    let ng = x.ncols;
    let mut levels = b.ids.to_vec();
    levels.sort_unstable();
    levels.dedup();
    let vals = crate::normalize::values_f32(x);
    let (mut means, mut disp, mut norm) = (vec![0.0; ng], vec![0.0; ng], vec![0.0; ng]);
    // values that are not NaN (a batch lacking a gene counts as 0 there)
    let (mut n_disp, mut n_norm) = (vec![0usize; ng], vec![0usize; ng]);
    let mut nbatches = vec![0i64; ng];
    for &level in &levels {
        let rows: Vec<usize> = (0..x.nrows).filter(|&i| b.ids[i] == level).collect();
        let mut expressed = vec![false; ng];
        for &i in &rows {
            for k in x.range(i) {
                if vals[k] > 0.0 {
                    expressed[x.indices[k] as usize] = true;
                }
            }
        }
        let kept: Vec<usize> = (0..ng).filter(|&j| expressed[j]).collect();
        if kept.is_empty() {
            // no gene to rank: every gene counts as 0 in this batch
            n_disp
                .iter_mut()
                .chain(n_norm.iter_mut())
                .for_each(|n| *n += 1);
            continue;
        }
        let (m, v) = mean_var(x, Some(&rows), dispersion_transform(opts.flavor));
        let (bm, bd, bn) = dispersions(
            kept.iter().map(|&j| m[j]).collect(),
            kept.iter().map(|&j| v[j]).collect(),
            opts,
        )
        .map_err(|e| PpError::Invalid(format!("batch {level}: {e}")))?;
        let hv = opts.select(&bm, &bn);
        let mut seen = vec![false; ng];
        for (t, &j) in kept.iter().enumerate() {
            seen[j] = true;
            means[j] += bm[t];
            if !bd[t].is_nan() {
                disp[j] += bd[t];
                n_disp[j] += 1;
            }
            if !bn[t].is_nan() {
                norm[j] += bn[t];
                n_norm[j] += 1;
            }
            nbatches[j] += hv[t] as i64;
        }
        for j in (0..ng).filter(|&j| !seen[j]) {
            n_disp[j] += 1;
            n_norm[j] += 1;
        }
    }
    let nb = levels.len() as f64;
    let avg = |s: &[f64], n: &[usize]| -> Vec<f64> {
        s.iter()
            .zip(n)
            .map(|(&s, &n)| if n == 0 { f64::NAN } else { s / n as f64 })
            .collect()
    };
    let means: Vec<f64> = means.iter().map(|m| m / nb).collect();
    let (disp, norm) = (avg(&disp, &n_disp), avg(&norm, &n_norm));
    let hv = match &opts.cutoffs {
        // scanpy: the bounds on the averaged means and normalised dispersions (NaN as 0)
        Some(c) => c.in_bounds(&means, &norm, false),
        None => top_by_batches(&nbatches, &norm, b.gene_names, opts.n_top_genes),
    };
    Ok(HvgResult {
        highly_variable: hv,
        means,
        dispersions: Some(disp),
        dispersions_norm: Some(norm),
        highly_variable_intersection: Some(
            nbatches.iter().map(|&n| n == levels.len() as i64).collect(),
        ),
        highly_variable_nbatches: Some(nbatches),
        ..Default::default()
    })
}

/// The first `n_top` genes by (batches selecting them, normalised dispersion) descending, NaN
/// last, ties in gene-name order (pandas' `groupby("gene")` orders by name, then a stable
/// sort by the two keys).
fn top_by_batches(
    nbatches: &[i64],
    norm: &[f64],
    gene_names: Option<&[String]>,
    n_top: usize,
) -> Vec<bool> {
    let ng = norm.len();
    let mut order: Vec<usize> = (0..ng).collect();
    if let Some(names) = gene_names {
        order.sort_by(|&p, &q| names[p].cmp(&names[q]));
    }
    order.sort_by(|&p, &q| {
        nbatches[q]
            .cmp(&nbatches[p])
            .then_with(|| match (norm[p].is_nan(), norm[q].is_nan()) {
                (false, false) => norm[q].total_cmp(&norm[p]),
                (a, b) => a.cmp(&b),
            })
    });
    let mut hv = vec![false; ng];
    for &j in order.iter().take(n_top) {
        hv[j] = true;
    }
    hv
}

/// scanpy's `_highly_variable_genes_single_batch` from the genes' column means and variances
/// (of `expm1` of the log data for seurat): the means it reports (`log1p` for seurat), the
/// dispersions (`log` for seurat) and the dispersions normalised within mean bins.
fn dispersions(
    mut mean: Vec<f64>,
    var: Vec<f64>,
    opts: &HvgOptions,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let seurat = opts.flavor == HvgFlavor::Seurat;
    for m in mean.iter_mut() {
        if *m == 0.0 {
            *m = 1e-12;
        }
    }
    let mut disp: Vec<f64> = var.iter().zip(&mean).map(|(v, m)| v / m).collect();
    if seurat {
        for d in disp.iter_mut() {
            *d = if *d == 0.0 { f64::NAN } else { d.ln() };
        }
        for m in mean.iter_mut() {
            *m = m.ln_1p();
        }
    }
    let (bins, n_bins) = if seurat {
        (cut_equal_width(&mean, opts.n_bins), opts.n_bins)
    } else {
        let mut s = mean.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let mut edges = vec![f64::NEG_INFINITY];
        for p in (10..=100).step_by(5) {
            edges.push(quantile_sorted(&s, p as f64 / 100.0));
        }
        edges.push(f64::INFINITY);
        if edges.windows(2).any(|w| w[0] == w[1]) {
            return Err(PpError::Invalid(
                "cell_ranger: the mean-percentile bin edges are not unique (too many genes share a mean); filter unexpressed genes first (--min-cells 1). scanpy fails here too.".into(),
            ));
        }
        let n = edges.len() - 1;
        (cut_with_edges(&mean, &edges), n)
    };
    let norm = normalise_in_bins(&disp, &bins, n_bins, opts.flavor);
    Ok((mean, disp, norm))
}

/// Per-batch state of seurat_v3: moments, then the loess trend and clip values.
#[derive(Clone, Debug)]
pub struct V3Batch {
    pub n: f64,
    pub sum: Vec<f64>,
    pub sumsq: Vec<f64>,
    /// Filled by [`V3Batch::fit`].
    pub mean: Vec<f64>,
    pub reg_std: Vec<f64>,
    pub clip: Vec<f64>,
    /// Clipped sums, accumulated after the fit.
    pub csum: Vec<f64>,
    pub csq: Vec<f64>,
}

impl V3Batch {
    pub fn new(ng: usize) -> Self {
        let z = vec![0.0; ng];
        V3Batch {
            n: 0.0,
            sum: z.clone(),
            sumsq: z.clone(),
            mean: z.clone(),
            reg_std: z.clone(),
            clip: z.clone(),
            csum: z.clone(),
            csq: z,
        }
    }
    /// Add one cell's stored values (first pass).
    #[inline]
    pub fn add_moments(&mut self, idx: &[u32], vals: &[f32]) {
        self.n += 1.0;
        for (&j, &v) in idx.iter().zip(vals) {
            self.sum[j as usize] += v as f64;
            self.sumsq[j as usize] += (v * v) as f64;
        }
    }
    /// Fit log10(variance) on log10(mean) by loess and derive the clip values.
    #[allow(clippy::needless_range_loop)] // several per-gene arrays indexed together
    pub fn fit(&mut self, span: f64, label: &str) -> Result<()> {
        let ng = self.sum.len();
        let n = self.n;
        let mut var = vec![0.0; ng];
        for j in 0..ng {
            self.mean[j] = self.sum[j] / n;
            var[j] = self.sumsq[j] / n - self.mean[j] * self.mean[j];
            if n > 1.0 {
                var[j] *= n / (n - 1.0);
            }
        }
        let not_const: Vec<usize> = (0..ng).filter(|&j| var[j] > 0.0).collect();
        if not_const.len() < 3 {
            return Err(PpError::Invalid(format!(
                "seurat_v3: batch {label} has {} genes with non-zero variance; too few to fit the mean-variance trend",
                not_const.len()
            )));
        }
        let lx: Vec<f64> = not_const.iter().map(|&j| self.mean[j].log10()).collect();
        let ly: Vec<f64> = not_const.iter().map(|&j| var[j].log10()).collect();
        let fitted = crate::loess::loess_fitted(&lx, &ly, span, 2).map_err(|e| {
            PpError::Invalid(format!("seurat_v3 loess fit failed on batch {label}: {e}"))
        })?;
        let mut est = vec![0.0f64; ng];
        for (k, &j) in not_const.iter().enumerate() {
            est[j] = fitted[k];
        }
        let vmax = n.sqrt();
        for j in 0..ng {
            self.reg_std[j] = 10f64.powf(est[j]).sqrt();
            self.clip[j] = self.reg_std[j] * vmax + self.mean[j];
        }
        Ok(())
    }
    /// Add one cell's values clipped at the fitted ceiling (second pass).
    #[inline]
    pub fn add_clipped(&mut self, idx: &[u32], vals: &[f32]) {
        for (&j, &v) in idx.iter().zip(vals) {
            let j = j as usize;
            let e = (v as f64).min(self.clip[j]);
            self.csq[j] += e * e;
            self.csum[j] += e;
        }
    }
    /// Normalised variance of every gene.
    pub fn norm_var(&self) -> Vec<f64> {
        let n = self.n;
        (0..self.sum.len())
            .map(|j| {
                let (m, r) = (self.mean[j], self.reg_std[j]);
                (1.0 / ((n - 1.0) * r * r)) * (n * m * m + self.csq[j] - 2.0 * self.csum[j] * m)
            })
            .collect()
    }
}

/// Rank genes per batch, combine by median rank and number of batches, pick the top genes.
pub fn v3_select(
    batches: &[V3Batch],
    means: Vec<f64>,
    variances: Vec<f64>,
    n_top: usize,
    batched: bool,
) -> HvgResult {
    let ng = means.len();
    let norm_vars: Vec<Vec<f64>> = batches.iter().map(|b| b.norm_var()).collect();
    // rank within each batch: 0 = most variable (numpy argsort of -v; ties by index)
    let mut ranks: Vec<Vec<f64>> = Vec::new();
    for nv in &norm_vars {
        let mut order: Vec<usize> = (0..ng).collect();
        order.sort_by(|&a, &b| nv[b].total_cmp(&nv[a]).then(a.cmp(&b)));
        let mut r = vec![0.0f64; ng];
        for (pos, &j) in order.iter().enumerate() {
            r[j] = pos as f64;
        }
        ranks.push(r);
    }
    let nb = ranks.len();
    let mut nbatches = vec![0i64; ng];
    let mut median_rank = vec![f64::NAN; ng];
    for j in 0..ng {
        let kept: Vec<f64> = ranks
            .iter()
            .map(|r| r[j])
            .filter(|&r| r < n_top as f64)
            .collect();
        nbatches[j] = kept.len() as i64;
        if !kept.is_empty() {
            median_rank[j] = median_of(kept);
        }
    }
    let variances_norm: Vec<f64> = (0..ng)
        .map(|j| norm_vars.iter().map(|v| v[j]).sum::<f64>() / nb as f64)
        .collect();
    // sort by (rank asc, nbatches desc), NaN ranks last; stable
    let mut order: Vec<usize> = (0..ng).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (median_rank[a], median_rank[b]);
        match (ra.is_nan(), rb.is_nan()) {
            (false, false) => ra.total_cmp(&rb).then(nbatches[b].cmp(&nbatches[a])),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (true, true) => nbatches[b].cmp(&nbatches[a]),
        }
    });
    let mut hv = vec![false; ng];
    for &j in order.iter().take(n_top.min(ng)) {
        hv[j] = true;
    }
    HvgResult {
        highly_variable: hv,
        means,
        variances: Some(variances),
        variances_norm: Some(variances_norm),
        highly_variable_rank: Some(median_rank),
        highly_variable_nbatches: batched.then_some(nbatches),
        ..Default::default()
    }
}

fn seurat_v3(x: &Compressed, opts: &HvgOptions, batches: Option<&[u32]>) -> Result<HvgResult> {
    if batches.is_none() {
        return seurat_v3_counts(CsrRef::of(x), opts);
    }
    crate::check_nonnegative(
        x,
        "highly_variable_genes",
        "the seurat_v3 flavor (raw counts)",
    )?;
    let ng = x.ncols;
    let (means, variances) = mean_var(x, None, None);
    let ids: Vec<u32> = batches
        .map(|b| b.to_vec())
        .unwrap_or_else(|| vec![0; x.nrows]);
    if ids.len() != x.nrows {
        return Err(PpError::Invalid(format!(
            "{} batch labels for {} cells",
            ids.len(),
            x.nrows
        )));
    }
    let mut levels = ids.clone();
    levels.sort_unstable();
    levels.dedup();
    let vals = crate::normalize::values_f32(x);
    let slot: std::collections::HashMap<u32, usize> =
        levels.iter().enumerate().map(|(i, &b)| (b, i)).collect();
    let mut state: Vec<V3Batch> = levels.iter().map(|_| V3Batch::new(ng)).collect();
    for i in 0..x.nrows {
        let r = x.range(i);
        state[slot[&ids[i]]].add_moments(&x.indices[r.clone()], &vals[r]);
    }
    for (b, st) in levels.iter().zip(state.iter_mut()) {
        st.fit(opts.span, &b.to_string())?;
    }
    for i in 0..x.nrows {
        let r = x.range(i);
        state[slot[&ids[i]]].add_clipped(&x.indices[r.clone()], &vals[r]);
    }
    Ok(v3_select(
        &state,
        means,
        variances,
        opts.n_top_genes,
        batches.is_some(),
    ))
}

/// The row pieces of the parallel passes of [`seurat_v3_counts`]: a split fixed by the number
/// of rows, so the partial sums, and the order they are added in, do not depend on the thread
/// count. At most [`MAX_PIECES`] pieces (their partial sums are held until the fit), each of
/// at least [`MIN_ROWS_PER_PIECE`] rows (kang2018_pbmc's 12k cells: 12 pieces for two
/// threads, where 16k-row pieces left one idle).
fn row_pieces(nrows: usize) -> Vec<(usize, usize)> {
    let per = nrows.div_ceil(MAX_PIECES).max(MIN_ROWS_PER_PIECE);
    (0..nrows)
        .step_by(per)
        .map(|a| (a, (a + per).min(nrows)))
        .collect()
}
const MAX_PIECES: usize = 64;
const MIN_ROWS_PER_PIECE: usize = 1024;

/// A CSR float32 matrix borrowed from its holder: scllm-io's [`Compressed`], or the numpy
/// buffers of a scipy matrix in the Python binding (no copy of the values or indices).
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a> {
    pub nrows: usize,
    pub ncols: usize,
    indptr: &'a [u64],
    indices: &'a [u32],
    data: &'a [f32],
}

impl<'a> CsrRef<'a> {
    /// The parts, checked: `indptr` has `nrows + 1` offsets from 0, never decreasing, ending at
    /// the number of values; one column index per value. Column indices are checked where they
    /// are used (an index outside `0..ncols` is an error there, never an out-of-bounds read).
    pub fn new(
        ncols: usize,
        indptr: &'a [u64],
        indices: &'a [u32],
        data: &'a [f32],
    ) -> Result<Self> {
        let nnz = data.len();
        if indptr.is_empty()
            || indptr[0] != 0
            || indptr.windows(2).any(|w| w[1] < w[0])
            || indptr[indptr.len() - 1] as usize != nnz
            || indices.len() != nnz
        {
            return Err(PpError::Invalid(format!(
                "a CSR matrix needs offsets from 0, never decreasing, ending at its {nnz} values, \
                 and one column index per value ({} offsets, {} indices)",
                indptr.len(),
                indices.len()
            )));
        }
        Ok(CsrRef {
            nrows: indptr.len() - 1,
            ncols,
            indptr,
            indices,
            data,
        })
    }

    /// A float32 [`Compressed`] (CSR) borrowed as is.
    pub fn of(c: &'a Compressed) -> Self {
        CsrRef {
            nrows: c.nrows,
            ncols: c.ncols,
            indptr: &c.indptr,
            indices: &c.indices,
            data: crate::normalize::values_f32(c),
        }
    }

    fn row(&self, i: usize) -> (&'a [u32], &'a [f32]) {
        let r = self.indptr[i] as usize..self.indptr[i + 1] as usize;
        (&self.indices[r.clone()], &self.data[r])
    }
}

/// One row piece's first pass: the moments, whether every square was exact in float32 (then
/// the piece's sum of squares is scanpy's float64 one too), and the first value seurat_v3
/// cannot take.
struct FirstPass {
    sum: Vec<f64>,
    sumsq: Vec<f64>,
    squares_exact: bool,
    bad: Option<(usize, usize, f32)>,
}

/// The float32 bits of 2^-63 and 2^63: a value between them with at most 12 significant bits
/// squares exactly in float32 (at most 24 bits, no underflow, no overflow).
const TINY_BITS: u32 = (127 - 63) << 23;
const HUGE_BITS: u32 = (127 + 63) << 23;

impl FirstPass {
    fn run(x: CsrRef<'_>, rows: std::ops::Range<usize>) -> FirstPass {
        let ng = x.ncols;
        let (mut sum, mut sumsq) = (vec![0.0f64; ng], vec![0.0f64; ng]);
        // the OR of all bits (low 12: a value with more significant bits), the largest bits,
        // and the smallest bits less one (0 wraps to u32::MAX: a zero squares exactly)
        let (mut any_bits, mut most, mut least) = (0u32, 0u32, u32::MAX);
        let mut bad = None;
        'rows: for i in rows {
            let (idx, vals) = x.row(i);
            for (&j, &v) in idx.iter().zip(vals) {
                let j = j as usize;
                if j >= ng || v.is_nan() || v < 0.0 {
                    // the first bad entry of the piece (NaN, negative, or a column out of range)
                    bad = Some((i, j, v));
                    break 'rows;
                }
                // -0.0 counts as 0 (its sign bit dropped)
                let b = v.to_bits() & 0x7fff_ffff;
                any_bits |= b;
                most = most.max(b);
                least = least.min(b.wrapping_sub(1));
                // scanpy's moments square in float32 (its clipped sums in float64)
                sum[j] += v as f64;
                sumsq[j] += (v * v) as f64;
            }
        }
        FirstPass {
            sum,
            sumsq,
            squares_exact: any_bits & 0xfff == 0 && least >= TINY_BITS - 1 && most < HUGE_BITS,
            bad,
        }
    }
}

/// The largest float32 not above `c`: for a float32 `v`, `v > c` exactly when `v > below(c)`.
fn f32_below(c: f64) -> f32 {
    let f = c as f32;
    if f as f64 > c {
        f.next_down()
    } else {
        f
    }
}

/// The clipping pass: each gene's sum and sum of squares of its values clipped at `clip`
/// (scanpy squares in float64), piece by piece, added in piece order. A piece whose squares
/// were all exact is read only to find the values above their gene's clip, each taking
/// `v - c` and `v² - c²` off the first-pass sums (rare: the clip is sqrt(cells) fitted
/// standard deviations above the mean); any other piece (or every piece with `always_read`)
/// sums its clipped values anew. Also: how many pieces were summed anew.
fn clipped_sums(
    x: CsrRef<'_>,
    pieces: &[(usize, usize)],
    first: &[FirstPass],
    clip: &[f64],
    always_read: bool,
) -> ((Vec<f64>, Vec<f64>), usize) {
    use rayon::prelude::*;
    let ng = x.ncols;
    let below: Vec<f32> = clip.iter().map(|&c| f32_below(c)).collect();
    let summed: Vec<(Vec<f64>, Vec<f64>, bool)> = pieces
        .par_iter()
        .zip(first)
        .map(|(&(a, z), p)| {
            if p.squares_exact && !always_read {
                let (mut cs, mut cq) = (p.sum.clone(), p.sumsq.clone());
                for i in a..z {
                    let (idx, vals) = x.row(i);
                    for (&j, &v) in idx.iter().zip(vals) {
                        let j = j as usize;
                        if v > below[j] {
                            let (v, c) = (v as f64, clip[j]);
                            cs[j] -= v - c;
                            cq[j] -= v * v - c * c;
                        }
                    }
                }
                return (cs, cq, false);
            }
            let mut q = V3Batch::new(0);
            q.clip = clip.to_vec();
            q.csum = vec![0.0; ng];
            q.csq = vec![0.0; ng];
            for i in a..z {
                let (idx, vals) = x.row(i);
                q.add_clipped(idx, vals);
            }
            (q.csum, q.csq, true)
        })
        .collect();
    let (mut csum, mut csq) = (vec![0.0; ng], vec![0.0; ng]);
    for (cs, cq, _) in &summed {
        for j in 0..ng {
            csum[j] += cs[j];
            csq[j] += cq[j];
        }
    }
    ((csum, csq), summed.iter().filter(|r| r.2).count())
}

/// seurat_v3 on one batch of counts: its moments are the genes' means and variances too (one
/// pass fewer than the batched path). Both passes run on row pieces in parallel, each piece's
/// partial sums added in piece order. The clipping pass only looks for the (rare) values above
/// their gene's clip, taking the excess off the first pass's sums, where those sums are
/// scanpy's (every square exact in float32); other pieces sum their clipped values anew. NaN
/// and negative values are refused (named by cell and gene) in the first pass.
pub fn seurat_v3_counts(x: CsrRef<'_>, opts: &HvgOptions) -> Result<HvgResult> {
    use rayon::prelude::*;
    let ng = x.ncols;
    let pieces = row_pieces(x.nrows);
    let first: Vec<FirstPass> = pieces
        .par_iter()
        .map(|&(a, z)| FirstPass::run(x, a..z))
        .collect();
    if let Some((row, col, value)) = first.iter().find_map(|p| p.bad) {
        let what = "highly_variable_genes".to_string();
        return Err(if col >= ng {
            PpError::Invalid(format!(
                "{what}: cell {row} has a column index {col} outside 0..{ng}"
            ))
        } else if value.is_nan() {
            PpError::NaN { what, row, col }
        } else {
            PpError::Negative {
                what,
                need: "the seurat_v3 flavor (raw counts)".into(),
                value,
                row,
                col,
            }
        });
    }
    let mut st = V3Batch::new(ng);
    st.n = x.nrows as f64;
    for p in &first {
        for j in 0..ng {
            st.sum[j] += p.sum[j];
            st.sumsq[j] += p.sumsq[j];
        }
    }
    st.fit(opts.span, "0")?;
    (st.csum, st.csq) = clipped_sums(x, &pieces, &first, &st.clip, false).0;
    // the batch's moments are the genes' (scanpy computes them apart, with the same sums)
    let n = st.n;
    let means: Vec<f64> = st.sum.iter().map(|&s| s / n).collect();
    let variances: Vec<f64> = (0..ng)
        .map(|j| {
            let v = st.sumsq[j] / n - means[j] * means[j];
            if n > 1.0 {
                v * (n / (n - 1.0))
            } else {
                v
            }
        })
        .collect();
    Ok(v3_select(
        std::slice::from_ref(&st),
        means,
        variances,
        opts.n_top_genes,
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_sums_from_the_first_pass_equal_the_sums_of_clipped_values() {
        // three pieces of counts; the second holds one value far above its gene's clip, the
        // third a non-integer whose float32 square rounds (that piece is summed anew)
        let per = MIN_ROWS_PER_PIECE;
        let (nrows, ng) = (2 * per + 100, 5);
        let (mut indptr, mut indices, mut data) = (vec![0u64], Vec::new(), Vec::new());
        for i in 0..nrows {
            for j in 0..ng {
                if (i + j) % 3 != 0 {
                    indices.push(j as u32);
                    data.push(((i * 7 + j * 3) % 11) as f32);
                }
            }
            indptr.push(indices.len() as u64);
        }
        let row2 = per + 17;
        data[indptr[row2] as usize] = 5000.0;
        let row3 = 2 * per + 5;
        data[indptr[row3] as usize] = 1.000_000_1;
        let x = CsrRef::new(ng, &indptr, &indices, &data).unwrap();
        let pieces = row_pieces(nrows);
        assert_eq!(pieces, [(0, per), (per, 2 * per), (2 * per, nrows)]);
        let first: Vec<FirstPass> = pieces
            .iter()
            .map(|&(a, z)| FirstPass::run(x, a..z))
            .collect();
        assert_eq!(
            first.iter().map(|p| p.squares_exact).collect::<Vec<_>>(),
            [true, true, false]
        );
        // clips between stored values, and one (gene 0's) exactly at a stored value
        let clip = [9.0, 9.5, 7.25, 20.0, 3.1];
        let (fast, anew) = clipped_sums(x, &pieces, &first, &clip, false);
        let (slow, all) = clipped_sums(x, &pieces, &first, &clip, true);
        assert_eq!((anew, all), (1, 3));
        for j in 0..ng {
            for (f, s) in [(fast.0[j], slow.0[j]), (fast.1[j], slow.1[j])] {
                assert!((f - s).abs() <= 1e-12 * s.abs(), "gene {j}: {f} vs {s}");
            }
        }
        // the outlier is clipped: its gene's clipped sum is far below its plain sum
        let j = indices[indptr[row2] as usize] as usize;
        let plain: f64 = first.iter().map(|p| p.sum[j]).sum();
        assert!(fast.0[j] < plain - 4000.0);
    }

    #[test]
    fn seurat_v3_counts_names_the_first_value_it_cannot_take() {
        let indptr = [0u64, 2, 4];
        let hvg = |indices: &[u32], data: &[f32]| {
            let x = CsrRef::new(3, &indptr, indices, data).unwrap();
            seurat_v3_counts(x, &HvgOptions::new(2, HvgFlavor::SeuratV3))
                .unwrap_err()
                .to_string()
        };
        let e = hvg(&[0, 1, 0, 2], &[1.0, 2.0, -3.0, f32::NAN]);
        assert!(e.contains("negative value -3 (cell 1, gene 0)"), "{e}");
        let e = hvg(&[0, 1, 0, 2], &[1.0, f32::NAN, -3.0, 1.0]);
        assert!(e.contains("NaN (cell 0, gene 1)"), "{e}");
        let e = hvg(&[0, 1, 7, 2], &[1.0, 2.0, 3.0, 1.0]);
        assert!(e.contains("column index 7 outside 0..3"), "{e}");
        assert!(CsrRef::new(3, &[0, 2, 1], &[0, 1], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn pandas_cut_edges() {
        // pandas.cut([0, 1, 2, 10], 2) -> (-0.01, 5.0], (-0.01, 5.0], (-0.01, 5.0], (5.0, 10.0]
        let b = cut_equal_width(&[0.0, 1.0, 2.0, 10.0], 2);
        assert_eq!(b, vec![Some(0), Some(0), Some(0), Some(1)]);
        // right-closed: 5.0 belongs to the first bin
        assert_eq!(
            cut_equal_width(&[0.0, 5.0, 10.0], 2),
            vec![Some(0), Some(0), Some(1)]
        );
    }

    #[test]
    fn numpy_linear_quantile() {
        let s = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&s, 0.5), 3.0);
        assert_eq!(quantile_sorted(&s, 1.0), 8.0);
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert!((quantile_sorted(&s, 0.9) - 6.8).abs() < 1e-12);
    }

    #[test]
    fn top_genes_include_ties() {
        let hv = top_by_norm(&[1.0, 3.0, f64::NAN, 3.0, 2.0], 1);
        assert_eq!(hv, vec![false, true, false, true, false]);
    }
}
