//! The Neo4j backend's transport against a fake HTTP endpoint, and a live test gated on NEO4J_URI.

mod common;

use common::{FixtureServer, Reply};
use scllm_papers::graph::neo4j::Neo4jStore;
use scllm_papers::graph::{CannedQuery, GraphBatch, GraphStore, Label};
use serde_json::{json, Value};

#[test]
fn statements_are_sent_as_parameterised_cypher_with_credentials() {
    let server = FixtureServer::start(|target, _, body| {
        assert_eq!(target, "/db/papers/tx/commit");
        let v: Value = serde_json::from_str(body).unwrap();
        let n = v["statements"].as_array().map(|a| a.len()).unwrap_or(0);
        let results: Vec<Value> = (0..n)
            .map(|_| {
                json!({"columns": ["dataset", "model", "metric", "value", "source", "reference"],
                            "data": [{"row": ["pbmc10k", "scgpt", "ari", 0.81, "paper", "p1"]}]})
            })
            .collect();
        Reply::json(json!({"results": results, "errors": []}).to_string())
    });
    let mut store = Neo4jStore::connect(
        &format!("neo4j+{}/papers", server.base),
        Some(("neo4j".into(), "secret".into())),
        None,
    )
    .unwrap();
    let mut batch = GraphBatch::default();
    batch.node(Label::Gene, "CD3E", serde_json::Map::new());
    store.ensure_schema(Some(384)).unwrap();
    store.apply(&batch).unwrap();
    let rows = store
        .query(&CannedQuery::ModelMetrics {
            model: None,
            dataset: None,
            metric: None,
        })
        .unwrap();
    assert_eq!(rows.rows[0][3], json!(0.81));
    let log = server.log();
    assert_eq!(
        log.len(),
        9 + 1 + 1 + 1,
        "one request per DDL statement, one per batch, one per query"
    );
    assert_eq!(
        log[0].authorization.as_deref(),
        Some("Basic bmVvNGo6c2VjcmV0")
    );
    assert!(log[0]
        .body
        .contains("CREATE CONSTRAINT paper_id IF NOT EXISTS"));
    assert!(log[9].body.contains("vector.dimensions`: 384"));
    let write: Value = serde_json::from_str(&log[10].body).unwrap();
    assert_eq!(
        write["statements"][0]["parameters"]["rows"][0]["id"],
        "CD3E"
    );
    assert!(write["statements"][0]["statement"]
        .as_str()
        .unwrap()
        .starts_with("UNWIND $rows AS row MERGE (n:Gene"));
}

#[test]
fn neo4j_errors_are_reported_with_code_and_message() {
    let server = FixtureServer::start(|_, _, _| {
        Reply::json(
            r#"{"results":[],"errors":[{"code":"Neo.ClientError.Statement.SyntaxError","message":"bad"}]}"#,
        )
    });
    let mut store = Neo4jStore::connect(&format!("neo4j+{}", server.base), None, None).unwrap();
    let err = store.counts().unwrap_err().to_string();
    assert!(
        err.contains("Neo.ClientError.Statement.SyntaxError: bad"),
        "{err}"
    );
}

/// Runs only when NEO4J_URI is set: NEO4J_URI=neo4j+http://localhost:7474 (HTTP API), with
/// NEO4J_USERNAME / NEO4J_PASSWORD when auth is on.
#[test]
fn live_neo4j_round_trip_when_neo4j_uri_is_set() {
    let Ok(uri) = std::env::var("NEO4J_URI") else {
        eprintln!("note: NEO4J_URI unset, live Neo4j test skipped");
        return;
    };
    let mut store = Neo4jStore::connect_from_env(&uri).unwrap();
    store.ensure_schema(Some(16)).unwrap();
    let mut batch = GraphBatch::default();
    batch.node(
        Label::Model,
        "scllm_live_test_model",
        serde_json::Map::new(),
    );
    store.apply(&batch).unwrap();
    store.apply(&batch).unwrap();
    let counts = store.counts().unwrap();
    assert!(counts.nodes.get("Model").copied().unwrap_or(0) >= 1);
}
