//! Turning papers and benchmark results into graph batches.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{props, GraphBatch, Label, RelType, Replacement};
use crate::chunk::{slug, Chunk, ChunkKind};
use crate::embed::HashingEmbedder;
use crate::error::{PapersError, Result};
use crate::extract::{self, Vocabulary};
use crate::paper::{Paper, Table};

/// A metric value a paper states in a table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReportedResult {
    pub id: String,
    pub model: String,
    pub dataset: String,
    pub metric: String,
    pub value: f64,
    pub value_text: String,
    pub table: String,
}

/// Paper, authors, chunks (with `NEXT` order), mentions and table results.
pub fn paper_batch(
    paper: &Paper,
    chunks: &[Chunk],
    vocab: &Vocabulary,
    embedder: Option<&HashingEmbedder>,
) -> GraphBatch {
    let mut b = GraphBatch::default();
    let key = paper.key();
    b.node(
        Label::Paper,
        &key,
        props(&[
            ("doi", json!(paper.doi)),
            ("version", json!(paper.version)),
            ("server", json!(paper.server)),
            ("title", json!(paper.title)),
            ("date", json!(paper.date)),
            ("category", json!(paper.category)),
            ("type", json!(paper.article_type)),
            ("license", json!(paper.license)),
            ("abstract", json!(paper.abstract_text)),
            ("url", json!(paper.url())),
            ("published_doi", json!(paper.published_doi)),
            ("published_journal", json!(paper.published_journal)),
            (
                "full_text",
                json!(paper.full_text.as_ref().map(|f| f.source.clone())),
            ),
        ]),
    );
    for (i, name) in paper.authors.iter().enumerate() {
        let id = author_key(name);
        if id.is_empty() {
            continue;
        }
        b.node(Label::Author, &id, props(&[("name", json!(name))]));
        b.rel(
            (Label::Author, &id),
            RelType::Authored,
            (Label::Paper, &key),
            props(&[("position", json!(i + 1))]),
        );
    }
    let mut result_ids = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut p = props(&[
            ("text", json!(chunk.text)),
            ("section", json!(chunk.section)),
            ("kind", json!(chunk.kind.as_str())),
            ("ordinal", json!(chunk.ordinal)),
            ("paper", json!(key)),
        ]);
        if let Some(e) = embedder {
            p.insert("embedding".into(), json!(e.embed(&chunk.text)));
            p.insert("embed_model".into(), json!(e.model_name()));
        }
        b.node(Label::Chunk, &chunk.id, p);
        b.rel(
            (Label::Chunk, &chunk.id),
            RelType::PartOf,
            (Label::Paper, &key),
            Map::new(),
        );
        if i > 0 {
            b.rel(
                (Label::Chunk, &chunks[i - 1].id),
                RelType::Next,
                (Label::Chunk, &chunk.id),
                Map::new(),
            );
        }
        let m = vocab.extract(&chunk.text);
        let groups = [
            (Label::Gene, &m.genes),
            (Label::CellType, &m.cell_types),
            (Label::Model, &m.models),
            (Label::Dataset, &m.datasets),
            (Label::Metric, &m.metrics),
        ];
        for (label, found) in groups {
            for (id, count) in found {
                b.node(label, id, entity_props(label, id));
                b.rel(
                    (Label::Chunk, &chunk.id),
                    RelType::Mentions,
                    (label, id),
                    props(&[("count", json!(count)), ("extractor", json!("dictionary"))]),
                );
            }
        }
        if chunk.kind == ChunkKind::Table {
            let table = chunk
                .table_index
                .and_then(|i| paper.full_text.as_ref()?.tables.get(i));
            if let Some(table) = table {
                for r in table_results(&key, table, vocab) {
                    add_result(
                        &mut b,
                        &r.id,
                        (&r.model, &r.dataset, &r.metric),
                        props(&[
                            ("value", json!(r.value)),
                            ("value_text", json!(r.value_text)),
                            ("source", json!("paper")),
                            ("reference", json!(key)),
                            ("table", json!(r.table)),
                            ("evidence_chunk", json!(chunk.id)),
                        ]),
                    );
                    b.rel(
                        (Label::Result, &r.id),
                        RelType::ReportedIn,
                        (Label::Paper, &key),
                        Map::new(),
                    );
                    result_ids.push(r.id);
                }
            }
        }
    }
    b.replacements.push(Replacement {
        paper_id: key,
        keep_chunks: chunks.iter().map(|c| c.id.clone()).collect(),
        keep_results: result_ids,
    });
    b.dedup();
    b
}

fn add_result(
    b: &mut GraphBatch,
    id: &str,
    (model, dataset, metric): (&str, &str, &str),
    mut p: Map<String, Value>,
) {
    p.insert("model".into(), json!(model));
    p.insert("dataset".into(), json!(dataset));
    p.insert("metric".into(), json!(metric));
    b.node(Label::Result, id, p);
    for (label, target, rel) in [
        (Label::Model, model, RelType::OfModel),
        (Label::Dataset, dataset, RelType::OnDataset),
        (Label::Metric, metric, RelType::Measures),
    ] {
        b.node(label, target, entity_props(label, target));
        b.rel((Label::Result, id), rel, (label, target), Map::new());
    }
}

