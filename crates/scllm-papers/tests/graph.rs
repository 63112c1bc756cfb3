//! The knowledge graph on the embedded SQLite store, generated Cypher, and exports.

mod common;

use common::{fixture, fixtures_dir};
use scllm_papers::chunk::chunk_paper;
use scllm_papers::client::paper_from_details;
use scllm_papers::extract::Vocabulary;
use scllm_papers::graph::build::{benchmark_batch, paper_batch, parse_benchmark_records};
use scllm_papers::graph::cypher::{batch_statements, schema_statements, Dialect};
use scllm_papers::graph::sqlite::SqliteStore;
use scllm_papers::graph::{CannedQuery, GraphStore, Label};
use scllm_papers::jats::parse_jats;
use scllm_papers::Paper;
use serde_json::{json, Value};

/// The synthetic fixture paper with its JATS full text.
fn fixture_paper() -> Paper {
    let details: Value = serde_json::from_str(&fixture("api/details_doi.json")).unwrap();
    let mut paper = paper_from_details(&details["collection"][2]);
    paper.full_text = Some(parse_jats(&fixture("europepmc/PPR900001.xml"), "fixture").unwrap());
    paper
}

fn store_with_paper_and_benchmark() -> SqliteStore {
    let vocab = Vocabulary::builtin();
    let paper = fixture_paper();
    let mut store = SqliteStore::in_memory().unwrap();
    store
        .apply(&paper_batch(
            &paper,
            &chunk_paper(&paper, 1500),
            &vocab,
            None,
        ))
        .unwrap();
    let records = parse_benchmark_records(&fixture("benchmark_results.json"), "fixture").unwrap();
    store.apply(&benchmark_batch(&records, &vocab)).unwrap();
    store
}

#[test]
fn extraction_finds_the_expected_genes_and_cell_types_in_the_fixture_abstract() {
    let paper = fixture_paper();
    let m = Vocabulary::builtin().extract(&paper.abstract_text);
    let genes: Vec<&str> = m.genes.keys().map(String::as_str).collect();
    // "CD4+ T cells" also names the CD4 marker: a gene mention too.
    assert_eq!(genes, ["CD14", "CD3E", "CD4", "LYZ", "MS4A1"]);
    let cell_types: Vec<&str> = m.cell_types.keys().map(String::as_str).collect();
    assert_eq!(cell_types, ["B cells", "CD14+ monocytes", "CD4+ T cells"]);
    let models: Vec<&str> = m.models.keys().map(String::as_str).collect();
    assert_eq!(models, ["geneformer", "logreg", "scbert", "scgpt"]);
    assert!(m.datasets.contains_key("pbmc10k"));
    assert!(m.metrics.contains_key("ari"));
}

#[test]
fn vocabulary_loads_full_resources_from_a_folder_and_says_which_it_used() {
    let dir = fixtures_dir().join("resources");
    let v = Vocabulary::load(Some(&dir)).unwrap();
    assert!(
        v.source.genes.ends_with("default_gene_vocab.json"),
        "{}",
        v.source.genes
    );
    assert!(
        v.source.cell_types.contains("PanglaoDB_markers"),
        "{}",
        v.source.cell_types
    );
    assert_eq!(v.source.gene_count, 5, "SET and NMI are stop-listed");
    assert!(v.is_gene("P2RY12") && !v.is_gene("SET"));
    let missing = Vocabulary::load(Some(&fixtures_dir().join("api")))
        .err()
        .unwrap();
    assert!(missing.to_string().contains("default_gene_vocab.json"));
    let builtin = Vocabulary::builtin();
    assert!(builtin.source.genes.starts_with("built-in"));
    assert!(builtin.source.gene_count > 2000);
}

#[test]
fn adding_the_same_paper_twice_changes_nothing() {
    let vocab = Vocabulary::builtin();
    let paper = fixture_paper();
    let batch = paper_batch(&paper, &chunk_paper(&paper, 1500), &vocab, None);
    let mut store = SqliteStore::in_memory().unwrap();
    store.apply(&batch).unwrap();
    let once = (store.counts().unwrap(), store.dump().unwrap());
    let again = paper_batch(
        &fixture_paper(),
        &chunk_paper(&fixture_paper(), 1500),
        &vocab,
        None,
    );
    store.apply(&again).unwrap();
    let twice = (store.counts().unwrap(), store.dump().unwrap());
    assert_eq!(once, twice);
    assert_eq!(once.0.nodes["Paper"], 1);
    assert_eq!(once.0.nodes["Author"], 3);
    assert!(once.0.nodes["Chunk"] >= 7, "{:?}", once.0.nodes);
}

#[test]
fn re_adding_with_a_different_chunking_leaves_no_stale_chunks() {
    let vocab = Vocabulary::builtin();
    let mut paper = fixture_paper();
    let mut store = SqliteStore::in_memory().unwrap();
    store
        .apply(&paper_batch(
            &paper,
            &chunk_paper(&paper, 1500),
            &vocab,
            None,
        ))
        .unwrap();
    paper.full_text = None; // e.g. full text later unavailable: abstract only
    let chunks = chunk_paper(&paper, 1500);
    store
        .apply(&paper_batch(&paper, &chunks, &vocab, None))
        .unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.nodes["Chunk"], chunks.len() as u64);
    assert_eq!(counts.relationships["PART_OF"], chunks.len() as u64);
    assert!(
        !counts.nodes.contains_key("Result") || counts.nodes["Result"] == 0,
        "paper results went with the table"
    );
}

