//! `embed`: cell embeddings of a file with any family's model, into `obsm`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use scllm_io::{DataFrame, Matrix, Values};
use scllm_models::embed::{EmbedOptions, Embedder};
use scllm_models::{
    with_folder, CellModel, EmbeddingSpec, LoadReport, ModelFolder, Pooling, Precision,
    TokenOptions,
};
use serde_json::json;

use crate::cells::Cells;
use crate::{bad, model_cache, precision_check};

/// One `scllm embed` run.
#[derive(Clone, Debug)]
pub struct EmbedJob {
    pub input: PathBuf,
    /// The output `.h5ad` (written to a temporary file, then renamed).
    pub output: PathBuf,
    /// The model folder (any family).
    pub model: PathBuf,
    /// A weights file other than the folder's own.
    pub weights: Option<PathBuf>,
    /// Geneformer: a folder with the model's dictionary pickles (default: the model folder).
    pub dictionaries: Option<PathBuf>,
    /// Fail when a model weight is missing from the checkpoint or has another shape.
    pub strict: bool,
    /// Write the load report as JSON here.
    pub load_report: Option<PathBuf>,
    /// `obsm` key (default: the family's, e.g. `X_scGPT`, `X_geneformer`).
    pub obsm_key: Option<String>,
    /// Most cells per forward pass.
    pub batch_size: usize,
    /// Most tokens per cell (default: the family's).
    pub max_len: Option<usize>,
    pub seed: u64,
    /// `cpu` or `cuda`.
    pub device: String,
    pub threads: Option<usize>,
    /// `var` column naming genes (default: the index).
    pub gene_col: Option<String>,
    /// Use this layer instead of X.
    pub layer: Option<String>,
    /// Read X in blocks of `block_cells` (bounded memory); the output's X is the input's as
    /// CSR float32.
    pub stream: bool,
    pub block_cells: usize,
    /// Pooling and layer of the embedding (default: the family's).
    pub pooling: Option<Pooling>,
    pub emb_layer: Option<i32>,
    pub progress: bool,
    /// Families whose cells attend to each other (CellPLM): the `obs` column whose groups are
    /// the attention sets (`None`: the family's default, `obs['batch']` when present; "none":
    /// all cells one set).
    pub group_by: Option<String>,
    /// Such families: `--batch-size` as given (`None`: whole groups, not the 64 above).
    pub set_size: Option<usize>,
    /// Number format of the linear layers' products (`scllm_models::nn::precision`).
    pub precision: Precision,
    /// Embed this many cells in f32 and in `precision` too and compare (0: no check).
    pub check: usize,
    /// The check's label column (a 10-NN vote on both embeddings).
    pub check_label: Option<String>,
    /// Counts the cells embedded so far, as batches finish (the Python package draws its
    /// progress bar from it).
    pub cells_done: Option<Arc<AtomicU64>>,
    /// Keep the loaded model for the next call in this process ([`crate::model_cache`]; the
    /// Python package asks, the CLI, which embeds once, does not).
    pub keep_model: bool,
}

impl EmbedJob {
    /// A job with the defaults of `scllm embed`.
    pub fn new(input: PathBuf, output: PathBuf, model: PathBuf) -> Self {
        EmbedJob {
            input,
            output,
            model,
            weights: None,
            dictionaries: None,
            strict: false,
            load_report: None,
            obsm_key: None,
            batch_size: 64,
            max_len: None,
            seed: 0,
            device: "cpu".into(),
            threads: None,
            gene_col: None,
            layer: None,
            stream: false,
            block_cells: 20_000,
            pooling: None,
            emb_layer: None,
            progress: true,
            group_by: None,
            set_size: None,
            precision: Precision::F32,
            check: 0,
            check_label: None,
            cells_done: None,
            keep_model: false,
        }
    }
}

/// What an embed run did.
pub struct EmbedOutcome {
    /// Machine-readable summary (`--json`).
    pub summary: serde_json::Value,
    pub report: LoadReport,
    /// `--check`: f32 against the chosen precision on a sample of the cells.
    pub check: Option<scllm_eval::embedding_agreement::Agreement>,
    /// [`embed_backed`]: the embedding (cells × d), which no file holds.
    pub embedding: Option<Matrix>,
    /// [`embed_backed`]: the `uns` entries the family records (CellPLM: `cellplm_sets`).
    pub uns: Vec<(String, scllm_io::UnsValue)>,
}

