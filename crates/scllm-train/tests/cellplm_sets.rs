//! CellPLM's transductive fine-tuning (`scllm_train::transductive`) on the small random
//! checkpoint of tests/fixtures/cellplm: only training cells feed the loss, each strategy trains
//! its adapters and head and leaves every other tensor bit-identical, prefix is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use scllm_models::cellplm::prepare::{prepare_cells, GeneSubset};
use scllm_models::cellplm::{CellPlm, CellPlmFolder, GroupBy, SetOptions, Sets};
use scllm_models::peft::{attach, trains, Strategy};
use scllm_models::{param_table, state_dict, PeftConfig};
use scllm_tokenize::TokenizedCell;
use scllm_train::{train_sets, SetTrainConfig, SetTrainData};

/// The device's random generator (dropout) is shared by the test threads of this process: runs
/// that must repeat exactly take turns.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cellplm")
}

struct Data {
    cells: Vec<TokenizedCell>,
    labels: Vec<u32>,
    n_classes: usize,
    sets: Vec<Vec<usize>>,
    train: Vec<usize>,
    val: Vec<usize>,
}

fn data() -> Data {
    let f = CellPlmFolder::open(&dir()).unwrap();
    let a = scllm_io::read_h5ad(dir().join("cells.h5ad")).unwrap();
    let p = prepare_cells(
        &a,
        &f.config.gene_list,
        Path::new("cells.h5ad"),
        &GeneSubset::All,
    )
    .unwrap();
    let types: Vec<String> = a
        .obs
        .column("cell_type")
        .unwrap()
        .to_strings()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let mut ids = BTreeMap::new();
    for t in &types {
        let n = ids.len();
        ids.entry(t.clone()).or_insert(n);
    }
    let labels = types.iter().map(|t| ids[t] as u32).collect();
    let sets = Sets::build(
        &a.obs,
        p.cells.len(),
        &SetOptions {
            group_by: GroupBy::Default,
            batch_size: None,
        },
        Path::new("cells.h5ad"),
    )
    .unwrap()
    .sets;
    let n = p.cells.len();
    Data {
        cells: p.cells,
        labels,
        n_classes: ids.len(),
        sets,
        train: (0..n).filter(|i| i % 3 != 0).collect(),
        val: (0..n).filter(|i| i % 3 == 0).collect(),
    }
}

fn cfg(epochs: usize) -> SetTrainConfig {
    SetTrainConfig {
        epochs,
        progress: false,
        seed: 7,
        ..SetTrainConfig::default()
    }
}

fn model(d: &Data, s: Strategy, dev: &Device) -> CellPlm {
    let f = CellPlmFolder::open(&dir()).unwrap();
    dev.seed(3);
    let (base, _) = f.load_annotation(d.n_classes, dev).unwrap();
    attach(base, s, &PeftConfig::default(), dev)
        .unwrap()
        .train()
}

fn run(d: &Data, labels: &[u32], s: Strategy, epochs: usize) -> CellPlm {
    let dev = Device::flex();
    let m = model(d, s, &dev);
    let data = SetTrainData {
        cells: &d.cells,
        labels,
        n_classes: d.n_classes,
        sets: &d.sets,
        train: &d.train,
        val: &d.val,
    };
    train_sets(m, &data, &cfg(epochs), &dev.clone().autodiff())
        .unwrap()
        .best
}

fn weights(m: &CellPlm) -> BTreeMap<String, Vec<f32>> {
    state_dict(m).into_iter().map(|(k, _, v)| (k, v)).collect()
}

#[test]
fn only_training_cells_feed_the_loss() {
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = data();
    let base = run(&d, &d.labels, Strategy::Full, 1);
    assert_eq!(
        weights(&run(&d, &d.labels, Strategy::Full, 1)),
        weights(&base),
        "repeatable"
    );
    // other labels on the validation cells: the same weights after a step on every set
    let mut other = d.labels.clone();
    for &i in &d.val {
        other[i] = (other[i] + 1) % d.n_classes as u32;
    }
    assert_eq!(weights(&run(&d, &other, Strategy::Full, 1)), weights(&base));
    // other labels on the training cells: different weights
    let mut other = d.labels.clone();
    for &i in &d.train {
        other[i] = (other[i] + 1) % d.n_classes as u32;
    }
    assert_ne!(weights(&run(&d, &other, Strategy::Full, 1)), weights(&base));
}

#[test]
fn each_strategy_trains_its_part_and_freezes_the_rest() {
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = data();
    for s in [
        Strategy::Head,
        Strategy::Lora,
        Strategy::EncoderPrompt,
        Strategy::TokenPrompt,
        Strategy::Full,
    ] {
        let dev = Device::flex();
        let before = model(&d, s, &dev);
        let table = param_table(&before);
        let w0 = weights(&before);
        let after = run(&d, &d.labels, s, 2);
        let w1 = weights(&after);
        let mut changed = 0;
        for p in &table {
            let same = w0[&p.key] == w1[&p.key];
            if trains(s, p.part) {
                // a LoRA B starts at zero and moves; every trained tensor moves in two epochs
                if !same {
                    changed += 1;
                }
            } else {
                assert!(same, "{s}: frozen {} changed", p.key);
            }
        }
        let n_trained = table.iter().filter(|p| trains(s, p.part)).count();
        assert!(
            changed * 10 >= n_trained * 9,
            "{s}: only {changed} of {n_trained} trained tensors moved"
        );
        if s == Strategy::Full {
            assert_ne!(
                w0["embedder.feat_enc.emb"], w1["embedder.feat_enc.emb"],
                "full trains the gene table (the embedder group)"
            );
        }
    }
}

#[test]
fn prefix_is_refused_by_name() {
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = data();
    let dev = Device::flex();
    let f = CellPlmFolder::open(&dir()).unwrap();
    let (base, _) = f.load_annotation(d.n_classes, &dev).unwrap();
    let e = attach(base, Strategy::Prefix, &PeftConfig::default(), &dev)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("CellPLM") && e.contains("prefix"), "{e}");
}
