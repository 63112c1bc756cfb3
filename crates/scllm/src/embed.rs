//! `scllm embed` (cell embeddings with any family's model) and `scllm convert` (checkpoint
//! import report and safetensors export): arguments into a job, printing. The work is
//! `scllm_tasks::embed` and `scllm_tasks::convert`.

use std::path::PathBuf;

use clap::Args;
use scllm_models::{Pooling, Precision};
use scllm_tasks::convert::{convert, ConvertJob};
use scllm_tasks::embed::{embed, EmbedJob};
use scllm_tasks::{bad, model_dir};

#[derive(Args, Debug)]
#[command(
    after_help = "The model folder's family is detected. scGPT: the reference's embed_data \
pipeline: genes matched to the model's vocabulary (symbols, or Ensembl ids via GENCODE), the \
expressed genes of each cell binned per cell (so raw counts, normalized or log1p input give the \
same bins), <cls> first, at most --max-len tokens (genes sampled, seeded per cell), the <cls> \
output L2-normalized into obsm['X_scGPT']. Geneformer: EmbExtractor's pipeline: rank-value \
tokens of raw counts (n_counts from obs['n_counts'], else each cell's sum), the mean of the \
second-to-last layer over the cell's genes (--emb-mode cls|cell, --emb-layer) into \
obsm['X_geneformer']. A cell's embedding does not depend on the other cells in its batch.\n\n\
CellPLM (a folder with one {prefix}.config.json + {prefix}.best.ckpt pair): cells are the tokens \
and a cell's embedding DEPENDS ON THE OTHER CELLS OF ITS SET by design: each obs['batch'] group \
(--group-by COL for another column, --group-by none for all cells) is one attention set, cut \
into sets of at most --batch-size consecutive cells only when --batch-size is given (default: \
whole groups). X must hold raw counts (log1p, no normalization); genes are matched by Ensembl id \
in var.index (symbols via GENCODE). The GMVAE latent mean goes to obsm['X_cellplm'], the \
grouping to uns['cellplm_sets'], rows in input order.\n\n\
Example (the released whole-human model):\n  \
scllm embed --model scGPT_human pbmc.h5ad -o pbmc_emb.h5ad --obsm-key X_scGPT --threads 8\n\
Example (files larger than memory: obs, var and the embeddings, X not copied):\n  \
scllm embed --model scGPT_human atlas.h5ad -o atlas_emb.h5ad --stream --json"
)]
pub struct EmbedArgs {
    /// Input .h5ad (raw counts as the models expect; scGPT takes any non-negative expression)
    pub input: PathBuf,
    /// Model folder of any family: scGPT (best_model.pt or model.safetensors, vocab.json,
    /// args.json) or Geneformer (config.json, model.safetensors or pytorch_model.bin, the token
    /// dictionaries), scBERT or CellPLM (default: $SCLLM_MODEL, else the shipped
    /// models/cellplm-small, else models/scllm-small)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Geneformer: a folder holding the model's dictionary pickles (token_dictionary.pkl,
    /// gene_median_dictionary.pkl, or the V2 *_gc104M.pkl set; default: the model folder, else
    /// the V1 dictionaries bundled with scllm)
    #[arg(long, value_name = "DIR")]
    pub dictionaries: Option<PathBuf>,
    /// Output .h5ad: the input with the embeddings in obsm (written to a temporary file, then renamed)
    #[arg(short, long)]
    pub output: PathBuf,
    /// obsm key of the embeddings (default: the family's, X_scGPT or X_geneformer)
    #[arg(long)]
    pub obsm_key: Option<String>,
    /// Most cells per forward pass (a batch holds cells of one length: nothing is padded;
    /// default 64). CellPLM: most cells per attention set, each group cut into sets of
    /// consecutive cells (default: whole groups)
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// CellPLM: the obs column whose groups are the attention sets (default: batch when the
    /// file has it; `none`: all cells one set)
    #[arg(long, value_name = "COL")]
    pub group_by: Option<String>,
    /// Most tokens per cell, special tokens included (default: the model's, scGPT max_seq_len
    /// 1200, Geneformer 2048 / 4096)
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Seed of the binning tie-breaks and gene sampling (same seed, same embeddings)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, or cuda (in builds with the `cuda` feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads for the kernels (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// var column holding gene names (default: var.index)
    #[arg(long)]
    pub gene_col: Option<String>,
    /// Use this layer instead of X (e.g. counts)
    #[arg(long)]
    pub layer: Option<String>,
    /// A weights file other than the folder's best_model.pt (.pt or .safetensors)
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Fail when any model weight is missing from the checkpoint or has another shape
    #[arg(long)]
    pub strict: bool,
    /// Write the checkpoint load report (loaded, skipped, missing, unexpected keys) as JSON here
    #[arg(long)]
    pub load_report: Option<PathBuf>,
    /// Read X in blocks of cells (bounded memory); the output then holds obs, var and the
    /// embeddings, not X
    #[arg(long)]
    pub stream: bool,
    /// Cells per block when streaming
    #[arg(long, default_value_t = 20000)]
    pub block_cells: usize,
    /// Geneformer: `cell` (mean over the cell's genes, the default) or `cls` (the first
    /// position; V2 models have `<cls>` there)
    #[arg(long, value_name = "cell|cls")]
    pub emb_mode: Option<String>,
    /// Geneformer: which layer, 0 = the last, -1 = the second-to-last (the default)
    #[arg(long, allow_hyphen_values = true)]
    pub emb_layer: Option<i32>,
    /// Number format of the model's products: f32 (the reference's numbers), bf16 (bf16
    /// weights and inputs, f32 sums; AVX-512 BF16 where the CPU has it) or int8 (linear layers:
    /// per-channel weights, per-position inputs, i32 sums on AVX-512 VNNI; attention's products
    /// bf16). LayerNorm, softmax and residuals stay f32 (docs/precision.md).
    /// $GEMMKIT_REQUIRE_ISA pins the kernel (scalar, avx2, avx512f, avx512bf16, avx512vnni).
    /// Default: bf16 where the CPU has AVX-512 BF16 (~2x f32, cosine to f32 ≥ 0.9999), else
    /// f32; the output says which. Give f32 for the reference implementation's exact numbers
    #[arg(long, value_name = "f32|bf16|int8")]
    pub precision: Option<Precision>,
    /// Also embed N cells (spread over the file) in f32 and compare with --precision: cosine
    /// distribution, shared 10 nearest neighbours, and with --check-label the 10-NN label on both
    #[arg(long, value_name = "N")]
    pub check: Option<usize>,
    /// obs column of labels for --check's 10-NN vote
    #[arg(long, value_name = "COL", requires = "check")]
    pub check_label: Option<String>,
    /// Print a machine-readable summary (with the load report) instead of progress
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Reads a PyTorch .pt/.bin (never executing its pickle: any object other than \
tensors is refused) or a safetensors file into the model its folder describes (any family), \
reports every key (loaded, skipped for a shape mismatch, missing, unexpected), and with -o saves \
the weights as safetensors in the released layout (PyTorch names and shapes). A CellPLM folder \
({prefix}.config.json + {prefix}.best.ckpt): every tensor scllm reads, the pretraining parts \
included when the checkpoint has them, under the reference's model_state_dict keys.\n\n\
Example:\n  scllm convert --model scGPT_human -o scGPT_human/model.safetensors --strict"
)]
pub struct ConvertArgs {
    /// Model folder of any family
    #[arg(long)]
    pub model: PathBuf,
    /// Geneformer: a folder holding the model's dictionary pickles (token_dictionary.pkl,
    /// gene_median_dictionary.pkl, or the V2 *_gc104M.pkl set; default: the model folder, else
    /// the V1 dictionaries bundled with scllm)
    #[arg(long, value_name = "DIR")]
    pub dictionaries: Option<PathBuf>,
    /// A weights file other than the folder's best_model.pt
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Write the weights as safetensors here
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Classes of the classifier head to build (0: none, as in a released model)
    #[arg(long, default_value_t = 0)]
    pub n_cls: usize,
    /// Fail when any model weight is missing or has another shape
    #[arg(long)]
    pub strict: bool,
    /// With -o: store the linear layers' weights as bf16 (half the bytes; read by every
    /// loader and by torch; `embed --precision bf16` then uses them as they are). int8 is
    /// refused: no checkpoint layout holds it, convert at load with --precision int8 instead
    #[arg(
        long,
        default_value = "f32",
        value_name = "f32|bf16",
        requires = "output"
    )]
    pub precision: Precision,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let pooling = match args.emb_mode.as_deref() {
        None => None,
        Some("cell") | Some("mean") => Some(Pooling::Mean),
        Some("cls") => Some(Pooling::Cls),
        Some(o) => return Err(bad(format!("--emb-mode must be cell or cls, got {o}"))),
    };
    let (precision, defaulted) = Precision::or_cpu_default(args.precision);
    let job = EmbedJob {
        weights: args.weights.clone(),
        dictionaries: args.dictionaries.clone(),
        strict: args.strict,
        load_report: args.load_report.clone(),
        obsm_key: args.obsm_key.clone(),
        batch_size: args.batch_size.unwrap_or(64),
        set_size: args.batch_size,
        group_by: args.group_by.clone(),
        max_len: args.max_len,
        seed: args.seed,
        device: args.device.clone(),
        threads: args.threads,
        gene_col: args.gene_col.clone(),
        layer: args.layer.clone(),
        stream: args.stream,
        block_cells: args.block_cells,
        pooling,
        emb_layer: args.emb_layer,
        precision,
        check: args.check.unwrap_or(0),
        check_label: args.check_label.clone(),
        progress: !args.json,
        ..EmbedJob::new(
            args.input.clone(),
            args.output.clone(),
            model_dir::resolve_for_embedding(args.model.as_deref())?,
        )
    };
    let mut out = embed(&job)?;
    out.summary["precision_default"] = defaulted.into();
    let s = &out.summary;
    if args.json {
        print_json(s)?;
    } else {
        let tokens = s["tokens"].as_f64().unwrap_or(0.0);
        let padded = s["padded_tokens"].as_f64().unwrap_or(0.0).max(1.0);
        eprintln!(
            "wrote {}: obsm['{}'] {} cells x {} ({} of {} genes in the vocabulary; {}: {:.1} cells/s, forward {:.1} GFLOP/s, padding {:.1}%, {:.1} s)",
            args.output.display(),
            s["obsm_key"].as_str().unwrap_or(""),
            s["cells"],
            s["dim"],
            s["genes_matched"][0],
            s["genes_matched"][1],
            s["kernel"].as_str().unwrap_or(""),
            s["cells_per_second"].as_f64().unwrap_or(0.0),
            s["forward_gflops_per_second"].as_f64().unwrap_or(0.0),
            100.0 * (1.0 - tokens / padded),
            s["seconds"].as_f64().unwrap_or(0.0),
        );
        if let Some(t) = s["cell_totals"].as_str() {
            eprintln!("  cell totals (n_counts): {t}");
        }
        if defaulted {
            eprintln!("{}", default_note(precision));
        }
        if let Some(c) = &out.check {
            eprintln!(
                "{}",
                scllm_tasks::precision_check::describe(c, precision, args.check_label.as_deref())
            );
        }
    }
    Ok(())
}

