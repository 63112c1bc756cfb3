//! `scllm papers …`: argument parsing and printing over the library.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::chunk::{chunk_paper, DEFAULT_MAX_CHARS};
use crate::client::{normalize_doi, PapersClient, SearchBackend};
use crate::config::{self, ClientConfig};
use crate::embed::HashingEmbedder;
use crate::extract::Vocabulary;
use crate::graph::build::{benchmark_batch, paper_batch, parse_benchmark_records};
use crate::graph::{self, CannedQuery, QueryRows};
use crate::lookup::{self, progress, Shown};
use crate::paper::{FullTextOutcome, Paper};

pub const ENV_STORE: &str = "SCLLM_PAPERS_STORE";
const DEFAULT_STORE: &str = "sqlite:scllm-papers.db";

/// Literature: search bioRxiv/medRxiv, read full text, build a knowledge graph.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  scllm papers search \"scGPT cell type annotation\" --limit 20\n  scllm papers show 10.1101/2023.10.19.563100 --full-text\n  scllm papers graph add --from-search \"single-cell foundation model\" --limit 10\n  scllm papers graph query gene-cell-type --gene CD3E --cell-type \"T cells\""
)]
pub struct PapersArgs {
    #[command(subcommand)]
    pub command: PapersCommand,
    /// Europe PMC REST base (the client appends /search and /{source}/{id}/fullTextXML).
    #[arg(long, global = true, env = config::ENV_EUROPEPMC_URL, default_value = config::DEFAULT_EUROPEPMC_URL)]
    pub europepmc_url: String,
    /// bioRxiv API base.
    #[arg(long, global = true, env = config::ENV_BIORXIV_API_URL, default_value = config::DEFAULT_BIORXIV_API_URL)]
    pub biorxiv_api_url: String,
    /// bioRxiv web site (HTML search and jatsxml links).
    #[arg(long, global = true, env = config::ENV_BIORXIV_URL, default_value = config::DEFAULT_BIORXIV_URL)]
    pub biorxiv_url: String,
    /// On-disk cache [default: $SCLLM_CACHE_DIR, else ~/.cache/scllm/papers].
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Minimum milliseconds between two requests to the same API host (the web site always gets 3 s or more).
    #[arg(long, global = true, default_value_t = 1000)]
    pub min_interval_ms: u64,
    /// Retries for 429, 5xx and network errors.
    #[arg(long, global = true, default_value_t = 4)]
    pub max_retries: u32,
    /// Cap in seconds on any single wait, including a server's Retry-After.
    #[arg(long, global = true, default_value_t = 120)]
    pub max_wait_secs: u64,
    /// Request timeout in seconds.
    #[arg(long, global = true, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Wall-clock limit in seconds for all the fetching one command does (waits and retries
    /// included); 0 for none. Raise it for large --limit batches.
    #[arg(long, global = true, default_value_t = 120, value_name = "SECONDS")]
    pub deadline: u64,
    /// Folder with scllm's resources (default_gene_vocab.json, PanglaoDB markers) [env SCLLM_RESOURCES_DIR;
    /// else shared/data/resources or ../shared/data/resources; else the built-in lists].
    #[arg(long, global = true)]
    pub resources: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PapersCommand {
    /// Keyword search of bioRxiv/medRxiv preprints (Europe PMC, relevance ranked).
    #[command(
        after_help = "Example:\n  scllm papers search \"Geneformer perturbation\" --limit 50 --json > hits.json"
    )]
    Search {
        query: String,
        /// Pages until this many results (or the results end).
        #[arg(long, default_value_t = 25)]
        limit: usize,
        /// Use bioRxiv's HTML search (75 per page) instead; often blocked by Cloudflare.
        #[arg(long)]
        html_search: bool,
        #[arg(long)]
        json: bool,
    },
    /// Metadata of one preprint (all versions known to api.biorxiv.org), optionally its full text.
    #[command(after_help = "Example:\n  scllm papers show 10.1101/2023.10.19.563100 --full-text")]
    Show {
        doi: String,
        /// Fetch and print the JATS full text (sections, captions, tables, references).
        #[arg(long)]
        full_text: bool,
        #[arg(long)]
        json: bool,
    },
    /// Preprints posted in a date interval (api.biorxiv.org details), optionally one category.
    #[command(
        after_help = "Example:\n  scllm papers list --from 2025-01-01 --to 2025-01-07 --category bioinformatics --limit 200 --json"
    )]
    List {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "biorxiv")]
        server: String,
        #[arg(long)]
        category: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Chunks with metadata as JSON Lines, ready for an embedding model.
    #[command(
        after_help = "Examples:\n  scllm papers chunks 10.1101/2023.10.19.563100 --out chunks.jsonl\n  scllm papers chunks --store sqlite:papers.db --embed-dim 256 > chunks.jsonl"
    )]
    Chunks {
        /// DOIs to fetch and chunk; with none, chunks come from --store.
        dois: Vec<String>,
        #[arg(long)]
        from_search: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Read chunks from this SQLite graph instead of fetching.
        #[arg(long)]
        store: Option<String>,
        #[arg(long, default_value_t = DEFAULT_MAX_CHARS)]
        max_chars: usize,
        /// Add a local hashing bag-of-words embedding of this dimension (no hosted API).
        #[arg(long)]
        embed_dim: Option<usize>,
        /// Output file [default: stdout].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The knowledge graph.
    Graph {
        #[command(subcommand)]
        command: GraphCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum GraphCommand {
    /// Add papers (metadata, authors, chunks, mentions, table results); re-adding changes nothing.
    #[command(
        after_help = "Examples:\n  scllm papers graph add 10.1101/2023.10.19.563100 --store sqlite:papers.db\n  scllm papers graph add --from-search \"scGPT benchmark\" --limit 10 --store falkordb://127.0.0.1:6379/papers"
    )]
    Add {
        dois: Vec<String>,
        #[arg(long)]
        from_search: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// sqlite:FILE, neo4j+http://HOST:7474[/DB], or falkordb://HOST:PORT/GRAPH [env SCLLM_PAPERS_STORE].
        #[arg(long)]
        store: Option<String>,
        /// Metadata and abstract only.
        #[arg(long)]
        no_full_text: bool,
        #[arg(long, default_value_t = DEFAULT_MAX_CHARS)]
        max_chars: usize,
        /// Store a local hashing embedding on each chunk and create a vector index of this dimension.
        #[arg(long)]
        embed_dim: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Add scllm benchmark results (JSON array, {"results": [...]}, or JSON Lines of
    /// {model, dataset, metric, value, task?, run_id?, split?}).
    #[command(
        after_help = "Example:\n  scllm papers graph add-benchmark bench/results.json --store sqlite:papers.db"
    )]
    AddBenchmark {
        file: PathBuf,
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Canned questions.
    #[command(
        after_help = "Examples:\n  scllm papers graph query gene-cell-type --gene CD3E --cell-type \"T cells\"\n  scllm papers graph query model-metrics --dataset pbmc3k --json\n  scllm papers graph query compare"
    )]
    Query {
        #[arg(value_enum)]
        question: Question,
        #[arg(long)]
        gene: Option<String>,
        #[arg(long)]
        cell_type: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        metric: Option<String>,
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Node and relationship counts.
    #[command(after_help = "Example:\n  scllm papers graph stats --store sqlite:papers.db --json")]
    Stats {
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export a SQLite graph for Neo4j: neo4j-admin CSV files, or a cypher-shell script.
    #[command(
        after_help = "Examples:\n  scllm papers graph export --store sqlite:papers.db --format neo4j-csv --out neo4j-import/\n  scllm papers graph export --store sqlite:papers.db --format cypher --out papers.cypher"
    )]
    Export {
        #[arg(long)]
        store: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Neo4jCsv)]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Question {
    /// Papers mentioning a gene (--gene) and a cell type (--cell-type).
    GeneCellType,
    /// Models and their metrics per dataset, from papers and scllm benchmarks.
    ModelMetrics,
    /// Paper-reported vs scllm-measured values for the same model, dataset and metric.
    Compare,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Neo4jCsv,
    Cypher,
}