/// Embed `job.input`'s cells with the model in `job.model` and write `job.output`.
pub fn embed(job: &EmbedJob) -> anyhow::Result<EmbedOutcome> {
    run(job, Cells::File)
}

/// Embed the cells of `a` (held in memory by the caller) exactly as [`embed`] embeds a file's:
/// the embedding goes into `a.obsm` (CellPLM's grouping into `a.uns`); `job.output` and
/// `job.stream` do not apply. On error `a` is unchanged.
pub fn embed_in_memory(job: &EmbedJob, a: &mut scllm_io::AnnData) -> anyhow::Result<EmbedOutcome> {
    if job.stream {
        return Err(bad(
            "streaming reads a file block by block; an AnnData in memory is embedded whole",
        ));
    }
    run(job, Cells::Memory(a))
}

/// Embed `job.input` reading X block by block, as `--stream` does, without writing a file:
/// the embedding comes back in [`EmbedOutcome::embedding`] (a backed AnnData in Python). The
/// memory held is one block of X plus the embedding.
pub fn embed_backed(job: &EmbedJob) -> anyhow::Result<EmbedOutcome> {
    if job.check > 0 {
        return Err(bad(
            "the precision check compares embeddings of cells held in memory; load the AnnData \
             with adata.to_memory()",
        ));
    }
    let mut job = job.clone();
    job.stream = true;
    run(&job, Cells::Backed)
}

fn run(job: &EmbedJob, source: Cells) -> anyhow::Result<EmbedOutcome> {
    if job.batch_size == 0 {
        return Err(bad("--batch-size must be at least 1"));
    }
    if job.stream && job.layer.is_some() {
        return Err(bad(
            "--stream reads X; drop --layer or run without --stream",
        ));
    }
    if job.check > 0 && (job.stream || job.precision == Precision::F32) {
        return Err(bad(
            "--check compares --precision bf16 or int8 with f32 on cells held in memory: give \
             --precision and drop --stream",
        ));
    }
    let kernel = scllm_models::nn::precision::kernel(job.precision).map_err(bad)?;
    let dev = crate::device::compute_device(&job.device, job.threads)?;
    if scllm_models::cellplm::is_cellplm_dir(&job.model) {
        return embed_sets(job, source, &kernel, &dev);
    }
    if job.group_by.is_some() {
        return Err(bad(
            "--group-by applies to models whose cells attend to each other (CellPLM); this \
             model embeds each cell on its own",
        ));
    }
    let folder = crate::model_dir::open(
        &job.model,
        job.weights.as_deref(),
        job.dictionaries.as_deref(),
    )?;
    with_folder!(&folder, |f| embed_with(f, job, source, &kernel, &dev))
}

/// The output a streamed run copies X into block by block (`g` genes), keeping the input's
/// `uns` as the in-memory path does; none for a backed AnnData, whose run writes no file.
fn stream_writer(
    job: &EmbedJob,
    source: &Cells,
    g: usize,
) -> anyhow::Result<Option<scllm_io::backed::CsrStreamWriter>> {
    if matches!(source, Cells::Backed) {
        return Ok(None);
    }
    let mut w =
        scllm_io::backed::CsrStreamWriter::create(&job.output, g, scllm_io::Compression::None)?;
    w.keep_uns_of(&job.input);
    Ok(Some(w))
}

/// What `embed`'s model load depends on ([`model_cache::key`]).
fn load_key(job: &EmbedJob) -> String {
    let mut paths = vec![job.model.as_path()];
    paths.extend(job.weights.as_deref());
    paths.extend(job.dictionaries.as_deref());
    let options = format!(
        "embed strict={} precision={:?} device={}",
        job.strict, job.precision, job.device
    );
    model_cache::key(&paths, &options)
}

/// The checkpoint's load report on stderr (with progress) and in `--load-report FILE`.
fn show_load_report(job: &EmbedJob, report: &LoadReport) -> anyhow::Result<()> {
    if job.progress {
        eprint!("{}", report.to_text());
    }
    if let Some(p) = &job.load_report {
        scllm_fs::write_atomic(p, serde_json::to_string_pretty(report)?.as_bytes()).map_err(
            |e| {
                bad(format!(
                    "{}: cannot write the load report: {e}",
                    p.display()
                ))
            },
        )?;
    }
    Ok(())
}