/// The line that tells a user which precision they got without asking for one.
pub(crate) fn default_note(p: Precision) -> String {
    match p {
        Precision::F32 => {
            "  precision: f32, the default where bf16 cannot run on AVX-512 BF16 (the CPU \
                            lacks it or $GEMMKIT_REQUIRE_ISA pins another kernel)"
                .into()
        }
        p => format!(
            "  precision: {p}, this CPU's default (AVX-512 BF16; docs/precision.md); \
             --precision f32 gives the reference implementation's exact numbers"
        ),
    }
}

/// Print JSON to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run_convert(args: ConvertArgs) -> anyhow::Result<()> {
    let out = convert(&ConvertJob {
        model: args.model.clone(),
        weights: args.weights.clone(),
        dictionaries: args.dictionaries.clone(),
        output: args.output.clone(),
        n_cls: args.n_cls,
        strict: args.strict,
        precision: args.precision,
    })?;
    if args.json {
        print_json(&serde_json::json!({
            "model": args.model.display().to_string(),
            "family": out.family,
            "output": args.output.as_ref().map(|p| p.display().to_string()),
            "precision": args.precision,
            "report": out.report,
        }))?;
    } else {
        eprint!("{}", out.report.to_text());
        if let (Some(o), Some(n)) = (&args.output, out.written) {
            eprintln!(
                "wrote {} ({n} tensors, safetensors, the {} layout, {} linear weights)",
                o.display(),
                out.family,
                args.precision
            );
        }
    }
    Ok(())
}
