//! The knowledge graph: nodes and relationships built from papers and from scllm's benchmark
//! results, and the stores that hold them (SQLite by default, Neo4j and FalkorDB via Cypher,
//! and Neo4j's CSV import format).

pub mod build;
pub mod cypher;
pub mod export;
pub mod falkordb;
pub mod neo4j;
pub mod sqlite;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{PapersError, Result};

/// Node labels. Every node has a unique `id` property within its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Label {
    Paper,
    Author,
    Gene,
    CellType,
    Model,
    Dataset,
    Metric,
    Result,
    Chunk,
}

impl Label {
    pub const ALL: [Label; 9] = [
        Label::Paper,
        Label::Author,
        Label::Gene,
        Label::CellType,
        Label::Model,
        Label::Dataset,
        Label::Metric,
        Label::Result,
        Label::Chunk,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Paper => "Paper",
            Label::Author => "Author",
            Label::Gene => "Gene",
            Label::CellType => "CellType",
            Label::Model => "Model",
            Label::Dataset => "Dataset",
            Label::Metric => "Metric",
            Label::Result => "Result",
            Label::Chunk => "Chunk",
        }
    }
    pub fn parse(s: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Relationship types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RelType {
    /// (Author)->(Paper)
    Authored,
    /// (Chunk)->(Paper)
    PartOf,
    /// (Chunk)->(Chunk), reading order
    Next,
    /// (Chunk)->(Gene|CellType|Model|Dataset|Metric)
    Mentions,
    /// (Result)->(Model)
    OfModel,
    /// (Result)->(Dataset)
    OnDataset,
    /// (Result)->(Metric)
    Measures,
    /// (Result)->(Paper)
    ReportedIn,
}

impl RelType {
    pub const ALL: [RelType; 8] = [
        RelType::Authored,
        RelType::PartOf,
        RelType::Next,
        RelType::Mentions,
        RelType::OfModel,
        RelType::OnDataset,
        RelType::Measures,
        RelType::ReportedIn,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RelType::Authored => "AUTHORED",
            RelType::PartOf => "PART_OF",
            RelType::Next => "NEXT",
            RelType::Mentions => "MENTIONS",
            RelType::OfModel => "OF_MODEL",
            RelType::OnDataset => "ON_DATASET",
            RelType::Measures => "MEASURES",
            RelType::ReportedIn => "REPORTED_IN",
        }
    }
    pub fn parse(s: &str) -> Option<RelType> {
        RelType::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub label: Label,
    pub id: String,
    /// Scalar or list-of-scalar properties (no nested maps: Neo4j would refuse them).
    pub props: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rel {
    pub from_label: Label,
    pub from: String,
    pub rel: RelType,
    pub to_label: Label,
    pub to: String,
    pub props: Map<String, Value>,
}

/// Derived nodes of one paper that a re-add replaces: any chunk or paper-reported result of
/// `paper_id` not listed here is deleted, so a changed chunking never leaves stale chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replacement {
    pub paper_id: String,
    pub keep_chunks: Vec<String>,
    pub keep_results: Vec<String>,
}

/// A set of idempotent upserts: applying it twice leaves the store as applying it once.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GraphBatch {
    pub nodes: Vec<Node>,
    pub rels: Vec<Rel>,
    pub replacements: Vec<Replacement>,
}

impl GraphBatch {
    /// Adds or merges a node (later properties win).
    pub fn node(&mut self, label: Label, id: &str, props: Map<String, Value>) {
        if let Some(n) = self
            .nodes
            .iter_mut()
            .rev()
            .find(|n| n.label == label && n.id == id)
        {
            n.props.extend(props);
            return;
        }
        self.nodes.push(Node {
            label,
            id: id.to_string(),
            props,
        });
    }

    pub fn rel(
        &mut self,
        from: (Label, &str),
        rel: RelType,
        to: (Label, &str),
        props: Map<String, Value>,
    ) {
        self.rels.push(Rel {
            from_label: from.0,
            from: from.1.to_string(),
            rel,
            to_label: to.0,
            to: to.1.to_string(),
            props,
        });
    }

    pub fn extend(&mut self, other: GraphBatch) {
        for n in other.nodes {
            self.node(n.label, &n.id, n.props);
        }
        self.rels.extend(other.rels);
        self.replacements.extend(other.replacements);
    }

