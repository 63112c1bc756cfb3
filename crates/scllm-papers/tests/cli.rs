//! `scllm papers …` end to end: clap parsing of `PapersArgs`, then `run`, against the loopback
//! fixture server, checking what landed in the SQLite graph.

mod common;

use common::{fixtures_dir, papers, standard_routes, FixtureServer, Reply};
use scllm_papers::graph::sqlite::SqliteStore;
use scllm_papers::graph::{CannedQuery, GraphStore, Label};

#[test]
fn graph_add_from_search_then_queries_through_the_command_path() {
    let server = FixtureServer::start(|target, n, body| {
        if target.starts_with("/web/") {
            // bioRxiv web is never needed when Europe PMC has the JATS; make a stray request obvious.
            Reply::status(403, "unexpected")
        } else {
            standard_routes(target, n, body)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("papers.db");
    let store = format!("sqlite:{}", db.display());
    papers(
        &server,
        &[
            "graph",
            "add",
            "--from-search",
            "synthetic",
            "--limit",
            "2",
            "--store",
            &store,
        ],
    )
    .unwrap();
    let bench = fixtures_dir().join("benchmark_results.json");
    papers(
        &server,
        &[
            "graph",
            "add-benchmark",
            bench.to_str().unwrap(),
            "--store",
            &store,
        ],
    )
    .unwrap();
    papers(
        &server,
        &[
            "graph",
            "query",
            "gene-cell-type",
            "--gene",
            "cd3e",
            "--cell-type",
            "t cell",
            "--store",
            &store,
            "--json",
        ],
    )
    .unwrap();

    let mut s = SqliteStore::open(&db).unwrap();
    let counts = s.counts().unwrap();
    assert_eq!(counts.nodes["Paper"], 2, "{counts:?}");
    let paper = s
        .node_props(Label::Paper, "10.1101/2099.01.01.900001v3")
        .unwrap()
        .unwrap();
    assert_eq!(paper["full_text"], "europepmc:PPR/PPR900001");
    let pdf_only = s
        .node_props(Label::Paper, "10.1101/2099.02.02.900002v1")
        .unwrap()
        .unwrap();
    assert!(pdf_only.get("full_text").is_none());
    // The fixture resources hold only 5 usable genes; CD3E is one of them.
    let rows = s
        .query(&CannedQuery::GeneCellType {
            gene: "CD3E".into(),
            cell_type: "T cells".into(),
        })
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    let compare = s.query(&CannedQuery::Compare).unwrap();
    assert_eq!(compare.rows.len(), 2);
    assert!(!server.targets().iter().any(|t| t.starts_with("/web/")));

    // Re-running the same command adds nothing.
    let before = s.dump().unwrap();
    papers(
        &server,
        &[
            "graph",
            "add",
            "--from-search",
            "synthetic",
            "--limit",
            "2",
            "--store",
            &store,
        ],
    )
    .unwrap();
    assert_eq!(SqliteStore::open(&db).unwrap().dump().unwrap(), before);

    let csv = dir.path().join("csv");
    papers(
        &server,
        &[
            "graph",
            "export",
            "--store",
            &store,
            "--format",
            "neo4j-csv",
            "--out",
            csv.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(csv.join("nodes_Chunk.csv").is_file());
}

#[test]
fn search_show_and_chunks_commands_run() {
    let server = FixtureServer::start(standard_routes);
    papers(&server, &["search", "synthetic", "--limit", "3", "--json"]).unwrap();
    papers(
        &server,
        &["show", "10.1101/2099.01.01.900001", "--full-text"],
    )
    .unwrap();
    papers(
        &server,
        &["show", "10.1101/2099.02.02.900002", "--full-text", "--json"],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("chunks.jsonl");
    papers(
        &server,
        &[
            "chunks",
            "10.1101/2099.01.01.900001",
            "--embed-dim",
            "32",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 7);
    assert_eq!(lines[0]["id"], "10.1101/2099.01.01.900001v3#abstract#0");
    assert_eq!(lines[0]["license"], "cc_by");
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 32);
    assert!(lines.iter().any(|l| l["kind"] == "table"));
}

#[test]
fn bad_input_gives_one_line_errors() {
    let server = FixtureServer::start(standard_routes);
    let err = papers(&server, &["show", "not a doi"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a DOI") && !err.contains('\n'), "{err}");
    let err = papers(&server, &["graph", "add", "--store", "sqlite:/tmp/x.db"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--from-search"), "{err}");
    let err = papers(
        &server,
        &["graph", "stats", "--store", "neo4j://db.example:7687"],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("neo4j+http://db.example:7474"), "{err}");
}
