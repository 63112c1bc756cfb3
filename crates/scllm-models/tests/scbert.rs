//! scBERT against the reference (tests/fixtures/scbert, made by tools/make_scbert_fixture.py with
//! scBERT's own preprocess.py, PerformerLM and finetune.py head): bins, every hidden state, the
//! encodings, the cell embedding through the embed pipeline, classifier logits, the load
//! report, the folder's checks, and parameter counts at the released shape.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::*;
use scllm_models::embed::{EmbedOptions, Embedder};
use scllm_models::peft::attach;
use scllm_models::{
    param_counts, param_table, BatchInput, CellModel, Family, ModelFolder, PeftConfig, ScBert,
    ScBertConfig, ScBertFolder, Strategy, TokenModel, TokenOptions,
};

const TOL: f64 = 1e-4;

fn fixture() -> PathBuf {
    fixtures().join("scbert")
}
fn model_dir() -> PathBuf {
    fixture().join("model")
}
fn cells() -> PathBuf {
    fixture().join("cells.h5ad")
}
fn expected() -> std::collections::HashMap<String, Ref> {
    read_safetensors(&fixture().join("expected.safetensors"))
}
fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture().join("fixture.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture's model; without a classifier the pretraining `to_out` is missing (the
/// fine-tuned checkpoint holds the head in its place), which no embedding reads.
fn load(folder: &ScBertFolder, n_cls: usize) -> ScBert {
    let (m, report) = folder.load(n_cls, false, &Device::flex()).unwrap();
    assert!(report.skipped.is_empty(), "{}", report.to_text());
    assert!(
        report
            .missing
            .iter()
            .all(|k| n_cls == 0 && k.starts_with("to_out.")),
        "{}",
        report.to_text()
    );
    m
}

/// The reference's bins as a one-cell or several-cell input.
struct Bins {
    b: usize,
    l: usize,
    ids: Vec<i64>,
    values: Vec<f32>,
    padding: Vec<bool>,
}

impl Bins {
    fn of(cells: &[usize]) -> Self {
        let r = expected();
        let l = r["bins"].shape[1];
        let ids: Vec<i64> = cells
            .iter()
            .flat_map(|&c| r["bins"].data[c * l..(c + 1) * l].iter().map(|&x| x as i64))
            .collect();
        let n = ids.len();
        Bins {
            b: cells.len(),
            l,
            ids,
            values: vec![0.0; n],
            padding: vec![false; n],
        }
    }
    fn input(&self) -> BatchInput<'_> {
        BatchInput {
            batch: self.b,
            seq_len: self.l,
            genes: &self.ids,
            values: &self.values,
            padding: &self.padding,
        }
    }
}

fn rows(r: &Ref, cells: &[usize]) -> Vec<f64> {
    let per: usize = r.shape[1..].iter().product();
    cells
        .iter()
        .flat_map(|&c| r.data[c * per..(c + 1) * per].iter().copied())
        .collect()
}

#[test]
fn bins_equal_preprocess_py() {
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    let adata = scllm_io::read_h5ad(cells()).unwrap();
    let p = folder
        .prepare_cells(&adata, &cells(), &Default::default())
        .unwrap();
    let r = expected();
    let l = r["bins"].shape[1];
    assert_eq!(p.cells.len(), r["bins"].shape[0]);
    for (c, cell) in p.cells.iter().enumerate() {
        let want: Vec<u32> = r["bins"].data[c * l..(c + 1) * l]
            .iter()
            .map(|&x| x as u32)
            .collect();
        assert_eq!(cell.genes, want, "cell {c}");
    }
    let matched = meta()["n_panel_matched"].as_u64().unwrap() as usize;
    assert_eq!(p.gene_match.n_matched, matched);
    assert!(
        p.steps
            .starts_with(&format!("{matched} of the 128 panel genes present")),
        "{}",
        p.steps
    );
}

