//! Seconds per training step and checkpoint cost on a fixture model (run under `/usr/bin/time -v`
//! for the peak RSS):
//!
//! ```text
//! cargo run -p scllm-train --example train_step -- [small|tiny] [batch 16] [steps 10] [max_len 2001] [threads]
//! ```

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use scllm_models::{LoadOptions, ModelFolder, ScGptFolder, ScGptModel};
use scllm_tokenize::PrepOptions;
use scllm_train::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("small");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let max_len: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2001);
    if let Some(t) = args.get(5).and_then(|s| s.parse().ok()) {
        scllm_models::set_threads(t).unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("tests/fixtures/scgpt").join(name);
    let data_path = root.join("tests/fixtures/data/kang2018_pbmc_400.h5ad");
    let folder = ScGptFolder::open(&dir, None).unwrap();
    let t = Instant::now();
    let adata = scllm_io::read_h5ad(&data_path).unwrap();
    let prep = PrepOptions {
        max_len,
        ..PrepOptions::default()
    };
    let labels = LabelOptions {
        label_col: "cell_type".into(),
        min_cells_per_class: Some(2),
    };
    let d = AnnotationData::from_anndata(&adata, &data_path, &labels, |a| {
        folder.prepare_cells(a, &data_path, &prep)
    })
    .unwrap();
    println!("{}", d.summary());
    let lens: Vec<usize> = d.cells.iter().map(|c| c.len()).collect();
    println!(
        "prepared in {:.2} s; tokens per cell: mean {:.0}, max {}",
        t.elapsed().as_secs_f64(),
        lens.iter().sum::<usize>() as f64 / lens.len() as f64,
        lens.iter().max().unwrap()
    );
    let n_train = (batch * steps).min(d.cells.len() - batch);
    let split = Split {
        train: (0..n_train).collect(),
        val: (n_train..n_train + batch).collect(),
        description: String::new(),
        warnings: vec![],
    };
    let dev = scllm_models::Device::flex().autodiff();
    let opts = LoadOptions {
        n_cls: d.n_classes(),
        do_mvc: false,
        strict: false,
        weights: None,
    };
    // built on the plain device, then moved onto autodiff (see the tests)
    let model = ScGptModel::load(&dir, &opts, &scllm_models::Device::flex())
        .unwrap()
        .model
        .train();
    let tmp = std::env::temp_dir().join(format!("scllm-train-step-{}", std::process::id()));
    let tcfg = TrainConfig {
        epochs: 1,
        batch_size: batch,
        eval_batch_size: batch,
        max_batch_tokens: usize::MAX,
        lr: 1e-4,
        out_dir: Some(tmp.clone()),
        progress: std::env::var_os("PROGRESS").is_some(),
        ..Default::default()
    };
    let out = train(model, &TrainData::new(&d, &split), &tcfg, &dev).unwrap();
    let h = &out.history[0];
    let n_steps = n_train.div_ceil(batch);
    println!(
        "{name}: {} threads, batch {batch}, {n_steps} steps: {:.1} cells/s = {:.3} s/step (forward+backward+Adam, mean cell length {:.0} tokens)",
        scllm_models::threads(),
        h.cells_per_s,
        batch as f64 / h.cells_per_s,
        lens[..n_train].iter().sum::<usize>() as f64 / n_train as f64
    );
    let p = tmp.join("bench_model.bpk");
    let t = Instant::now();
    save_module(&out.last, &p).unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut m2 = out.last.clone();
    load_module(&mut m2, &p).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let ck = tmp.join("checkpoint");
    let mut total = 0;
    for f in ["model.bpk", "optimizer.bpk", "best.bpk", "state.json"] {
        let n = std::fs::metadata(ck.join(f)).map(|m| m.len()).unwrap_or(0);
        total += n;
        println!("checkpoint/{f}: {n} bytes");
    }
    println!(
        "model burnpack: {} bytes, save {:.3} s, load {:.3} s; checkpoint total {} bytes",
        std::fs::metadata(&p).unwrap().len(),
        save_s,
        load_s,
        total
    );
    std::fs::remove_dir_all(&tmp).ok();
}