impl PapersArgs {
    pub fn client_config(&self) -> ClientConfig {
        let env_defaults = ClientConfig::from_env();
        ClientConfig {
            europepmc_url: self.europepmc_url.clone(),
            biorxiv_api_url: self.biorxiv_api_url.clone(),
            biorxiv_url: self.biorxiv_url.clone(),
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache_dir.clone().or(env_defaults.cache_dir)
            },
            api_min_interval: Duration::from_millis(self.min_interval_ms),
            web_min_interval: Duration::from_millis(self.min_interval_ms.max(3000)),
            max_retries: self.max_retries,
            max_wait: Duration::from_secs(self.max_wait_secs),
            timeout: Duration::from_secs(self.timeout_secs),
            deadline: (self.deadline > 0).then(|| Duration::from_secs(self.deadline)),
            progress: true,
            ..env_defaults
        }
    }
}

pub fn run(args: PapersArgs) -> anyhow::Result<()> {
    let client = PapersClient::new(args.client_config());
    let resources = args.resources.clone();
    match args.command {
        PapersCommand::Search {
            query,
            limit,
            html_search,
            json,
        } => {
            let backend = if html_search {
                SearchBackend::BiorxivHtml
            } else {
                SearchBackend::EuropePmc
            };
            let papers = lookup::search(&client, &query, backend, limit)?;
            if json {
                print_json(&papers)?;
            } else {
                let mut out = std::io::stdout().lock();
                for p in &papers {
                    let v = p.version.map(|v| format!("v{v}")).unwrap_or_default();
                    writeln!(
                        out,
                        "{}{}\t{}\t{}",
                        p.doi,
                        v,
                        p.date.as_deref().unwrap_or("-"),
                        p.title
                    )?;
                }
                eprintln!("{} result(s) for \"{query}\"", papers.len());
            }
        }
        PapersCommand::Show {
            doi,
            full_text,
            json,
        } => {
            let Shown {
                paper,
                versions,
                full_text: outcome,
            } = lookup::show(&client, &doi, full_text)?;
            if json {
                print_json(&json!({
                    "paper": paper,
                    "versions": versions.iter().map(|p| json!({"version": p.version, "date": p.date})).collect::<Vec<_>>(),
                    "full_text": outcome,
                }))?;
            } else {
                print_paper(&paper, &versions, outcome.as_ref())?;
            }
        }
        PapersCommand::List {
            from,
            to,
            server,
            category,
            limit,
            json,
        } => {
            let spinner = spinner(&client, format!("listing {server} {from}..{to}"));
            let papers =
                client.details_interval(&server, &from, &to, category.as_deref(), Some(limit))?;
            spinner.finish_and_clear();
            if json {
                print_json(&papers)?;
            } else {
                let mut out = std::io::stdout().lock();
                for p in &papers {
                    writeln!(
                        out,
                        "{}v{}\t{}\t{}\t{}",
                        p.doi,
                        p.version.unwrap_or(1),
                        p.date.as_deref().unwrap_or("-"),
                        p.category.as_deref().unwrap_or("-"),
                        p.title
                    )?;
                }
                eprintln!("{} preprint(s)", papers.len());
            }
        }
        PapersCommand::Chunks {
            dois,
            from_search,
            limit,
            store,
            max_chars,
            embed_dim,
            out,
        } => {
            let embedder = embed_dim.map(HashingEmbedder::new);
            let mut lines: Vec<Value> = Vec::new();
            if dois.is_empty() && from_search.is_none() {
                let spec = store_spec(store);
                let Some(path) = spec.strip_prefix("sqlite:") else {
                    bail!("--store {spec}: chunks are read from SQLite graphs only; give DOIs or --from-search to fetch instead");
                };
                let s = graph::sqlite::SqliteStore::open(path)?;
                for (id, props) in s.chunks()? {
                    let mut line = json!({"id": id});
                    for (k, v) in props {
                        if k != "embedding" {
                            line[k] = v;
                        }
                    }
                    lines.push(line);
                }
            } else {
                let papers = collect_papers(&client, &dois, from_search.as_deref(), limit, true)?;
                for paper in &papers {
                    for c in chunk_paper(paper, max_chars) {
                        lines.push(serde_json::to_value(&c)?);
                    }
                }
            }
            if let Some(e) = &embedder {
                for line in &mut lines {
                    let text = line["text"].as_str().unwrap_or_default().to_string();
                    line["embedding"] = json!(e.embed(&text));
                    line["embed_model"] = json!(e.model_name());
                }
            }
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| {
                        format!("{}: cannot create the output file", p.display())
                    })?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            for line in &lines {
                writeln!(sink, "{line}")?;
            }
            sink.flush()?;
            eprintln!(
                "{} chunk(s) written; full text stays under each paper's licence (see the license field) — link back rather than redistribute",
                lines.len()
            );
        }
        PapersCommand::Graph { command } => run_graph(&client, resources, command)?,
    }
    Ok(())
}