#[test]
fn hidden_states_equal_the_reference() {
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    let m = load(&folder, 0);
    let r = expected();
    let dev = Device::flex();
    for c in 0..2 {
        let bins = Bins::of(&[c]);
        let ids = m.inputs(&bins.input(), &dev).unwrap();
        let hs = m.hidden_states(ids, m.layers.len());
        for (i, h) in hs.into_iter().enumerate() {
            let want = rows(&r[&format!("hidden_{i}")], &[c]);
            let diff = max_diff(&host(h), &want);
            eprintln!("cell {c} hidden_{i}: max abs diff {diff:.2e}");
            assert!(diff <= TOL, "cell {c} hidden_{i}: {diff:.3e}");
        }
    }
}

#[test]
fn encodings_do_not_depend_on_the_batch() {
    // every cell of one batch gives the reference's one-cell-at-a-time encodings (the
    // reference's own batch of 6 differs from them: fixture.json)
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    let m = load(&folder, 0);
    let r = expected();
    let all: Vec<usize> = (0..r["bins"].shape[0]).collect();
    let bins = Bins::of(&all);
    let dev = Device::flex();
    let ids = m.inputs(&bins.input(), &dev).unwrap();
    let enc = m.encode(ids, m.layers.len());
    let diff = max_diff(&host(enc), &r["encodings"].data);
    eprintln!("encodings: max abs diff {diff:.2e}");
    assert!(diff <= TOL, "{diff:.3e}");
    assert!(
        meta()["batch_of_6_vs_one_cell_max_abs_diff"]
            .as_f64()
            .unwrap()
            > 1e-2
    );
}

/// The whole pipeline (`scllm embed`'s path): the file's cells tokenised one at a time, batched,
/// embedded with the family's defaults.
#[test]
fn embedder_gives_the_reference_cell_embedding() {
    let dev = Device::flex();
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    let m = load(&folder, 0);
    let adata = scllm_io::read_h5ad(cells()).unwrap();
    let x = scllm_pp::to_csr_f32(adata.x().unwrap());
    let genes = folder.match_genes(&adata.var, None, &cells()).unwrap();
    let tok = folder
        .embed_tokenizer(&genes, &TokenOptions::default())
        .unwrap();
    let defaults = folder.embedding();
    assert_eq!(defaults.obsm_key, "X_scBERT");
    assert!(!defaults.normalize);
    let opts = EmbedOptions {
        batch_size: 4,
        ..Default::default()
    };
    let mut e = Embedder::new(&m, &dev, tok.as_ref(), defaults.spec, false, opts).unwrap();
    let mut out = vec![0f32; x.nrows * m.d_model()];
    e.embed_block(&x, None, &mut out, &mut |_| {}).unwrap();
    let diff = max_diff(&out, &expected()["embedding"].data);
    eprintln!("embedding: max abs diff {diff:.2e}");
    assert!(diff <= TOL, "{diff:.3e}");
    // tokenised a few cells at a time (a block of long cells never held whole): same rows
    let chunked = EmbedOptions {
        batch_size: 4,
        max_tokens_held: 2 * tok.max_tokens().unwrap() + 1,
        ..Default::default()
    };
    let mut e = Embedder::new(&m, &dev, tok.as_ref(), defaults.spec, false, chunked).unwrap();
    let mut out2 = vec![0f32; out.len()];
    let mut seen = Vec::new();
    e.embed_block(&x, None, &mut out2, &mut |k| seen.push(k))
        .unwrap();
    assert!(
        seen.iter().all(|&k| k <= 2),
        "batches of a 2-cell chunk: {seen:?}"
    );
    assert_eq!(seen.iter().sum::<usize>(), x.nrows);
    assert_eq!(out2, out);
    let bad = folder.embed_tokenizer(
        &genes,
        &TokenOptions {
            max_len: Some(100),
            seed: 0,
        },
    );
    assert!(bad.is_err());
}

#[test]
fn classifier_logits_equal_finetune_identity_head() {
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    assert_eq!(folder.head_hidden, (32, 16));
    let m = load(&folder, 3);
    let r = expected();
    let all: Vec<usize> = (0..r["bins"].shape[0]).collect();
    let bins = Bins::of(&all);
    let c = m.classify(&bins.input(), &Device::flex()).unwrap();
    let diff = max_diff(&host(c.logits), &r["logits"].data);
    eprintln!("logits: max abs diff {diff:.2e}");
    assert!(diff <= TOL, "{diff:.3e}");
    let diff = max_diff(&host(c.cell_emb), &r["embedding"].data);
    assert!(diff <= TOL, "{diff:.3e}");
    assert_eq!(folder.default_unknown_below(), Some(0.5));
}