fn embed_with<F: ModelFolder>(
    folder: &F,
    job: &EmbedJob,
    mut source: Cells,
    kernel: &str,
    dev: &scllm_models::Device,
) -> anyhow::Result<EmbedOutcome> {
    let t0 = Instant::now();
    let ((mut model, report), reused) = model_cache::get_or_load(
        job.keep_model,
        || load_key(job),
        || {
            let (mut m, r) = folder.load(0, job.strict, dev)?;
            m.set_precision(job.precision);
            Ok((m, r))
        },
    )?;
    show_load_report(job, &report)?;
    let defaults = folder.embedding();
    let spec = EmbeddingSpec {
        pooling: job.pooling.unwrap_or(defaults.spec.pooling),
        layer: job.emb_layer.unwrap_or(defaults.spec.layer),
    };
    let key = job
        .obsm_key
        .clone()
        .unwrap_or_else(|| defaults.obsm_key.to_string());
    let topts = TokenOptions {
        max_len: job.max_len,
        seed: job.seed,
    };
    let max_len = job.max_len.unwrap_or_else(|| folder.max_len());
    let d = scllm_models::CellModel::d_model(&model);
    let src = job.input.display().to_string();
    let emb_matrix = |n: usize, emb: Vec<f32>| dense(n, d, emb);
    let (mut check, mut check_secs) = (None, 0.0);
    let mut streamed = None;
    let (n_cells, stats, n_matched, n_genes, totals_from) = if job.stream {
        // X goes to the output block by block as it is read: the matrix is never whole in memory
        let backed = scllm_io::BackedAnnData::open(&job.input, "X")?;
        let (n, g) = backed.shape();
        let genes = folder.match_genes(&backed.var, job.gene_col.as_deref(), &job.input)?;
        let tok = folder.embed_tokenizer(&genes, &topts)?;
        let eopts = embed_options(folder, &topts, job.batch_size);
        let mut e = Embedder::new(&model, dev, tok.as_ref(), spec, defaults.normalize, eopts)?;
        let totals = totals_of(folder, &backed.obs);
        let mut w = stream_writer(job, &source, g)?;
        let bar = progress(job.progress, n, kernel);
        let mut emb = vec![0f32; n * d];
        for block in backed.blocks(job.block_cells.max(1)) {
            let (start, block) = block?;
            let out = &mut emb[start * d..(start + block.nrows) * d];
            let t = totals.as_ref().map(|t| &t[start..start + block.nrows]);
            e.row_offset = start;
            e.embed_block(&block, t, out, &mut |k| tick(&bar, job, k))?;
            if let Some(w) = w.as_mut() {
                w.append(&block)?;
            }
        }
        bar.finish();
        match w {
            Some(w) => w.finish(
                &backed.obs,
                &backed.var,
                &[(key.clone(), emb_matrix(n, emb))],
                &[],
            )?,
            None => streamed = Some(emb_matrix(n, emb)),
        }
        (n, e.stats, genes.n_matched, g, totals.is_some())
    } else {
        let mut owned = None;
        let (a, write) = source.get(&job.input, &mut owned)?;
        let n = a.n_obs();
        let bar = progress(job.progress, n, kernel);
        let cells = InMemory {
            src: &job.input,
            layer: job.layer.as_deref(),
            gene_col: job.gene_col.as_deref(),
            topts: &topts,
            batch_size: job.batch_size,
            spec,
        };
        let e = embed_cells(folder, &model, a, &cells, dev, &mut |k| tick(&bar, job, k))?;
        bar.finish();
        if job.check > 0 {
            let tc = Instant::now();
            let c =
                precision_check::check_cells(a, job.check, job.check_label.as_deref(), &job.input)?;
            let agreement = precision_check::compare(&c, d, job.precision, |p, sample| {
                model.set_precision(p);
                Ok(embed_cells(folder, &model, sample, &cells, dev, &mut |_| {})?.emb)
            })?;
            check = Some(agreement);
            check_secs = tc.elapsed().as_secs_f64();
        }
        a.obsm.retain(|(k, _)| k != &key);
        a.set_obsm(&key, emb_matrix(n, e.emb));
        if write {
            scllm_io::write_h5ad(a, &job.output, scllm_io::Compression::None)?;
        }
        (n, e.stats, e.n_matched, e.n_genes, e.totals_from_obs)
    };
    // the embedding run, without --check's two extra passes
    let secs = t0.elapsed().as_secs_f64() - check_secs;
    let mut summary = json!({
        "input": src,
        "output": job.output.display().to_string(),
        "model": job.model.display().to_string(),
        "family": folder.family(),
        "obsm_key": key,
        "cells": n_cells,
        "dim": d,
        "genes_matched": [n_matched, n_genes],
        "embedding": spec,
        "max_len": max_len,
        "normalized": defaults.normalize,
        "batch_size": job.batch_size,
        "seed": job.seed,
        "streamed": job.stream,
        "model_reused": reused,
        "tokens": stats.tokens,
        "padded_tokens": stats.padded_tokens,
        "batches": stats.batches,
        "forward_seconds": stats.forward_seconds,
        "tokenize_seconds": stats.tokenize_seconds,
        "seconds": secs,
        "cells_per_second": n_cells as f64 / secs,
        "forward_gflops_per_second": stats.gflops_per_second(),
        "threads": scllm_models::threads(),
        "precision": job.precision,
        "kernel": kernel,
        "check": &check,
        "check_seconds": check_secs,
        "load_report": report,
    });
    if let Some(c) = folder.totals_column() {
        summary["cell_totals"] = json!(if totals_from {
            format!("obs['{c}']")
        } else {
            "the sum of each cell's stored values (no obs['n_counts'] in the file)".to_string()
        });
    }
    Ok(EmbedOutcome {
        summary,
        report,
        check,
        embedding: streamed,
        uns: Vec::new(),
    })
}