fn run_graph(
    client: &PapersClient,
    resources: Option<PathBuf>,
    command: GraphCommand,
) -> anyhow::Result<()> {
    match command {
        GraphCommand::Add {
            dois,
            from_search,
            limit,
            store,
            no_full_text,
            max_chars,
            embed_dim,
            json,
        } => {
            if dois.is_empty() && from_search.is_none() {
                bail!("graph add needs DOIs or --from-search \"QUERY\"; e.g. scllm papers graph add 10.1101/2023.10.19.563100");
            }
            let vocab = load_vocab(resources.as_deref())?;
            let mut store = graph::open_store(&store_spec(store))?;
            store.ensure_schema(embed_dim)?;
            let embedder = embed_dim.map(HashingEmbedder::new);
            let papers =
                collect_papers(client, &dois, from_search.as_deref(), limit, !no_full_text)?;
            let bar = progress(client, papers.len() as u64, "adding to graph");
            let mut added = Vec::new();
            for paper in &papers {
                let chunks = chunk_paper(paper, max_chars);
                let batch = paper_batch(paper, &chunks, &vocab, embedder.as_ref());
                store
                    .apply(&batch)
                    .with_context(|| format!("adding {} to {}", paper.key(), store.describe()))?;
                added.push(
                    json!({"paper": paper.key(), "title": paper.title, "chunks": chunks.len(),
                    "full_text": paper.full_text.as_ref().map(|f| f.source.clone())}),
                );
                bar.inc(1);
            }
            bar.finish_and_clear();
            let counts = store.counts()?;
            if json {
                print_json(
                    &json!({"store": store.describe(), "added": added, "counts": counts, "vocabulary": vocab.source}),
                )?;
            } else {
                for a in &added {
                    println!(
                        "{}\t{} chunk(s)\t{}",
                        a["paper"].as_str().unwrap_or(""),
                        a["chunks"],
                        a["title"].as_str().unwrap_or("")
                    );
                }
                eprintln!(
                    "{} paper(s) in {}; graph now has {}",
                    added.len(),
                    store.describe(),
                    summarize(&counts.nodes)
                );
            }
        }
        GraphCommand::AddBenchmark { file, store, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read benchmark results", file.display()))?;
            let records = parse_benchmark_records(&text, &file.display().to_string())?;
            let vocab = load_vocab(resources.as_deref())?;
            let mut store = graph::open_store(&store_spec(store))?;
            store.ensure_schema(None)?;
            store.apply(&benchmark_batch(&records, &vocab))?;
            if json {
                print_json(&json!({"store": store.describe(), "results_added": records.len()}))?;
            } else {
                eprintln!(
                    "{} benchmark result(s) added to {}",
                    records.len(),
                    store.describe()
                );
            }
        }
        GraphCommand::Query {
            question,
            gene,
            cell_type,
            model,
            dataset,
            metric,
            store,
            json,
        } => {
            let vocab = load_vocab(resources.as_deref())?;
            let query = match question {
                Question::GeneCellType => {
                    let (Some(gene), Some(cell_type)) = (gene, cell_type) else {
                        bail!("gene-cell-type needs --gene SYMBOL and --cell-type NAME, e.g. --gene CD3E --cell-type \"T cells\"");
                    };
                    let ct = vocab.cell_type_id(&cell_type).unwrap_or(cell_type);
                    CannedQuery::GeneCellType {
                        gene: gene.trim().to_uppercase(),
                        cell_type: ct,
                    }
                }
                Question::ModelMetrics => CannedQuery::ModelMetrics {
                    model: model.map(|m| vocab.model_id(&m).unwrap_or(m)),
                    dataset: dataset.map(|d| vocab.dataset_id(&d).unwrap_or(d)),
                    metric: metric.map(|m| vocab.metric_id(&m).unwrap_or(m)),
                },
                Question::Compare => CannedQuery::Compare,
            };
            let mut store = graph::open_store(&store_spec(store))?;
            let rows = store.query(&query)?;
            if json {
                print_json(&rows_as_objects(&rows))?;
            } else {
                print_table(&rows)?;
            }
        }
        GraphCommand::Stats { store, json } => {
            let mut store = graph::open_store(&store_spec(store))?;
            let counts = store.counts()?;
            if json {
                print_json(&json!({"store": store.describe(), "counts": counts}))?;
            } else {
                println!("{}", store.describe());
                for (k, v) in counts.nodes.iter().chain(counts.relationships.iter()) {
                    println!("{k}\t{v}");
                }
            }
        }
        GraphCommand::Export { store, format, out } => {
            let spec = store_spec(store);
            let Some(path) = spec.strip_prefix("sqlite:") else {
                bail!("--store {spec}: export reads SQLite graphs; give --store sqlite:FILE");
            };
            let s = graph::sqlite::SqliteStore::open(path)?;
            let batch = s.dump()?;
            let dim = batch
                .nodes
                .iter()
                .find_map(|n| n.props.get("embedding")?.as_array().map(|a| a.len()));
            match format {
                ExportFormat::Neo4jCsv => {
                    let files = graph::export::write_neo4j_csv(&batch, &out)?;
                    eprintln!(
                        "{} file(s) in {}; run import.sh there with neo4j-admin",
                        files.len(),
                        out.display()
                    );
                }
                ExportFormat::Cypher => {
                    graph::export::write_cypher_script(&batch, &out, dim)?;
                    eprintln!(
                        "wrote {}; run: cypher-shell -f {}",
                        out.display(),
                        out.display()
                    );
                }
            }
        }
    }
    Ok(())
}