    /// Merges duplicate nodes and relationships so each appears once.
    pub fn dedup(&mut self) {
        let mut nodes: BTreeMap<(Label, String), Map<String, Value>> = BTreeMap::new();
        let mut order = Vec::new();
        for n in std::mem::take(&mut self.nodes) {
            let key = (n.label, n.id);
            match nodes.get_mut(&key) {
                Some(p) => p.extend(n.props),
                None => {
                    order.push(key.clone());
                    nodes.insert(key, n.props);
                }
            }
        }
        self.nodes = order
            .into_iter()
            .map(|k| {
                let props = nodes.remove(&k).unwrap_or_default();
                Node {
                    label: k.0,
                    id: k.1,
                    props,
                }
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut rels = Vec::new();
        for r in std::mem::take(&mut self.rels) {
            let key = (
                r.from_label,
                r.from.clone(),
                r.rel,
                r.to_label,
                r.to.clone(),
            );
            if seen.insert(key) {
                rels.push(r);
            }
        }
        self.rels = rels;
    }
}

/// Node and relationship counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GraphCounts {
    pub nodes: BTreeMap<String, u64>,
    pub relationships: BTreeMap<String, u64>,
}

/// The questions `scllm papers graph query` answers on every store.
#[derive(Debug, Clone, PartialEq)]
pub enum CannedQuery {
    /// Papers with chunks mentioning both a gene and a cell type.
    GeneCellType { gene: String, cell_type: String },
    /// Models and their reported/measured metrics per dataset, optionally filtered.
    ModelMetrics {
        model: Option<String>,
        dataset: Option<String>,
        metric: Option<String>,
    },
    /// Pairs of paper-reported and scllm-measured results for the same model, dataset and metric.
    Compare,
}

/// A table of results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueryRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl CannedQuery {
    pub fn columns(&self) -> Vec<String> {
        let cols: &[&str] = match self {
            CannedQuery::GeneCellType { .. } => &[
                "paper",
                "doi",
                "title",
                "gene_chunks",
                "cell_type_chunks",
                "shared_chunks",
            ],
            CannedQuery::ModelMetrics { .. } => {
                &["dataset", "model", "metric", "value", "source", "reference"]
            }
            CannedQuery::Compare => &[
                "dataset",
                "model",
                "metric",
                "paper_value",
                "paper",
                "scllm_value",
                "run",
            ],
        };
        cols.iter().map(|c| c.to_string()).collect()
    }
}

/// One interface over SQLite, Neo4j and FalkorDB.
pub trait GraphStore {
    /// A name for messages, e.g. `sqlite:papers.db`.
    fn describe(&self) -> String;
    /// Creates constraints and indexes (idempotent).
    fn ensure_schema(&mut self, embedding_dim: Option<usize>) -> Result<()>;
    fn apply(&mut self, batch: &GraphBatch) -> Result<()>;
    fn counts(&mut self) -> Result<GraphCounts>;
    fn query(&mut self, query: &CannedQuery) -> Result<QueryRows>;
}

/// Opens a store from `sqlite:FILE`, `FILE.db`, `neo4j://…`/`bolt://…`, or `falkordb://host:port/graph`
/// (also `redis://…`).
pub fn open_store(spec: &str) -> Result<Box<dyn GraphStore>> {
    let spec = spec.trim();
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Ok(Box::new(sqlite::SqliteStore::open(path)?));
    }
    if spec.starts_with("neo4j")
        || spec.starts_with("bolt://")
        || spec.starts_with("neo4j+s://")
        || spec.starts_with("bolt+s://")
    {
        return Ok(Box::new(neo4j::Neo4jStore::connect_from_env(spec)?));
    }
    if spec.starts_with("falkordb://") || spec.starts_with("redis://") {
        return Ok(Box::new(falkordb::FalkorStore::connect(spec)?));
    }
    if !spec.contains("://") && !spec.is_empty() {
        return Ok(Box::new(sqlite::SqliteStore::open(spec)?));
    }
    Err(PapersError::InvalidInput(format!(
        "store \"{spec}\" is not understood; use sqlite:FILE, neo4j://HOST:7687, or falkordb://HOST:PORT/GRAPH"
    )))
}

pub(crate) fn props(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
