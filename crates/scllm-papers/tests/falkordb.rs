//! A real graph engine: the generated Cypher runs on FalkorDB (Cypher over the Redis protocol).
//! `.ci/falkordb.sh` starts one and prints `export SCLLM_FALKORDB_URL=…`. Without it the test is
//! skipped with a note, except under CI, where a missing or unreachable server is a failure.

mod common;

use common::fixture;
use scllm_papers::chunk::chunk_paper;
use scllm_papers::client::paper_from_details;
use scllm_papers::embed::HashingEmbedder;
use scllm_papers::extract::Vocabulary;
use scllm_papers::graph::build::{benchmark_batch, paper_batch, parse_benchmark_records};
use scllm_papers::graph::cypher::Statement;
use scllm_papers::graph::falkordb::{FalkorStore, ENV_FALKORDB_URL};
use scllm_papers::graph::sqlite::SqliteStore;
use scllm_papers::graph::{CannedQuery, GraphBatch, GraphStore, QueryRows};
use scllm_papers::jats::parse_jats;
use serde_json::{json, Value};

fn falkordb_url() -> Option<String> {
    let url = std::env::var(ENV_FALKORDB_URL)
        .ok()
        .filter(|u| !u.is_empty());
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    match url {
        Some(u) => Some(u),
        None if in_ci => panic!("CI is set but {ENV_FALKORDB_URL} is not: run eval \"$(bash .ci/falkordb.sh)\" before cargo test"),
        None => {
            eprintln!("note: {ENV_FALKORDB_URL} unset, FalkorDB test skipped (eval \"$(bash .ci/falkordb.sh)\" to run it)");
            None
        }
    }
}

fn batches(embedder: Option<&HashingEmbedder>) -> Vec<GraphBatch> {
    let vocab = Vocabulary::builtin();
    let details: Value = serde_json::from_str(&fixture("api/details_doi.json")).unwrap();
    let mut paper = paper_from_details(&details["collection"][2]);
    paper.full_text = Some(parse_jats(&fixture("europepmc/PPR900001.xml"), "fixture").unwrap());
    let records = parse_benchmark_records(&fixture("benchmark_results.json"), "fixture").unwrap();
    vec![
        paper_batch(&paper, &chunk_paper(&paper, 1500), &vocab, embedder),
        benchmark_batch(&records, &vocab),
    ]
}

/// Numbers compared as f64: FalkorDB returns integral doubles where SQLite returns integers.
fn normalized(rows: &QueryRows) -> Vec<Vec<Value>> {
    rows.rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| {
                    v.as_f64()
                        .map(|f| json!((f * 1e9).round() / 1e9))
                        .unwrap_or_else(|| v.clone())
                })
                .collect()
        })
        .collect()
}

#[test]
fn generated_cypher_runs_on_falkordb_and_answers_like_sqlite() {
    let Some(url) = falkordb_url() else { return };
    let graph = format!("scllm_papers_test_{}", std::process::id());
    let base = url.trim_end_matches('/');
    let mut falkor = FalkorStore::connect(&format!("{base}/{graph}"))
        .unwrap_or_else(|e| panic!("{ENV_FALKORDB_URL}={url} is set but unusable: {e}"));
    falkor.delete_graph().unwrap();
    let embedder = HashingEmbedder::new(16);
    falkor.ensure_schema(Some(16)).unwrap();
    falkor.ensure_schema(Some(16)).unwrap(); // existing indexes are fine
    let mut sqlite = SqliteStore::in_memory().unwrap();
    for b in batches(Some(&embedder)) {
        falkor.apply(&b).unwrap();
        sqlite.apply(&b).unwrap();
    }
    let first = falkor.counts().unwrap();
    for b in batches(Some(&embedder)) {
        falkor.apply(&b).unwrap(); // adding the same data again changes nothing
    }
    assert_eq!(falkor.counts().unwrap(), first);
    assert_eq!(
        first,
        sqlite.counts().unwrap(),
        "same graph in both engines"
    );

    for q in [
        CannedQuery::GeneCellType {
            gene: "CD3E".into(),
            cell_type: "T cells".into(),
        },
        CannedQuery::ModelMetrics {
            model: None,
            dataset: Some("pbmc10k".into()),
            metric: None,
        },
        CannedQuery::ModelMetrics {
            model: Some("scgpt".into()),
            dataset: None,
            metric: Some("ari".into()),
        },
        CannedQuery::Compare,
    ] {
        let f = falkor.query(&q).unwrap();
        let s = sqlite.query(&q).unwrap();
        assert!(!s.rows.is_empty(), "{q:?} returns rows");
        assert_eq!(normalized(&f), normalized(&s), "{q:?}");
    }

    // The vector index answers a nearest-neighbour query with the chunk whose text was embedded.
    let chunk_text =
        "CD3E and IL7R mark CD4+ T cells, while MS4A1 marks B cells and LYZ marks CD14+ monocytes.";
    let mut params = serde_json::Map::new();
    params.insert("q".into(), json!(embedder.embed(chunk_text)));
    let knn = falkor
        .run(&Statement {
            text: "CALL db.idx.vector.queryNodes('Chunk', 'embedding', 1, vecf32($q)) YIELD node, score RETURN node.section, score".into(),
            params,
        })
        .unwrap();
    assert_eq!(knn.rows[0][0], json!("Results > Marker genes"), "{knn:?}");
    falkor.delete_graph().unwrap();
}
