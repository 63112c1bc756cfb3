//! Parameterised Cypher for a [`GraphBatch`]: `UNWIND $rows AS row MERGE … SET …` batches, which
//! are idempotent and run unchanged on Neo4j 5 and FalkorDB. Only DDL differs between dialects.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{CannedQuery, GraphBatch, Label};

/// Rows per `UNWIND` statement.
pub const BATCH_ROWS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Neo4j,
    FalkorDb,
}

/// A statement and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub text: String,
    pub params: Map<String, Value>,
}

impl Statement {
    fn new(text: impl Into<String>, params: Map<String, Value>) -> Self {
        Statement {
            text: text.into(),
            params,
        }
    }

    /// FalkorDB's parameter form: `CYPHER k=v … <query>`.
    pub fn with_prelude(&self) -> String {
        if self.params.is_empty() {
            return self.text.clone();
        }
        let mut s = String::from("CYPHER");
        for (k, v) in &self.params {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(&literal(v));
        }
        s.push(' ');
        s.push_str(&self.text);
        s
    }
}

/// Constraints and indexes. Neo4j 5: one uniqueness constraint per label (Community edition has
/// no composite keys) and a named vector index; FalkorDB: exact-match indexes and its own vector
/// index syntax (it has no `CREATE CONSTRAINT`).
pub fn schema_statements(dialect: Dialect, embedding_dim: Option<usize>) -> Vec<Statement> {
    let mut out = Vec::new();
    for label in Label::ALL {
        let l = label.as_str();
        let text = match dialect {
            Dialect::Neo4j => format!(
                "CREATE CONSTRAINT {}_id IF NOT EXISTS FOR (n:{l}) REQUIRE n.id IS UNIQUE",
                l.to_lowercase()
            ),
            Dialect::FalkorDb => format!("CREATE INDEX FOR (n:{l}) ON (n.id)"),
        };
        out.push(Statement::new(text, Map::new()));
    }
    if let Some(dim) = embedding_dim {
        let text = match dialect {
            Dialect::Neo4j => format!(
                "CREATE VECTOR INDEX chunk_embedding IF NOT EXISTS FOR (c:Chunk) ON c.embedding \
                 OPTIONS {{indexConfig: {{`vector.dimensions`: {dim}, `vector.similarity_function`: 'cosine'}}}}"
            ),
            Dialect::FalkorDb => format!(
                "CREATE VECTOR INDEX FOR (c:Chunk) ON (c.embedding) OPTIONS {{dimension: {dim}, similarityFunction: 'cosine'}}"
            ),
        };
        out.push(Statement::new(text, Map::new()));
    }
    out
}