#[test]
fn load_report_reads_model_state_dict_only() {
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    let (_, report) = folder.load(3, true, &Device::flex()).unwrap();
    // the redraw counter (an int64 buffer) is the only key of model_state_dict the model has no
    // use for; the optimizer, scheduler, epoch and losses entries are not listed at all
    assert_eq!(report.unexpected, vec!["performer.calls_since_last_redraw"]);
    assert!(report.is_complete());
    // the pretraining model misses its output layer (the fine-tuned file replaced it)
    let (_, report) = folder.load(0, false, &Device::flex()).unwrap();
    assert_eq!(report.missing, vec!["to_out.weight", "to_out.bias"]);
    assert!(report.unexpected.iter().any(|k| k == "to_out.fc3.weight"));
}

fn copy_folder(to: &Path) {
    for f in ["scbert_best.pth", "scbert_config.json", "gene_panel.txt"] {
        std::fs::copy(model_dir().join(f), to.join(f)).unwrap();
    }
}

#[test]
fn bad_folders_give_clear_errors() {
    assert_eq!(
        scllm_models::folder::detect(&model_dir()).unwrap(),
        Family::ScBert
    );
    let tmp = tempfile::tempdir().unwrap();
    copy_folder(tmp.path());
    // no gene panel
    std::fs::remove_file(tmp.path().join("gene_panel.txt")).unwrap();
    let e = scllm_models::open_folder(tmp.path(), &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("gene_panel.txt") && e.contains("one gene symbol a line"),
        "{e}"
    );
    // a panel one gene short of the position table
    let genes = std::fs::read_to_string(model_dir().join("gene_panel.txt")).unwrap();
    let short: String = genes.lines().skip(1).map(|g| format!("{g}\n")).collect();
    std::fs::write(tmp.path().join("gene_panel.txt"), short).unwrap();
    let e = ScBertFolder::open(tmp.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("holds 127 genes, but the model reads 128"),
        "{e}"
    );
    // a config that disagrees with the checkpoint
    std::fs::write(tmp.path().join("gene_panel.txt"), &genes).unwrap();
    let cfg = std::fs::read_to_string(model_dir().join("scbert_config.json")).unwrap();
    std::fs::write(
        tmp.path().join("scbert_config.json"),
        cfg.replace("\"heads\": 2", "\"heads\": 4"),
    )
    .unwrap();
    let e = ScBertFolder::open(tmp.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("scbert_config.json") && e.contains("heads 4"),
        "{e}"
    );
    // a config and panel one position longer than the checkpoint's position table
    std::fs::write(
        tmp.path().join("scbert_config.json"),
        cfg.replace("\"max_seq_len\": 129", "\"max_seq_len\": 130"),
    )
    .unwrap();
    std::fs::write(tmp.path().join("gene_panel.txt"), format!("{genes}EXTRA\n")).unwrap();
    let e = ScBertFolder::open(tmp.path(), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("max_seq_len 130") && e.contains("pos_emb.emb.weight is [129, 16]"),
        "{e}"
    );
    std::fs::write(tmp.path().join("gene_panel.txt"), &genes).unwrap();
    // two checkpoints: which one is meant?
    std::fs::write(tmp.path().join("scbert_config.json"), &cfg).unwrap();
    std::fs::copy(
        model_dir().join("scbert_best.pth"),
        tmp.path().join("panglao_pretrain.pth"),
    )
    .unwrap();
    let f = ScBertFolder::open(tmp.path(), None).unwrap();
    let e = f.weights().err().unwrap().to_string();
    assert!(e.contains("several checkpoints"), "{e}");
    // a query sharing no panel gene
    let adata = scllm_io::read_h5ad(cells()).unwrap();
    let mut var = adata.var.clone();
    var.index = (0..var.index.len())
        .map(|i| format!("NOTAGENE{i}"))
        .collect();
    let e = f
        .match_genes(&var, None, Path::new("query.h5ad"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("query.h5ad") && e.contains("none of its"), "{e}");
}

#[test]
fn prefix_is_refused_and_the_others_attach() {
    let folder = ScBertFolder::open(&model_dir(), None).unwrap();
    let dev = Device::flex();
    let m = folder.build(3, &dev).unwrap();
    let e = attach(m.clone(), Strategy::Prefix, &PeftConfig::default(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("scBERT") && e.contains("prefix"), "{e}");
    assert!(!Family::ScBert.supports(Strategy::Prefix));
    let bins = Bins::of(&[0]);
    for s in Strategy::ALL
        .into_iter()
        .filter(|&s| Family::ScBert.supports(s))
    {
        let a = attach(m.clone(), s, &PeftConfig::default(), &dev).unwrap();
        // every site runs (training of each is the trainer's tests' business)
        let c = a.classify(&bins.input(), &dev).unwrap();
        assert!(host(c.logits).iter().all(|x| x.is_finite()), "{s}");
    }
    // LoRA on to_q and to_v, keys as loralib names them
    let a = attach(m, Strategy::Lora, &PeftConfig::default(), &dev).unwrap();
    let keys: Vec<String> = param_table(&a).into_iter().map(|p| p.key).collect();
    assert!(keys.contains(&"performer.net.layers.0.0.fn.to_q.lora_A".to_string()));
    assert!(keys.contains(&"performer.net.layers.2.0.fn.to_v.lora_B".to_string()));
}

/// Trainable parameters as the reference counts `requires_grad` (fixture.json): the model as
/// built (pretraining) and finetune.py's set with its head, at the released shape. scllm also
/// lists the projection matrices (buffers in the reference) as frozen parameters.
#[test]
fn trainable_counts_equal_the_reference_at_the_released_shape() {
    let meta = meta();
    let want = &meta["released_counts"];
    let n = |k: &str| want[k].as_u64().unwrap() as usize;
    let dev = Device::flex();
    let cfg = ScBertConfig::released();
    let m = ScBert::new(&cfg, 0, (512, 128), &dev).unwrap();
    let buffers = n("projection_matrix_buffer_elements");
    let (trainable, total) = param_counts(&m);
    assert_eq!(trainable, n("trainable_as_built"));
    assert_eq!(trainable, 5_007_207);
    assert_eq!(total - buffers, n("total_params"));
    assert_eq!(total - buffers, 8_388_607);
    let k = n("finetune_classes");
    let mut m = m;
    m.set_head(k, &dev);
    let full = attach(m, Strategy::Full, &PeftConfig::default(), &dev).unwrap();
    let (trainable, total) = param_counts(&full);
    assert_eq!(trainable, n("finetune_trainable_with_head"));
    assert_eq!(total - buffers, n("finetune_total_with_head"));
}

/// The released shape (16,907 positions, dim 200, depth 6, heads 10, dim_head 64; random
/// weights) on one cell, end to end: embedding and classifier.
#[test]
fn the_released_shape_runs_on_one_cell() {
    let dev = Device::flex();
    let cfg = ScBertConfig::released();
    let m = ScBert::new(&cfg, 9, (512, 128), &dev).unwrap();
    let l = cfg.max_seq_len;
    let mut ids: Vec<i64> = (0..l).map(|i| ((i * 7919) % 97).min(5) as i64).collect();
    ids[l - 1] = 0;
    let values = vec![0f32; l];
    let padding = vec![false; l];
    let b = BatchInput {
        batch: 1,
        seq_len: l,
        genes: &ids,
        values: &values,
        padding: &padding,
    };
    let t0 = std::time::Instant::now();
    let c = m.classify(&b, &dev).unwrap();
    eprintln!(
        "released shape, one cell: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(c.logits.dims(), [1, 9]);
    assert_eq!(c.cell_emb.dims(), [1, 200]);
    assert!(host(c.logits).iter().all(|x| x.is_finite()));
    assert!(host(c.cell_emb).iter().all(|x| x.is_finite()));
}