fn store_spec(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var(ENV_STORE).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_STORE.to_string())
}

fn load_vocab(dir: Option<&std::path::Path>) -> anyhow::Result<Vocabulary> {
    let v = Vocabulary::load(dir)?;
    eprintln!(
        "vocabulary: {} genes from {}; {} cell types from {}",
        v.source.gene_count, v.source.genes, v.source.cell_type_count, v.source.cell_types
    );
    Ok(v)
}

/// Papers by DOI or from a search; each enriched from `details`, with full text when asked.
/// A paper that fails is reported and skipped; if all fail, the last error is returned.
fn collect_papers(
    client: &PapersClient,
    dois: &[String],
    from_search: Option<&str>,
    limit: usize,
    full_text: bool,
) -> anyhow::Result<Vec<Paper>> {
    let mut seeds: Vec<Paper> = Vec::new();
    for d in dois {
        seeds.push(Paper {
            doi: normalize_doi(d)?,
            ..Paper::default()
        });
    }
    if let Some(q) = from_search {
        seeds.extend(lookup::search(client, q, SearchBackend::EuropePmc, limit)?);
    }
    let bar = progress(client, seeds.len() as u64, "fetching papers");
    let mut out = Vec::new();
    let mut last_err = None;
    for seed in seeds {
        let mut paper = match client.paper(&seed.doi) {
            Ok(mut p) => {
                p.merge_missing(&seed);
                p
            }
            // Europe PMC knew it though api.biorxiv.org does not (yet): keep what search gave.
            Err(crate::PapersError::UnknownDoi { .. }) if !seed.title.is_empty() => seed,
            // Past the deadline every further paper would fail the same way.
            Err(e @ crate::PapersError::Deadline { .. }) => {
                bar.finish_and_clear();
                return Err(e.into());
            }
            Err(e) => {
                bar.suspend(|| eprintln!("warning: {}: {e}", seed.doi));
                last_err = Some(e);
                bar.inc(1);
                continue;
            }
        };
        if full_text {
            match client.full_text(&mut paper) {
                Ok(FullTextOutcome::Jats(t)) => paper.full_text = Some(t),
                Ok(FullTextOutcome::PdfOnly { pdf_url, .. }) => bar.suspend(|| {
                    eprintln!(
                        "note: {} has no JATS full text (PDF only: {pdf_url}); abstract only",
                        paper.key()
                    )
                }),
                Err(e @ crate::PapersError::Deadline { .. }) => {
                    bar.finish_and_clear();
                    return Err(e.into());
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("warning: {}: full text skipped: {e}", paper.key()))
                }
            }
        }
        out.push(paper);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if out.is_empty() {
        if let Some(e) = last_err {
            return Err(e.into());
        }
    }
    Ok(out)
}