#[test]
fn table_metrics_become_result_nodes_with_scllm_ids() {
    let store = store_with_paper_and_benchmark();
    let ids: Vec<String> = store
        .dump()
        .unwrap()
        .nodes
        .into_iter()
        .filter(|n| n.label == Label::Result)
        .map(|n| n.id)
        .collect();
    // 4 models × 3 metrics minus scBERT's missing macro-F1, plus 3 benchmark results.
    assert_eq!(ids.len(), 11 + 3, "{ids:?}");
    let r = store
        .node_props(Label::Result, "10.1101/2099.01.01.900001v3#table-1#r0c1")
        .unwrap()
        .unwrap();
    assert_eq!(r["value"], json!(0.81));
    assert_eq!(r["value_text"], json!("0.81 ± 0.02"));
    assert_eq!(r["dataset"], json!("pbmc10k"));
}

#[test]
fn canned_query_papers_mentioning_a_gene_and_a_cell_type() {
    let mut store = store_with_paper_and_benchmark();
    let rows = store
        .query(&CannedQuery::GeneCellType {
            gene: "CD3E".into(),
            cell_type: "T cells".into(),
        })
        .unwrap();
    assert_eq!(
        rows.columns,
        [
            "paper",
            "doi",
            "title",
            "gene_chunks",
            "cell_type_chunks",
            "shared_chunks"
        ]
    );
    assert_eq!(rows.rows.len(), 1);
    let row = &rows.rows[0];
    assert_eq!(row[0], json!("10.1101/2099.01.01.900001v3"));
    assert_eq!(row[1], json!("10.1101/2099.01.01.900001"));
    assert!(row[5].as_i64().unwrap() >= 1, "{row:?}");
    let none = store
        .query(&CannedQuery::GeneCellType {
            gene: "CD3E".into(),
            cell_type: "Microglia".into(),
        })
        .unwrap();
    assert!(none.rows.is_empty());
}

#[test]
fn canned_query_models_and_metrics_per_dataset_joins_papers_and_scllm() {
    let mut store = store_with_paper_and_benchmark();
    let rows = store
        .query(&CannedQuery::ModelMetrics {
            model: Some("scgpt".into()),
            dataset: Some("pbmc10k".into()),
            metric: None,
        })
        .unwrap();
    let got: Vec<(String, f64, String)> = rows
        .rows
        .iter()
        .map(|r| {
            (
                r[2].as_str().unwrap().to_string(),
                r[3].as_f64().unwrap(),
                r[4].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ari".to_string(), 0.81, "paper".to_string()),
            ("ari".to_string(), 0.78, "scllm".to_string()),
            ("macro_f1".to_string(), 0.85, "paper".to_string()),
            ("nmi".to_string(), 0.77, "paper".to_string()),
        ]
    );
    let compare = store.query(&CannedQuery::Compare).unwrap();
    assert_eq!(
        compare.rows.len(),
        2,
        "scGPT ARI and Geneformer NMI on pbmc10k"
    );
    assert_eq!(
        compare.rows[0][..4],
        [
            json!("pbmc10k"),
            json!("geneformer"),
            json!("nmi"),
            json!(0.71)
        ]
    );
    assert_eq!(compare.rows[1][5], json!(0.78));
}

#[test]
fn generated_cypher_matches_the_golden_file() {
    let vocab = Vocabulary::builtin();
    let paper = Paper {
        doi: "10.1101/2099.05.05.900005".into(),
        version: Some(1),
        title: "Golden \"quoted\" title".into(),
        authors: vec!["Doe, J.".into()],
        abstract_text: "scGPT on CD3E T cells.".into(),
        license: Some("cc_by".into()),
        ..Paper::default()
    };
    let batch = paper_batch(&paper, &chunk_paper(&paper, 1500), &vocab, None);
    let mut text = String::new();
    for s in schema_statements(Dialect::Neo4j, Some(8))
        .into_iter()
        .chain(batch_statements(&batch, Dialect::Neo4j))
    {
        text.push_str(&s.text);
        text.push('\n');
        text.push_str(&serde_json::to_string(&s.params).unwrap());
        text.push_str("\n\n");
    }
    let golden_path = fixtures_dir().join("golden/neo4j_batch.txt");
    if std::env::var("SCLLM_UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path)
        .expect("golden file (regenerate with SCLLM_UPDATE_GOLDEN=1)");
    assert_eq!(text, golden);
}

#[test]
fn neo4j_csv_export_writes_typed_headers_and_an_import_script() {
    let store = store_with_paper_and_benchmark();
    let dir = tempfile::tempdir().unwrap();
    let files =
        scllm_papers::graph::export::write_neo4j_csv(&store.dump().unwrap(), dir.path()).unwrap();
    assert!(files.iter().any(|f| f.ends_with("nodes_Paper.csv")));
    let results = std::fs::read_to_string(dir.path().join("nodes_Result.csv")).unwrap();
    let header = results.lines().next().unwrap();
    assert!(header.starts_with("id:ID(Result),"), "{header}");
    assert!(
        header.contains("value:double") && header.ends_with(":LABEL"),
        "{header}"
    );
    let mentions =
        std::fs::read_to_string(dir.path().join("rels_MENTIONS_Chunk_Gene.csv")).unwrap();
    assert!(
        mentions.starts_with(":START_ID(Chunk),:END_ID(Gene),count:long,extractor,:TYPE"),
        "{mentions}"
    );
    let script = std::fs::read_to_string(dir.path().join("import.sh")).unwrap();
    assert!(
        script.contains("neo4j-admin database import full")
            && script.contains("--nodes=nodes_Paper.csv")
    );
}