/// Display properties for an entity id from scllm's registries.
fn entity_props(label: Label, id: &str) -> Map<String, Value> {
    match label {
        Label::Model => props(&[("name", json!(extract::model_name(id)))]),
        Label::Metric => props(&[
            ("name", json!(extract::metric_name(id))),
            (
                "higher_is_better",
                json!(extract::metric_higher_is_better(id)),
            ),
        ]),
        Label::Dataset => props(&[("name", json!(extract::dataset_name(id)))]),
        Label::Gene => props(&[("symbol", json!(id)), ("vocabulary", json!("scGPT"))]),
        Label::CellType => props(&[("name", json!(id))]),
        _ => Map::new(),
    }
}

/// `Theis, Fabian J.` and `Fabian J Theis` are not unified; case, dots and spacing are.
pub fn author_key(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '.' | ','))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Reads model × metric grids (either orientation) and dataset × model grids for one metric
/// named in the caption. Cells that are not numbers are skipped.
pub fn table_results(paper_key: &str, table: &Table, vocab: &Vocabulary) -> Vec<ReportedResult> {
    let header_idx = table.header_rows.max(1) - 1;
    let Some(header) = table.rows.get(header_idx) else {
        return Vec::new();
    };
    let body = &table.rows[header_idx + 1..];
    let table_name = if table.label.is_empty() {
        table.id.clone()
    } else {
        table.label.clone()
    };
    let caption_mentions = vocab.extract(&format!("{} {}", table.label, table.caption));
    let caption_dataset = (caption_mentions.datasets.len() == 1)
        .then(|| caption_mentions.datasets.keys().next().cloned())
        .flatten();
    let caption_metric = (caption_mentions.metrics.len() == 1)
        .then(|| caption_mentions.metrics.keys().next().cloned())
        .flatten();
    let dataset_col = header.iter().position(|h| {
        let h = h.trim().to_lowercase();
        h == "dataset" || h == "data set" || h == "data"
    });
    let first = |row: &[String]| {
        row.iter()
            .enumerate()
            .find(|(j, _)| Some(*j) != dataset_col)
            .map(|(j, c)| (j, c.clone()))
    };
    let metric_cols: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(j, h)| vocab.metric_id(h).map(|m| (j, m)))
        .collect();
    let model_cols: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(j, h)| vocab.model_id(h).map(|m| (j, m)))
        .collect();
    let slug = slug(&table_name);
    let mut out = Vec::new();
    let mut push =
        |i: usize, j: usize, model: &str, dataset: Option<String>, metric: &str, cell: &str| {
            if let Some(value) = parse_value(cell) {
                out.push(ReportedResult {
                    id: format!("{paper_key}#{slug}#r{i}c{j}"),
                    model: model.to_string(),
                    dataset: dataset.unwrap_or_else(|| "unspecified".into()),
                    metric: metric.to_string(),
                    value,
                    value_text: cell.trim().to_string(),
                    table: table_name.clone(),
                });
            }
        };
    for (i, row) in body.iter().enumerate() {
        let Some((j0, lead)) = first(row) else {
            continue;
        };
        let row_dataset = dataset_col
            .and_then(|c| row.get(c))
            .and_then(|d| vocab.dataset_id(d).or_else(|| Some(slug_dataset(d))))
            .or_else(|| caption_dataset.clone());
        if let Some(model) = vocab.model_id(&lead) {
            for (j, metric) in metric_cols.iter().filter(|(j, _)| *j != j0) {
                if let Some(cell) = row.get(*j) {
                    push(i, *j, &model, row_dataset.clone(), metric, cell);
                }
            }
        } else if let Some(metric) = vocab.metric_id(&lead) {
            for (j, model) in model_cols.iter().filter(|(j, _)| *j != j0) {
                if let Some(cell) = row.get(*j) {
                    push(i, *j, model, row_dataset.clone(), &metric, cell);
                }
            }
        } else if let (Some(dataset), Some(metric)) =
            (vocab.dataset_id(&lead), caption_metric.as_ref())
        {
            for (j, model) in model_cols.iter().filter(|(j, _)| *j != j0) {
                if let Some(cell) = row.get(*j) {
                    push(i, *j, model, Some(dataset.clone()), metric, cell);
                }
            }
        }
    }
    out
}

fn slug_dataset(name: &str) -> String {
    slug(name).replace('-', "_")
}

