//! Neo4j backend. It sends the same parameterised Cypher as every Cypher store, plus Neo4j-only
//! DDL (uniqueness constraints, a named vector index), through Neo4j's HTTP transactional API
//! (`POST /db/<db>/tx/commit`). A Bolt driver is not linked in: the available Rust drivers are
//! heavy (tokio) or speak only Bolt 4 (see the crate README); `graph export --format cypher`
//! writes a cypher-shell script for setups where only Bolt is reachable.

use serde_json::{json, Value};

use super::cypher::{self, Dialect, Statement};
use super::{CannedQuery, GraphBatch, GraphCounts, GraphStore, QueryRows};
use crate::error::{PapersError, Result};

pub const ENV_NEO4J_URI: &str = "NEO4J_URI";
pub const ENV_NEO4J_USERNAME: &str = "NEO4J_USERNAME";
pub const ENV_NEO4J_PASSWORD: &str = "NEO4J_PASSWORD";
pub const ENV_NEO4J_DATABASE: &str = "NEO4J_DATABASE";

pub struct Neo4jStore {
    agent: ureq::Agent,
    endpoint: String,
    auth: Option<String>,
    name: String,
}

impl Neo4jStore {
    /// `neo4j+http://host:7474[/db]` or `http(s)://host:7474[/db]`; credentials from
    /// `NEO4J_USERNAME` / `NEO4J_PASSWORD`. Bolt URIs get an error that says what to use instead.
    pub fn connect_from_env(uri: &str) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth = match (env(ENV_NEO4J_USERNAME), env(ENV_NEO4J_PASSWORD)) {
            (Some(u), Some(p)) => Some((u, p)),
            _ => None,
        };
        Self::connect(uri, auth, env(ENV_NEO4J_DATABASE))
    }

    pub fn connect(
        uri: &str,
        auth: Option<(String, String)>,
        database: Option<String>,
    ) -> Result<Self> {
        let base = if let Some(rest) = uri.strip_prefix("neo4j+http://") {
            format!("http://{rest}")
        } else if let Some(rest) = uri.strip_prefix("neo4j+https://") {
            format!("https://{rest}")
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            uri.to_string()
        } else {
            let host = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
            let host = host.split([':', '/']).next().unwrap_or("localhost");
            return Err(PapersError::InvalidInput(format!(
                "{uri}: Bolt is not built into scllm; use Neo4j's HTTP API with --store neo4j+http://{host}:7474 \
                 (same Cypher), or `scllm papers graph export --format cypher` and run it with cypher-shell"
            )));
        };
        let (root, db_in_path) = match base.split_once("://").and_then(|(s, r)| {
            r.split_once('/')
                .map(|(h, d)| (format!("{s}://{h}"), d.to_string()))
        }) {
            Some((root, db)) if !db.is_empty() => (root, Some(db)),
            _ => (base.trim_end_matches('/').to_string(), None),
        };
        let db = db_in_path.or(database).unwrap_or_else(|| "neo4j".into());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .into();
        let auth = auth.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        Ok(Neo4jStore {
            agent,
            endpoint: format!("{root}/db/{db}/tx/commit"),
            auth,
            name: format!("neo4j {root} (database {db})"),
        })
    }

    /// Sends statements in one transaction; returns the result of the last one.
    pub fn run_all(&mut self, statements: &[Statement]) -> Result<QueryRows> {
        if statements.is_empty() {
            return Ok(QueryRows::default());
        }
        let body = json!({
            "statements": statements.iter().map(|s| json!({"statement": s.text, "parameters": s.params})).collect::<Vec<_>>()
        });
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(body.to_string()).map_err(|e| {
            PapersError::store(
                &self.name,
                format!("{e}; is Neo4j's HTTP port (7474) reachable?"),
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| PapersError::store(&self.name, e))?;
        if status == 401 {
            return Err(PapersError::store(
                &self.name,
                "authentication failed; set NEO4J_USERNAME and NEO4J_PASSWORD",
            ));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            PapersError::store(&self.name, format!("HTTP {status}, not JSON ({e})"))
        })?;
        if let Some(err) = v
            .get("errors")
            .and_then(|e| e.as_array())
            .and_then(|e| e.first())
        {
            return Err(PapersError::store(
                &self.name,
                format!(
                    "{}: {}",
                    err["code"].as_str().unwrap_or("error"),
                    err["message"].as_str().unwrap_or("")
                ),
            ));
        }
        let last = v
            .pointer("/results")
            .and_then(|r| r.as_array())
            .and_then(|r| r.last());
        let Some(last) = last else {
            return Ok(QueryRows::default());
        };
        Ok(QueryRows {
            columns: last["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            rows: last["data"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|r| r["row"].as_array().cloned())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl GraphStore for Neo4jStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn ensure_schema(&mut self, embedding_dim: Option<usize>) -> Result<()> {
        // Schema changes cannot share a transaction with writes in Neo4j.
        for s in cypher::schema_statements(Dialect::Neo4j, embedding_dim) {
            self.run_all(std::slice::from_ref(&s))?;
        }
        Ok(())
    }

    fn apply(&mut self, batch: &GraphBatch) -> Result<()> {
        self.run_all(&cypher::batch_statements(batch, Dialect::Neo4j))
            .map(|_| ())
    }

    fn counts(&mut self) -> Result<GraphCounts> {
        let mut c = GraphCounts::default();
        let [nodes, rels] = cypher::count_statements();
        for row in self.run_all(&[nodes])?.rows {
            if let [Value::String(l), Value::Number(n)] = &row[..] {
                c.nodes.insert(l.clone(), n.as_u64().unwrap_or(0));
            }
        }
        for row in self.run_all(&[rels])?.rows {
            if let [Value::String(t), Value::Number(n)] = &row[..] {
                c.relationships.insert(t.clone(), n.as_u64().unwrap_or(0));
            }
        }
        Ok(c)
    }

    fn query(&mut self, query: &CannedQuery) -> Result<QueryRows> {
        let mut rows = self.run_all(&[cypher::query_statement(query)])?;
        rows.columns = query.columns();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_uris_explain_the_alternative_and_http_uris_map_to_the_endpoint() {
        let e = Neo4jStore::connect("neo4j://db.example:7687", None, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("neo4j+http://db.example:7474"));
        let s = Neo4jStore::connect("neo4j+http://127.0.0.1:7474/papers", None, None).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:7474/db/papers/tx/commit");
        assert_eq!(base64(b"neo4j:pw"), "bmVvNGo6cHc=");
    }
}
