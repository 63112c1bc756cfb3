//! FalkorDB over the Redis protocol (RESP2): `GRAPH.QUERY <graph> "CYPHER k=v … <query>" --compact`.
//! A minimal client of its own keeps a Redis crate out of the build.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::cypher::{self, Dialect, Statement};
use super::{CannedQuery, GraphBatch, GraphCounts, GraphStore, QueryRows};
use crate::error::{PapersError, Result};

pub const ENV_FALKORDB_URL: &str = "SCLLM_FALKORDB_URL";

#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// One connection speaking RESP2.
pub struct RespConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RespConnection {
    pub fn connect(addr: &str, timeout: Duration) -> std::io::Result<Self> {
        use std::net::ToSocketAddrs;
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(RespConnection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn command(&mut self, args: &[&[u8]]) -> std::io::Result<Resp> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&buf)?;
        self.read_reply()
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_reply(&mut self) -> std::io::Result<Resp> {
        let line = self.read_line()?;
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad RESP line {line:?}"),
            )
        };
        let first = line.chars().next().ok_or_else(bad)?;
        let rest = &line[first.len_utf8()..];
        Ok(match first {
            '+' => Resp::Simple(rest.to_string()),
            '-' => Resp::Error(rest.to_string()),
            ':' => Resp::Int(rest.parse().map_err(|_| bad())?),
            '$' => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut data = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut data)?;
                    data.truncate(n as usize);
                    Resp::Bulk(Some(data))
                }
            }
            '*' => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Resp::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}

/// A FalkorDB graph as a [`GraphStore`].
pub struct FalkorStore {
    conn: RespConnection,
    graph: String,
    name: String,
}

impl FalkorStore {
    /// `falkordb://host:port/graph` or `redis://host:port/graph`; the graph defaults to `scllm_papers`.
    pub fn connect(url: &str) -> Result<Self> {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let (addr, graph) = match rest.split_once('/') {
            Some((a, g)) if !g.is_empty() => (a, g),
            Some((a, _)) => (a, "scllm_papers"),
            None => (rest, "scllm_papers"),
        };
        Self::connect_to(addr, graph)
    }

    pub fn connect_to(addr: &str, graph: &str) -> Result<Self> {
        let name = format!("falkordb://{addr}/{graph}");
        let mut conn = RespConnection::connect(addr, Duration::from_secs(5)).map_err(|e| {
            PapersError::store(
                &name,
                format!(
                    "cannot connect ({e}); start FalkorDB (.ci/falkordb.sh) or check the address"
                ),
            )
        })?;
        match conn.command(&[b"PING"]) {
            Ok(Resp::Simple(s)) if s == "PONG" => {}
            Ok(other) => {
                return Err(PapersError::store(
                    &name,
                    format!("PING answered {other:?}; is this a Redis server?"),
                ))
            }
            Err(e) => return Err(PapersError::store(&name, format!("PING failed: {e}"))),
        }
        Ok(FalkorStore {
            conn,
            graph: graph.to_string(),
            name,
        })
    }

    /// Runs one statement; returns the compact result set (empty for writes).
    pub fn run(&mut self, statement: &Statement) -> Result<QueryRows> {
        let query = statement.with_prelude();
        let reply = self
            .conn
            .command(&[
                b"GRAPH.QUERY",
                self.graph.as_bytes(),
                query.as_bytes(),
                b"--compact",
            ])
            .map_err(|e| PapersError::store(&self.name, format!("GRAPH.QUERY failed: {e}")))?;
        let items = match reply {
            Resp::Error(e) => {
                return Err(PapersError::store(
                    &self.name,
                    format!("{e} (in: {})", short(&statement.text)),
                ))
            }
            Resp::Array(Some(items)) => items,
            other => {
                return Err(PapersError::store(
                    &self.name,
                    format!("unexpected reply {other:?}"),
                ))
            }
        };
        if items.len() < 3 {
            return Ok(QueryRows::default()); // writes answer with statistics only
        }
        let columns = match &items[0] {
            Resp::Array(Some(h)) => h
                .iter()
                .map(|c| match c {
                    Resp::Array(Some(pair)) => pair.get(1).map(resp_string).unwrap_or_default(),
                    other => resp_string(other),
                })
                .collect(),
            _ => Vec::new(),
        };
        let rows = match &items[1] {
            Resp::Array(Some(rows)) => rows
                .iter()
                .map(|row| match row {
                    Resp::Array(Some(cells)) => cells.iter().map(compact_value).collect(),
                    _ => Vec::new(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(QueryRows { columns, rows })
    }

    /// Drops the whole graph (tests use a fresh graph name per run).
    pub fn delete_graph(&mut self) -> Result<()> {
        match self.conn.command(&[b"GRAPH.DELETE", self.graph.as_bytes()]) {
            Ok(Resp::Error(e)) if !e.contains("empty key") && !e.contains("Invalid graph") => {
                Err(PapersError::store(&self.name, e))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(PapersError::store(&self.name, e)),
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

fn resp_string(r: &Resp) -> String {
    match r {
        Resp::Simple(s) | Resp::Error(s) => s.clone(),
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Resp::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// Compact values are `[type, value]`: 1 null, 2 string, 3 integer, 4 boolean, 5 double, 6 array.
fn compact_value(r: &Resp) -> Value {
    let Resp::Array(Some(pair)) = r else {
        return Value::Null;
    };
    let (Some(Resp::Int(kind)), Some(v)) = (pair.first(), pair.get(1)) else {
        return Value::Null;
    };
    match kind {
        2 => Value::String(resp_string(v)),
        3 => match v {
            Resp::Int(i) => Value::from(*i),
            other => resp_string(other)
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::Null),
        },
        4 => Value::Bool(resp_string(v) == "true"),
        5 => resp_string(v)
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or(Value::Null),
        6 => match v {
            Resp::Array(Some(items)) => Value::Array(items.iter().map(compact_value).collect()),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

impl GraphStore for FalkorStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn ensure_schema(&mut self, embedding_dim: Option<usize>) -> Result<()> {
        for s in cypher::schema_statements(Dialect::FalkorDb, embedding_dim) {
            if let Err(e) = self.run(&s) {
                // FalkorDB has no IF NOT EXISTS: an existing index is fine.
                let msg = e.to_string();
                if !msg.contains("already indexed") && !msg.contains("already exists") {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: &GraphBatch) -> Result<()> {
        for s in cypher::batch_statements(batch, Dialect::FalkorDb) {
            self.run(&s)?;
        }
        Ok(())
    }

    fn counts(&mut self) -> Result<GraphCounts> {
        let [nodes, rels] = cypher::count_statements();
        let mut c = GraphCounts::default();
        for row in self.run(&nodes)?.rows {
            if let [Value::String(l), Value::Number(n)] = &row[..] {
                c.nodes.insert(l.clone(), n.as_u64().unwrap_or(0));
            }
        }
        for row in self.run(&rels)?.rows {
            if let [Value::String(t), Value::Number(n)] = &row[..] {
                c.relationships.insert(t.clone(), n.as_u64().unwrap_or(0));
            }
        }
        Ok(c)
    }

    fn query(&mut self, query: &CannedQuery) -> Result<QueryRows> {
        let mut rows = self.run(&cypher::query_statement(query))?;
        rows.columns = query.columns();
        Ok(rows)
    }
}