/// `0.81`, `0.81 ± 0.02`, `81.2%`, `−0.1` → the leading number.
pub fn parse_value(cell: &str) -> Option<f64> {
    let s = cell.trim().replace('\u{2212}', "-");
    let num: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    if num.is_empty() || num == "-" || num == "." {
        return None;
    }
    num.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One result scllm's `benchmark` measured. Keys use scllm's own ids; names are mapped through
/// the same registries as paper mentions (`scGPT` → `scgpt`, `Macro F1` → `macro_f1`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct BenchmarkRecord {
    pub model: String,
    pub dataset: String,
    pub metric: String,
    pub value: f64,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
}

/// Parses a JSON array, `{"results": [...]}`, or JSON Lines of [`BenchmarkRecord`].
pub fn parse_benchmark_records(text: &str, what: &str) -> Result<Vec<BenchmarkRecord>> {
    let bad = |e: &dyn std::fmt::Display| {
        PapersError::InvalidInput(format!(
            "{what}: {e}; expected a JSON array (or {{\"results\": [...]}}, or JSON Lines) of {{model, dataset, metric, value, task?, run_id?, split?}}"
        ))
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[')
        || trimmed.starts_with('{') && serde_json::from_str::<Value>(trimmed).is_ok()
    {
        let v: Value = serde_json::from_str(trimmed).map_err(|e| bad(&e))?;
        let list = match v {
            Value::Array(a) => Value::Array(a),
            Value::Object(mut o) => match o.remove("results") {
                Some(list) => list,
                None => Value::Array(vec![Value::Object(o)]),
            },
            _ => return Err(bad(&"not a list")),
        };
        return serde_json::from_value(list).map_err(|e| bad(&e));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| bad(&format!("line {}: {e}", i + 1))))
        .collect()
}

/// `Result {source: "scllm"}` nodes joined to the same Model/Dataset/Metric ids as papers.
pub fn benchmark_batch(records: &[BenchmarkRecord], vocab: &Vocabulary) -> GraphBatch {
    let mut b = GraphBatch::default();
    for r in records {
        let model = vocab
            .model_id(&r.model)
            .unwrap_or_else(|| slug_dataset(&r.model));
        let dataset = vocab
            .dataset_id(&r.dataset)
            .unwrap_or_else(|| slug_dataset(&r.dataset));
        let metric = vocab
            .metric_id(&r.metric)
            .unwrap_or_else(|| slug_dataset(&r.metric));
        let run = r.run_id.clone().unwrap_or_else(|| "scllm-benchmark".into());
        let id = format!(
            "scllm:{run}#{model}#{dataset}#{metric}#{}#{}",
            r.task.as_deref().unwrap_or("-"),
            r.split.as_deref().unwrap_or("-")
        );
        add_result(
            &mut b,
            &id,
            (&model, &dataset, &metric),
            props(&[
                ("value", json!(r.value)),
                ("source", json!("scllm")),
                ("reference", json!(run)),
                ("task", json!(r.task)),
                ("split", json!(r.split)),
            ]),
        );
    }
    b.dedup();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_from_common_cell_formats() {
        assert_eq!(parse_value("0.81 ± 0.02"), Some(0.81));
        assert_eq!(parse_value("\u{2212}0.5"), Some(-0.5));
        assert_eq!(parse_value("81.2%"), Some(81.2));
        assert_eq!(parse_value("–"), None);
        assert_eq!(parse_value("NA"), None);
    }

    #[test]
    fn both_table_orientations_give_the_same_results() {
        let v = Vocabulary::builtin();
        let t = |rows: Vec<Vec<&str>>| Table {
            id: "t1".into(),
            label: "Table 1".into(),
            caption: "Annotation on PBMC 10k".into(),
            header_rows: 1,
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(String::from).collect())
                .collect(),
        };
        let a = table_results(
            "p",
            &t(vec![
                vec!["Model", "ARI", "NMI"],
                vec!["scGPT", "0.80", "0.75"],
            ]),
            &v,
        );
        let b = table_results(
            "p",
            &t(vec![
                vec!["Metric", "scGPT"],
                vec!["ARI", "0.80"],
                vec!["NMI", "0.75"],
            ]),
            &v,
        );
        let key = |r: &ReportedResult| {
            (
                r.model.clone(),
                r.dataset.clone(),
                r.metric.clone(),
                r.value.to_bits(),
            )
        };
        let mut ka: Vec<_> = a.iter().map(key).collect();
        let mut kb: Vec<_> = b.iter().map(key).collect();
        ka.sort();
        kb.sort();
        assert_eq!(ka.len(), 2);
        assert_eq!(ka, kb);
        assert_eq!(a[0].dataset, "pbmc10k");
    }

    #[test]
    fn benchmark_records_accept_array_object_and_lines() {
        let one = r#"{"model":"scGPT","dataset":"pbmc3k","metric":"ARI","value":0.7}"#;
        assert_eq!(
            parse_benchmark_records(&format!("[{one}]"), "t")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_benchmark_records(&format!("{{\"results\":[{one}]}}"), "t")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_benchmark_records(&format!("{one}\n{one}\n"), "t")
                .unwrap()
                .len(),
            2
        );
        assert!(parse_benchmark_records("{\"model\":1}", "t").is_err());
    }
}
