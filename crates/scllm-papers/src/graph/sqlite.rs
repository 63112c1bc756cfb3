//! The embedded default store: two tables in one SQLite file, JSON properties, upserts by key.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::{CannedQuery, GraphBatch, GraphCounts, GraphStore, Label, QueryRows, RelType};
use crate::error::{PapersError, Result};

pub struct SqliteStore {
    conn: Connection,
    name: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (
  label TEXT NOT NULL, id TEXT NOT NULL, props TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (label, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rels (
  src_label TEXT NOT NULL, src_id TEXT NOT NULL, type TEXT NOT NULL,
  dst_label TEXT NOT NULL, dst_id TEXT NOT NULL, props TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (src_label, src_id, type, dst_label, dst_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rels_by_dst ON rels (dst_label, dst_id, type);
CREATE INDEX IF NOT EXISTS rels_by_type ON rels (type, dst_label, dst_id);
";

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| PapersError::File {
                path: parent.to_path_buf(),
                message: format!("cannot create the folder for the graph: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| PapersError::File {
            path: path.to_path_buf(),
            message: format!("cannot open as SQLite graph: {e}"),
        })?;
        Self::init(conn, format!("sqlite:{}", path.display()))
    }

    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, "sqlite::memory:".into())
    }

    fn init(conn: Connection, name: String) -> Result<Self> {
        conn.execute_batch(SCHEMA).map_err(|e| {
            PapersError::store(&name, format!("{e}; is this file a scllm papers graph?"))
        })?;
        Ok(SqliteStore { conn, name })
    }

    /// Every node and relationship, for export.
    pub fn dump(&self) -> Result<GraphBatch> {
        let mut batch = GraphBatch::default();
        let mut stmt = self
            .conn
            .prepare("SELECT label, id, props FROM nodes ORDER BY label, id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (label, id, props) = row?;
            let Some(label) = Label::parse(&label) else {
                continue;
            };
            batch.nodes.push(super::Node {
                label,
                id,
                props: parse_props(&props),
            });
        }
        let mut stmt = self.conn.prepare(
            "SELECT src_label, src_id, type, dst_label, dst_id, props FROM rels ORDER BY type, src_id, dst_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        for row in rows {
            let (sl, s, t, dl, d, p) = row?;
            let (Some(from_label), Some(rel), Some(to_label)) =
                (Label::parse(&sl), RelType::parse(&t), Label::parse(&dl))
            else {
                continue;
            };
            batch.rels.push(super::Rel {
                from_label,
                from: s,
                rel,
                to_label,
                to: d,
                props: parse_props(&p),
            });
        }
        Ok(batch)
    }

    /// Chunk nodes with their properties, in paper and reading order.
    pub fn chunks(&self) -> Result<Vec<(String, Map<String, Value>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, props FROM nodes WHERE label = 'Chunk'
             ORDER BY json_extract(props, '$.paper'), json_extract(props, '$.ordinal')",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| r.map(|(id, p)| (id, parse_props(&p))).map_err(Into::into))
            .collect()
    }

    pub fn node_props(&self, label: Label, id: &str) -> Result<Option<Map<String, Value>>> {
        let p: Option<String> = self
            .conn
            .query_row(
                "SELECT props FROM nodes WHERE label = ?1 AND id = ?2",
                params![label.as_str(), id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(p.map(|p| parse_props(&p)))
    }

    fn delete_node(tx: &rusqlite::Transaction, label: &str, id: &str) -> rusqlite::Result<()> {
        tx.execute(
            "DELETE FROM nodes WHERE label = ?1 AND id = ?2",
            params![label, id],
        )?;
        tx.execute(
            "DELETE FROM rels WHERE src_label = ?1 AND src_id = ?2",
            params![label, id],
        )?;
        tx.execute(
            "DELETE FROM rels WHERE dst_label = ?1 AND dst_id = ?2",
            params![label, id],
        )?;
        Ok(())
    }

    fn linked(
        tx: &rusqlite::Transaction,
        src_label: &str,
        rel: &str,
        paper: &str,
    ) -> rusqlite::Result<Vec<String>> {
        let mut stmt = tx.prepare(
            "SELECT src_id FROM rels WHERE src_label = ?1 AND type = ?2 AND dst_label = 'Paper' AND dst_id = ?3",
        )?;
        let ids = stmt.query_map(params![src_label, rel, paper], |r| r.get(0))?;
        ids.collect()
    }
}

fn parse_props(s: &str) -> Map<String, Value> {
    serde_json::from_str(s).unwrap_or_default()
}

impl GraphStore for SqliteStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn ensure_schema(&mut self, _embedding_dim: Option<usize>) -> Result<()> {
        Ok(())
    }

    fn apply(&mut self, batch: &GraphBatch) -> Result<()> {
        let tx = self.conn.transaction()?;
        for r in &batch.replacements {
            let keep_chunks: HashSet<&str> = r.keep_chunks.iter().map(String::as_str).collect();
            for id in Self::linked(&tx, "Chunk", "PART_OF", &r.paper_id)? {
                if !keep_chunks.contains(id.as_str()) {
                    Self::delete_node(&tx, "Chunk", &id)?;
                }
            }
            let keep_results: HashSet<&str> = r.keep_results.iter().map(String::as_str).collect();
            for id in Self::linked(&tx, "Result", "REPORTED_IN", &r.paper_id)? {
                if !keep_results.contains(id.as_str()) {
                    Self::delete_node(&tx, "Result", &id)?;
                }
            }
        }
        {
            // json_patch merges like Cypher's `SET n += props`.
            let mut node = tx.prepare_cached(
                "INSERT INTO nodes (label, id, props) VALUES (?1, ?2, ?3)
                 ON CONFLICT (label, id) DO UPDATE SET props = json_patch(nodes.props, excluded.props)",
            )?;
            for n in &batch.nodes {
                node.execute(params![
                    n.label.as_str(),
                    n.id,
                    Value::Object(n.props.clone()).to_string()
                ])?;
            }
            let mut rel = tx.prepare_cached(
                "INSERT INTO rels (src_label, src_id, type, dst_label, dst_id, props) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (src_label, src_id, type, dst_label, dst_id) DO UPDATE SET props = json_patch(rels.props, excluded.props)",
            )?;
            for r in &batch.rels {
                rel.execute(params![
                    r.from_label.as_str(),
                    r.from,
                    r.rel.as_str(),
                    r.to_label.as_str(),
                    r.to,
                    Value::Object(r.props.clone()).to_string()
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn counts(&mut self) -> Result<GraphCounts> {
        let mut c = GraphCounts::default();
        let mut stmt = self
            .conn
            .prepare("SELECT label, COUNT(*) FROM nodes GROUP BY label")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (k, v) = row?;
            c.nodes.insert(k, v as u64);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT type, COUNT(*) FROM rels GROUP BY type")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (k, v) = row?;
            c.relationships.insert(k, v as u64);
        }
        Ok(c)
    }

    fn query(&mut self, query: &CannedQuery) -> Result<QueryRows> {
        let (sql, args): (&str, Vec<Option<String>>) = match query {
            CannedQuery::GeneCellType { gene, cell_type } => (
                "WITH g AS (
                   SELECT DISTINCT pr.dst_id AS paper, m.src_id AS chunk FROM rels m
                   JOIN rels pr ON pr.src_label = 'Chunk' AND pr.src_id = m.src_id AND pr.type = 'PART_OF'
                   WHERE m.src_label = 'Chunk' AND m.type = 'MENTIONS' AND m.dst_label = 'Gene' AND m.dst_id = ?1),
                 c AS (
                   SELECT DISTINCT pr.dst_id AS paper, m.src_id AS chunk FROM rels m
                   JOIN rels pr ON pr.src_label = 'Chunk' AND pr.src_id = m.src_id AND pr.type = 'PART_OF'
                   WHERE m.src_label = 'Chunk' AND m.type = 'MENTIONS' AND m.dst_label = 'CellType' AND m.dst_id = ?2)
                 SELECT p.id, json_extract(p.props, '$.doi'), json_extract(p.props, '$.title'),
                   (SELECT COUNT(*) FROM g WHERE g.paper = p.id),
                   (SELECT COUNT(*) FROM c WHERE c.paper = p.id),
                   (SELECT COUNT(*) FROM g JOIN c ON g.chunk = c.chunk WHERE g.paper = p.id) AS shared
                 FROM nodes p
                 WHERE p.label = 'Paper' AND EXISTS (SELECT 1 FROM g WHERE g.paper = p.id)
                   AND EXISTS (SELECT 1 FROM c WHERE c.paper = p.id)
                 ORDER BY shared DESC, p.id",
                vec![Some(gene.clone()), Some(cell_type.clone())],
            ),
            CannedQuery::ModelMetrics { model, dataset, metric } => (
                "SELECT d.dst_id, m.dst_id, x.dst_id, json_extract(r.props, '$.value'),
                        json_extract(r.props, '$.source'), json_extract(r.props, '$.reference')
                 FROM nodes r
                 JOIN rels m ON m.src_label = 'Result' AND m.src_id = r.id AND m.type = 'OF_MODEL'
                 JOIN rels d ON d.src_label = 'Result' AND d.src_id = r.id AND d.type = 'ON_DATASET'
                 JOIN rels x ON x.src_label = 'Result' AND x.src_id = r.id AND x.type = 'MEASURES'
                 WHERE r.label = 'Result' AND (?1 IS NULL OR m.dst_id = ?1)
                   AND (?2 IS NULL OR d.dst_id = ?2) AND (?3 IS NULL OR x.dst_id = ?3)
                 ORDER BY 1, 2, 3, 5, 6",
                vec![model.clone(), dataset.clone(), metric.clone()],
            ),
            CannedQuery::Compare => (
                "WITH res AS (
                   SELECT r.id, json_extract(r.props, '$.source') AS source, json_extract(r.props, '$.value') AS value,
                          json_extract(r.props, '$.reference') AS reference,
                          m.dst_id AS model, d.dst_id AS dataset, x.dst_id AS metric
                   FROM nodes r
                   JOIN rels m ON m.src_label = 'Result' AND m.src_id = r.id AND m.type = 'OF_MODEL'
                   JOIN rels d ON d.src_label = 'Result' AND d.src_id = r.id AND d.type = 'ON_DATASET'
                   JOIN rels x ON x.src_label = 'Result' AND x.src_id = r.id AND x.type = 'MEASURES'
                   WHERE r.label = 'Result')
                 SELECT p.dataset, p.model, p.metric, p.value, p.reference, s.value, s.reference
                 FROM res p JOIN res s ON s.model = p.model AND s.dataset = p.dataset AND s.metric = p.metric
                 WHERE p.source = 'paper' AND s.source = 'scllm'
                 ORDER BY 1, 2, 3, 5, 7",
                vec![],
            ),
        };
        let mut stmt = self.conn.prepare(sql)?;
        let n = stmt.column_count();
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Integer(v) => Value::from(v),
                        rusqlite::types::ValueRef::Real(v) => Value::from(v),
                        rusqlite::types::ValueRef::Text(t) => {
                            Value::from(String::from_utf8_lossy(t).into_owned())
                        }
                        rusqlite::types::ValueRef::Blob(_) => Value::Null,
                    })
                })
                .collect::<rusqlite::Result<Vec<Value>>>()
        })?;
        Ok(QueryRows {
            columns: query.columns(),
            rows: rows.collect::<rusqlite::Result<_>>()?,
        })
    }
}