fn print_paper(
    p: &Paper,
    versions: &[Paper],
    outcome: Option<&FullTextOutcome>,
) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{}", p.title)?;
    writeln!(
        o,
        "DOI:       {} (version {} of {})",
        p.doi,
        p.version.unwrap_or(1),
        versions.len()
    )?;
    writeln!(o, "Link:      {}", p.url())?;
    writeln!(o, "Authors:   {}", p.authors.join("; "))?;
    for (label, value) in [
        ("Date", &p.date),
        ("Server", &p.server),
        ("Category", &p.category),
        ("Type", &p.article_type),
        ("License", &p.license),
        ("Published", &p.published_doi),
        ("Journal", &p.published_journal),
    ] {
        if let Some(v) = value {
            writeln!(o, "{:<10} {v}", format!("{label}:"))?;
        }
    }
    writeln!(o, "\nAbstract\n{}", p.abstract_text)?;
    match outcome {
        None => {}
        Some(FullTextOutcome::PdfOnly { pdf_url, reason }) => {
            writeln!(o, "\nFull text: PDF only ({reason})\n{pdf_url}")?;
        }
        Some(FullTextOutcome::Jats(t)) => {
            writeln!(o, "\nFull text (JATS from {})", t.source)?;
            for s in &t.sections {
                writeln!(o, "\n## {}", s.heading)?;
                for para in &s.paragraphs {
                    writeln!(o, "{para}\n")?;
                }
            }
            for f in &t.figures {
                writeln!(
                    o,
                    "[{}] {}",
                    if f.label.is_empty() { &f.id } else { &f.label },
                    f.caption
                )?;
            }
            for tb in &t.tables {
                writeln!(
                    o,
                    "\n[{}] {}",
                    if tb.label.is_empty() {
                        &tb.id
                    } else {
                        &tb.label
                    },
                    tb.caption
                )?;
                for row in &tb.rows {
                    writeln!(o, "  {}", row.join(" | "))?;
                }
            }
            writeln!(o, "\nReferences: {}", t.references.len())?;
            for r in &t.references {
                writeln!(o, "  {} {}", r.label, r.text)?;
            }
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut o, v)?;
    writeln!(o)?;
    Ok(())
}

fn rows_as_objects(rows: &QueryRows) -> Value {
    Value::Array(
        rows.rows
            .iter()
            .map(|r| {
                Value::Object(
                    rows.columns
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned())
                        .collect(),
                )
            })
            .collect(),
    )
}

fn print_table(rows: &QueryRows) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{}", rows.columns.join("\t"))?;
    for r in &rows.rows {
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            })
            .collect();
        writeln!(o, "{}", cells.join("\t"))?;
    }
    eprintln!("{} row(s)", rows.rows.len());
    Ok(())
}

fn summarize(counts: &std::collections::BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A spinner drawn with the client's per-request spinners, so neither overwrites the other.
fn spinner(client: &PapersClient, msg: String) -> ProgressBar {
    let s = client.http().progress().add(ProgressBar::new_spinner());
    s.set_message(msg);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}