/// Each cell's total count where the family normalises by it and the file records it.
fn totals_of<F: ModelFolder>(folder: &F, obs: &DataFrame) -> Option<Vec<f64>> {
    scllm_tokenize::prepare::obs_numbers(obs, folder.totals_column()?)
}

/// `k` more cells embedded: the progress line and the job's counter.
fn tick(bar: &ProgressBar, job: &EmbedJob, k: usize) {
    bar.inc(k as u64);
    if let Some(c) = &job.cells_done {
        c.fetch_add(k as u64, Ordering::Relaxed);
    }
}

/// The progress line, naming the kernel the products run on.
fn progress(show: bool, n: usize, kernel: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} cells {per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> ");
    let b = ProgressBar::new(n as u64).with_style(style);
    b.set_prefix(format!("embedding ({kernel})"));
    b
}

/// Embed `a`'s cells in memory with an already loaded model (the benchmark's zero-shot
/// methods), storing them in `obsm[key]`.
pub fn embed_into<F: ModelFolder>(
    folder: &F,
    model: &F::Model,
    a: &mut scllm_io::AnnData,
    key: &str,
    topts: &TokenOptions,
    batch_size: usize,
    dev: &scllm_models::Device,
) -> anyhow::Result<()> {
    let cells = InMemory {
        src: Path::new("<benchmark data>"),
        layer: None,
        gene_col: None,
        topts,
        batch_size,
        spec: folder.embedding().spec,
    };
    let emb = embed_cells(folder, model, a, &cells, dev, &mut |_| {})?.emb;
    let d = scllm_models::CellModel::d_model(model);
    a.obsm.retain(|(k, _)| k != key);
    a.set_obsm(
        key,
        Matrix::Dense {
            nrows: a.n_obs(),
            ncols: d,
            data: Values::F32(emb),
        },
    );
    Ok(())
}

/// How [`embed_cells`] reads and batches an AnnData held in memory.
struct InMemory<'a> {
    /// The file the cells came from (for messages).
    src: &'a Path,
    /// Use this layer instead of X.
    layer: Option<&'a str>,
    gene_col: Option<&'a str>,
    topts: &'a TokenOptions,
    /// Most cells per forward pass.
    batch_size: usize,
    spec: EmbeddingSpec,
}