/// The data statements for a batch: deletions of replaced chunks/results, node merges grouped by
/// label, relationship merges grouped by (label, type, label).
pub fn batch_statements(batch: &GraphBatch, dialect: Dialect) -> Vec<Statement> {
    let mut out = Vec::new();
    for r in &batch.replacements {
        out.push(Statement::new(
            "MATCH (c:Chunk)-[:PART_OF]->(:Paper {id: $paper}) WHERE NOT c.id IN $keep DETACH DELETE c",
            obj(&[("paper", json!(r.paper_id)), ("keep", json!(r.keep_chunks))]),
        ));
        out.push(Statement::new(
            "MATCH (r:Result)-[:REPORTED_IN]->(:Paper {id: $paper}) WHERE NOT r.id IN $keep DETACH DELETE r",
            obj(&[("paper", json!(r.paper_id)), ("keep", json!(r.keep_results))]),
        ));
    }
    let mut by_label: BTreeMap<(Label, bool), Vec<Value>> = BTreeMap::new();
    for n in &batch.nodes {
        let mut props = n.props.clone();
        let embedding = props.remove("embedding");
        let mut row = obj(&[("id", json!(n.id)), ("props", Value::Object(props))]);
        let has_vec = embedding.is_some();
        if let Some(e) = embedding {
            row.insert("embedding".into(), e);
        }
        by_label
            .entry((n.label, has_vec))
            .or_default()
            .push(Value::Object(row));
    }
    for ((label, has_vec), rows) in by_label {
        let l = label.as_str();
        let text = match (has_vec, dialect) {
            (false, _) => format!("UNWIND $rows AS row MERGE (n:{l} {{id: row.id}}) SET n += row.props"),
            (true, Dialect::Neo4j) => format!(
                "UNWIND $rows AS row MERGE (n:{l} {{id: row.id}}) SET n += row.props SET n.embedding = row.embedding"
            ),
            // FalkorDB 4.16 drops nodes from its HNSW index when an indexed node is updated, so
            // embedded chunks (immutable per DOI, version and position) are written once.
            (true, Dialect::FalkorDb) => format!(
                "UNWIND $rows AS row MERGE (n:{l} {{id: row.id}}) ON CREATE SET n += row.props, n.embedding = vecf32(row.embedding)"
            ),
        };
        for part in rows.chunks(BATCH_ROWS) {
            out.push(Statement::new(
                text.clone(),
                obj(&[("rows", Value::Array(part.to_vec()))]),
            ));
        }
    }
    let mut by_type: BTreeMap<(Label, &'static str, Label), Vec<Value>> = BTreeMap::new();
    for r in &batch.rels {
        by_type
            .entry((r.from_label, r.rel.as_str(), r.to_label))
            .or_default()
            .push(Value::Object(obj(&[
                ("from", json!(r.from)),
                ("to", json!(r.to)),
                ("props", Value::Object(r.props.clone())),
            ])));
    }
    for ((from, rel, to), rows) in by_type {
        let text = format!(
            "UNWIND $rows AS row MATCH (a:{} {{id: row.from}}) MATCH (b:{} {{id: row.to}}) MERGE (a)-[r:{rel}]->(b) SET r += row.props",
            from.as_str(),
            to.as_str()
        );
        for part in rows.chunks(BATCH_ROWS) {
            out.push(Statement::new(
                text.clone(),
                obj(&[("rows", Value::Array(part.to_vec()))]),
            ));
        }
    }
    out
}

/// The canned questions in Cypher; columns match [`CannedQuery::columns`].
pub fn query_statement(query: &CannedQuery) -> Statement {
    match query {
        CannedQuery::GeneCellType { gene, cell_type } => Statement::new(
            "MATCH (:Gene {id: $gene})<-[:MENTIONS]-(c1:Chunk)-[:PART_OF]->(p:Paper) \
             WITH p, collect(DISTINCT c1.id) AS gc \
             MATCH (:CellType {id: $cell_type})<-[:MENTIONS]-(c2:Chunk)-[:PART_OF]->(p) \
             WITH p, gc, collect(DISTINCT c2.id) AS tc \
             RETURN p.id AS paper, p.doi AS doi, p.title AS title, size(gc) AS gene_chunks, \
             size(tc) AS cell_type_chunks, size([x IN gc WHERE x IN tc]) AS shared_chunks \
             ORDER BY shared_chunks DESC, paper",
            obj(&[("gene", json!(gene)), ("cell_type", json!(cell_type))]),
        ),
        CannedQuery::ModelMetrics { model, dataset, metric } => Statement::new(
            "MATCH (r:Result)-[:OF_MODEL]->(m:Model), (r)-[:ON_DATASET]->(d:Dataset), (r)-[:MEASURES]->(x:Metric) \
             WHERE ($model IS NULL OR m.id = $model) AND ($dataset IS NULL OR d.id = $dataset) \
             AND ($metric IS NULL OR x.id = $metric) \
             RETURN d.id AS dataset, m.id AS model, x.id AS metric, r.value AS value, r.source AS source, \
             r.reference AS reference ORDER BY dataset, model, metric, source, reference",
            obj(&[("model", json!(model)), ("dataset", json!(dataset)), ("metric", json!(metric))]),
        ),
        CannedQuery::Compare => Statement::new(
            "MATCH (p:Result {source: 'paper'})-[:OF_MODEL]->(m:Model)<-[:OF_MODEL]-(s:Result {source: 'scllm'}), \
             (p)-[:ON_DATASET]->(d:Dataset)<-[:ON_DATASET]-(s), (p)-[:MEASURES]->(x:Metric)<-[:MEASURES]-(s) \
             RETURN d.id AS dataset, m.id AS model, x.id AS metric, p.value AS paper_value, p.reference AS paper, \
             s.value AS scllm_value, s.reference AS run ORDER BY dataset, model, metric, paper, run",
            Map::new(),
        ),
    }
}

/// Node and relationship counts.
pub fn count_statements() -> [Statement; 2] {
    [
        Statement::new(
            "MATCH (n) RETURN labels(n)[0] AS label, count(n) AS n",
            Map::new(),
        ),
        Statement::new(
            "MATCH ()-[r]->() RETURN type(r) AS type, count(r) AS n",
            Map::new(),
        ),
    ]
}

fn obj(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A JSON value as a Cypher literal (for FalkorDB's `CYPHER` prelude and Cypher scripts).
pub fn literal(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => format!("{f:?}"),
                    _ => "null".into(),
                }
            }
        }
        Value::String(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push(' '),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(a) => format!("[{}]", a.iter().map(literal).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", key(k), literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        k.to_string()
    } else {
        format!("`{}`", k.replace('`', "``"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_newlines_and_odd_keys() {
        let v = json!({"a b": "say \"hi\"\n", "n": 1, "x": 0.5, "l": [1.0, null]});
        assert_eq!(
            literal(&v),
            r#"{`a b`: "say \"hi\"\n", l: [1.0, null], n: 1, x: 0.5}"#
        );
    }
}
