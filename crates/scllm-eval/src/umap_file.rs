//! `scllm umap` as one job: a 2-D UMAP layout of a file's embedding (or of PCA of its
//! log-normalised X), stored in `obsm['X_umap']` and drawn coloured by one or two obs columns.

use std::path::PathBuf;
use std::time::Instant;

use scllm_io::{read_h5ad, write_h5ad, AnnData, Compression};
use serde::Serialize;

use crate::anndata_input::{log_normalized, name};
use crate::linalg::Pca;
use crate::plot::{plot_embedding, plot_embedding_pair, ScatterOptions};
use crate::umap::{layout_matrix, obsm_f32, umap, UmapOptions};
use crate::{invalid, Result};

/// One `scllm umap` run.
#[derive(Clone, Debug)]
pub struct UmapJob {
    /// Input `.h5ad`.
    pub file: PathBuf,
    /// obsm key of the embedding to lay out (default: PCA of the log-normalised X).
    pub use_rep: Option<String>,
    /// obs column(s) to colour by; two draw side by side (truth and prediction).
    pub color: Vec<String>,
    /// Picture to write (`.png` or `.svg`).
    pub plot: Option<PathBuf>,
    /// Output `.h5ad`: the input plus `obsm['X_umap']`.
    pub output: Option<PathBuf>,
    pub n_neighbors: usize,
    pub min_dist: f32,
    pub seed: u64,
    pub progress: bool,
}

impl UmapJob {
    /// A job with the defaults of `scllm umap` (umap-learn's: 15 neighbours, min_dist 0.1).
    pub fn new(file: PathBuf) -> Self {
        UmapJob {
            file,
            use_rep: None,
            color: Vec::new(),
            plot: None,
            output: None,
            n_neighbors: 15,
            min_dist: 0.1,
            seed: 0,
            progress: true,
        }
    }
}

/// What a `scllm umap` run did.
#[derive(Clone, Debug, Serialize)]
pub struct UmapSummary {
    pub input: String,
    pub cells: usize,
    /// What was laid out, e.g. `obsm['X_scGPT']`.
    pub representation: String,
    pub dims: usize,
    pub plot: Option<String>,
    pub output: Option<String>,
    pub seconds: f64,
}

/// The first 50 principal components of log1p(CP10k) of X: the layout's input when a file has
/// no embedding yet. Returns `(values, n, d)` row-major.
pub fn pca_of_log(a: &AnnData, seed: u64) -> Result<(Vec<f32>, usize, usize)> {
    let log = log_normalized(a, None)?;
    let pca = Pca::fit(&log.x, 50, 4, seed);
    let x = pca.transform(&log.x);
    Ok((x, log.x.nrows, pca.n_comps))
}

/// The 2-D UMAP layout of `a`'s embedding `obsm[use_rep]` (default: PCA of its log-normalised
/// X, [`pca_of_log`] with `opts.seed`), what was laid out, and its dimensions.
pub fn umap_of(
    a: &AnnData,
    use_rep: Option<&str>,
    opts: &UmapOptions,
) -> Result<(Vec<[f32; 2]>, String, usize)> {
    let (x, n, d, rep) = match use_rep {
        Some(k) => {
            let (x, n, d) = obsm_f32(a, k)?;
            (x, n, d, format!("obsm['{k}']"))
        }
        None => {
            let (x, n, d) = pca_of_log(a, opts.seed)?;
            (x, n, d, format!("PCA ({d} components) of log1p(CP10k) X"))
        }
    };
    Ok((umap(&x, n, d, opts)?, rep, d))
}

/// Every cell's value of obs column `col` (NaN as `nan`), for colouring.
fn labels(a: &AnnData, col: &str) -> Result<Vec<String>> {
    let c = a.obs_column(col).map_err(|_| {
        invalid(format!(
            "{}: field `obs['{col}']`: no such column (columns: {}); pass one of them to --color",
            name(a),
            a.obs.column_names().join(", ")
        ))
    })?;
    Ok((0..a.n_obs())
        .map(|i| c.get_str(i).unwrap_or_else(|| "nan".into()))
        .collect())
}

/// Run `job`: lay out, draw `job.plot`, write `job.output`.
pub fn umap_file(job: &UmapJob) -> Result<UmapSummary> {
    if job.plot.is_none() && job.output.is_none() {
        return Err(invalid(
            "nothing to write: pass --plot FILE.png and/or -o OUT.h5ad",
        ));
    }
    if job.color.len() > 2 {
        return Err(invalid(
            "--color takes one column, or two to draw side by side",
        ));
    }
    if job.plot.is_some() && job.color.is_empty() {
        return Err(invalid(
            "--plot needs --color COLUMN (e.g. --color cell_type)",
        ));
    }
    let t0 = Instant::now();
    let mut a = read_h5ad(&job.file)?;
    // colour columns are checked before the (slow) layout
    let cols: Vec<Vec<String>> = job
        .color
        .iter()
        .map(|c| labels(&a, c))
        .collect::<Result<_>>()?;
    let opts = UmapOptions {
        n_neighbors: job.n_neighbors,
        min_dist: job.min_dist,
        seed: job.seed,
        progress: job.progress,
        ..Default::default()
    };
    let (layout, rep, d) = umap_of(&a, job.use_rep.as_deref(), &opts)?;
    let n = layout.len();
    let title = format!(
        "{} — UMAP of {rep}",
        job.file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    if let Some(p) = &job.plot {
        let so = ScatterOptions::default();
        match cols.as_slice() {
            [one] => plot_embedding(p, &layout, one, &title, &so)?,
            [truth, pred] => plot_embedding_pair(p, &layout, truth, pred, &title, &so)?,
            _ => unreachable!("checked above"),
        }
    }
    if let Some(o) = &job.output {
        a.obsm.retain(|(k, _)| k != "X_umap");
        a.set_obsm("X_umap", layout_matrix(&layout));
        write_h5ad(&a, o, Compression::None)?;
    }
    Ok(UmapSummary {
        input: job.file.display().to_string(),
        cells: n,
        representation: rep,
        dims: d,
        plot: job.plot.as_ref().map(|p| p.display().to_string()),
        output: job.output.as_ref().map(|p| p.display().to_string()),
        seconds: t0.elapsed().as_secs_f64(),
    })
}