/// What [`embed_cells`] produced.
struct Embedded {
    /// `cells × d`, row-major.
    emb: Vec<f32>,
    stats: scllm_models::embed::EmbedStats,
    n_matched: usize,
    n_genes: usize,
    /// The cell totals came from `obs` (else each cell's sum).
    totals_from_obs: bool,
}

/// `a`'s cells (X, or the layer) embedded with a loaded model (`embed`'s in-memory path, its
/// `--check` and the benchmark's zero-shot methods); `on_cells` sees each batch's cell count.
fn embed_cells<F: ModelFolder>(
    folder: &F,
    model: &F::Model,
    a: &scllm_io::AnnData,
    c: &InMemory,
    dev: &scllm_models::Device,
    on_cells: &mut dyn FnMut(usize),
) -> anyhow::Result<Embedded> {
    let m = match c.layer {
        None => a.x()?,
        Some(l) => a.layer(l).ok_or_else(|| {
            let names: Vec<&str> = a.layers.iter().map(|(n, _)| n.as_str()).collect();
            bad(format!(
                "{}: no layer `{l}` (layers: {})",
                c.src.display(),
                names.join(", ")
            ))
        })?,
    };
    let x = scllm_pp::to_csr_f32(m);
    let genes = folder.match_genes(&a.var, c.gene_col, c.src)?;
    let tok = folder.embed_tokenizer(&genes, c.topts)?;
    let opts = embed_options(folder, c.topts, c.batch_size);
    let normalize = folder.embedding().normalize;
    let mut e = Embedder::new(model, dev, tok.as_ref(), c.spec, normalize, opts)?;
    let totals = totals_of(folder, &a.obs);
    let mut emb = vec![0f32; x.nrows * e.dim()];
    e.embed_block(&x, totals.as_deref(), &mut emb, on_cells)?;
    Ok(Embedded {
        emb,
        stats: e.stats,
        n_matched: genes.n_matched,
        n_genes: x.ncols,
        totals_from_obs: totals.is_some(),
    })
}

/// Batches of `batch_size` cells, at most `batch_size` × the longest cell's tokens.
fn embed_options<F: ModelFolder>(
    folder: &F,
    topts: &TokenOptions,
    batch_size: usize,
) -> EmbedOptions {
    EmbedOptions {
        batch_size,
        max_batch_tokens: batch_size * topts.max_len.unwrap_or_else(|| folder.max_len()),
        ..EmbedOptions::default()
    }
}

/// `embed` for a family whose cells attend to each other (CellPLM: docs/models/cellplm.md §7):
/// the cells of each `obs` group form one attention set, optionally cut into sets of at most
/// `--batch-size` consecutive cells; output rows in input order, the grouping in
/// `uns['cellplm_sets']`. With `--stream` X is read block by block and each set runs once its
/// last cell is read (the same numbers as in memory).
fn embed_sets(
    job: &EmbedJob,
    mut source: Cells,
    kernel: &str,
    dev: &scllm_models::Device,
) -> anyhow::Result<EmbedOutcome> {
    use scllm_models::cellplm::{
        embed_anndata, embed_blocks, CellPlmFolder, GroupBy, SetOptions, OBSM_KEY,
    };
    let unsupported = [
        (job.layer.is_some(), "--layer"),
        (job.gene_col.is_some(), "--gene-col"),
        (job.weights.is_some(), "--weights"),
        (job.dictionaries.is_some(), "--dictionaries"),
        (job.max_len.is_some(), "--max-len"),
        (job.pooling.is_some(), "--emb-mode"),
        (job.emb_layer.is_some(), "--emb-layer"),
    ];
    crate::error::refuse_flags(&unsupported, |flag| {
        format!(
            "{flag} is not supported for CellPLM models (cells are the tokens: the embedding is \
             the latent mean of X's raw counts, matched by var.index)"
        )
    })?;
    let t0 = Instant::now();
    let folder = CellPlmFolder::open(&job.model)?;
    let ((mut model, report), reused) = model_cache::get_or_load(
        job.keep_model,
        || load_key(job),
        || {
            let (mut m, r) = folder.load(dev)?;
            m.set_precision(job.precision);
            Ok((m, r))
        },
    )?;
    let load_secs = t0.elapsed().as_secs_f64();
    show_load_report(job, &report)?;
    let opts = SetOptions {
        group_by: GroupBy::from_flag(job.group_by.as_deref()),
        batch_size: job.set_size,
    };
    let key = job.obsm_key.clone().unwrap_or_else(|| OBSM_KEY.to_string());
    let gene_list = &folder.config.gene_list;
    let t1 = Instant::now();
    let (mut check, mut check_secs) = (None, 0.0);
    let mut streamed = None;
    let mut uns = Vec::new();
    let (e, n) = if job.stream {
        // X goes to the output block by block as it is read: the matrix is never whole in memory
        let backed = scllm_io::BackedAnnData::open(&job.input, "X")?;
        let (n, g) = backed.shape();
        let mut w = stream_writer(job, &source, g)?;
        let bar = progress(job.progress, n, kernel);
        let e = embed_blocks(
            &model,
            gene_list,
            &backed,
            &opts,
            job.block_cells.max(1),
            dev,
            &mut |block, k| {
                if let Some(w) = w.as_mut() {
                    w.append(block)?;
                }
                tick(&bar, job, k);
                Ok(())
            },
        )?;
        bar.finish();
        let emb = dense(n, e.dim, e.latent.clone());
        uns.push(("cellplm_sets".to_string(), e.sets.to_uns()));
        match w {
            Some(w) => w.finish(&backed.obs, &backed.var, &[(key.clone(), emb)], &uns)?,
            None => streamed = Some(emb),
        }
        (e, n)
    } else {
        let mut owned = None;
        let (a, write) = source.get(&job.input, &mut owned)?;
        let e = embed_anndata(&model, gene_list, a, &job.input, &opts, dev)?;
        if let Some(c) = &job.cells_done {
            c.fetch_add(a.n_obs() as u64, Ordering::Relaxed);
        }
        if job.check > 0 {
            let tc = Instant::now();
            let c =
                precision_check::check_cells(a, job.check, job.check_label.as_deref(), &job.input)?;
            let agreement = precision_check::compare(&c, e.dim, job.precision, |p, cells| {
                model.set_precision(p);
                Ok(embed_anndata(&model, gene_list, cells, &job.input, &opts, dev)?.latent)
            })?;
            check = Some(agreement);
            check_secs = tc.elapsed().as_secs_f64();
        }
        let n = a.n_obs();
        a.obsm.retain(|(k, _)| k != &key);
        a.set_obsm(&key, dense(n, e.dim, e.latent.clone()));
        a.set_uns("cellplm_sets", e.sets.to_uns());
        if write {
            scllm_io::write_h5ad(a, &job.output, scllm_io::Compression::None)?;
        }
        (e, n)
    };
    let embed_secs = t1.elapsed().as_secs_f64() - check_secs;
    if job.progress {
        eprintln!("{}; {}; {kernel}", e.genes.summary(), e.sets.describe());
    }
    let secs = t0.elapsed().as_secs_f64() - check_secs;
    let summary = json!({
        "input": job.input.display().to_string(),
        "output": job.output.display().to_string(),
        "model": job.model.display().to_string(),
        "family": "cellplm",
        "obsm_key": key,
        "cells": n,
        "dim": e.dim,
        "genes_matched": [e.genes.n_matched, e.genes.n_genes],
        "gene_match": e.genes.key,
        "group_by": e.sets.column,
        "set_size": e.sets.batch_size,
        "groups": e.sets.n_groups,
        "sets": e.sets.sets.len(),
        "streamed": job.stream,
        "model_reused": reused,
        "tokens": n,
        "padded_tokens": n,
        "seconds": secs,
        "cells_per_second": n as f64 / secs,
        "load_seconds": load_secs,
        "embed_seconds": embed_secs,
        "forward_seconds": e.forward_seconds,
        "threads": scllm_models::threads(),
        "precision": job.precision,
        "kernel": kernel,
        "check": &check,
        "check_seconds": check_secs,
        "load_report": report,
    });
    Ok(EmbedOutcome {
        summary,
        report,
        check,
        embedding: streamed,
        uns,
    })
}

/// A row-major `n × d` float32 matrix.
fn dense(n: usize, d: usize, data: Vec<f32>) -> Matrix {
    Matrix::Dense {
        nrows: n,
        ncols: d,
        data: Values::F32(data),
    }
}
