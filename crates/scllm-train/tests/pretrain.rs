//! Pretraining on a tiny committed corpus: the loss falls, a resumed run repeats the straight
//! run's log exactly, the written folder reloads (both weight files) with identical outputs, and
//! bad input is refused clearly.

use std::path::{Path, PathBuf};

use scllm_models::{LoadOptions, ScGptModel};
use scllm_train::{pretrain, PretrainConfig, PretrainRun, StepLog};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data")
        .join(name)
}

fn config(steps: usize) -> PretrainConfig {
    toml::from_str(&format!(
        r#"
[model]
embsize = 16
nheads = 2
d_hid = 32
nlayers = 2
dropout = 0.1

[data]
max_len = 48
shuffle_buffer = 64
block_cells = 100
min_files_per_gene = 2

[train]
steps = {steps}
batch_size = 16
lr = 3e-3
warmup_ratio = 0.05
log_every = 5
checkpoint_every = 10
seed = 7
"#
    ))
    .unwrap()
}

fn inputs() -> Vec<PathBuf> {
    vec![data("kang2018_pbmc_400.h5ad"), data("pbmc3k_300.h5ad")]
}

fn log(dir: &Path) -> Vec<StepLog> {
    std::fs::read_to_string(dir.join("pretrain_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn losses(l: &[StepLog]) -> Vec<(usize, f64, f64)> {
    l.iter().map(|s| (s.step, s.gep, s.lr)).collect()
}

// one test: the device's random generator is process-wide, and runs must not interleave
#[test]
fn pretraining_learns_resumes_exactly_and_writes_a_loadable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let files = inputs();

    // loss falls
    let long = tmp.path().join("long");
    let cfg = config(120);
    let s = pretrain(&PretrainRun {
        config: &cfg,
        inputs: &files,
        out: &long,
        resume: false,
        progress: false,
        stop_after_steps: None,
    })
    .unwrap();
    assert!(s.finished && s.steps == 120);
    let l = log(&long);
    let first: f64 = l[..3].iter().map(|x| x.loss).sum::<f64>() / 3.0;
    let last: f64 = l[l.len() - 3..].iter().map(|x| x.loss).sum::<f64>() / 3.0;
    eprintln!(
        "loss {first:.3} -> {last:.3} over 120 steps ({:.1} cells/s)",
        s.cells_per_s
    );
    assert!(last < 0.7 * first, "loss did not fall: {first} -> {last}");
    for f in [
        "args.json",
        "vocab.json",
        "best_model.pt",
        "model.safetensors",
        "loss_curve.png",
    ] {
        assert!(long.join(f).is_file(), "{f}");
    }

    // both weight files load into the model scllm builds from args.json + vocab.json, and give
    // the same cell embeddings
    let dev = scllm_models::Device::flex();
    let opts = |w: &str| LoadOptions {
        n_cls: 0,
        do_mvc: true,
        strict: true,
        weights: Some(long.join(w)),
    };
    let a = ScGptModel::load(&long, &opts("best_model.pt"), &dev).unwrap();
    let b = ScGptModel::load(&long, &opts("model.safetensors"), &dev).unwrap();
    assert!(
        a.report.is_complete() && a.report.unexpected.is_empty(),
        "{}",
        a.report.to_text()
    );
    assert_eq!(
        scllm_models::state_dict(&a.model),
        scllm_models::state_dict(&b.model)
    );

    // resume: 20 straight vs 10 + resume to 20
    let cfg20 = config(20);
    let straight = tmp.path().join("straight");
    pretrain(&PretrainRun {
        config: &cfg20,
        inputs: &files,
        out: &straight,
        resume: false,
        progress: false,
        stop_after_steps: None,
    })
    .unwrap();
    let split = tmp.path().join("split");
    let first = pretrain(&PretrainRun {
        config: &cfg20,
        inputs: &files,
        out: &split,
        resume: false,
        progress: false,
        stop_after_steps: Some(10),
    })
    .unwrap();
    assert!(!first.finished && first.steps == 10);
    let second = pretrain(&PretrainRun {
        config: &cfg20,
        inputs: &files,
        out: &split,
        resume: true,
        progress: false,
        stop_after_steps: None,
    })
    .unwrap();
    assert_eq!(second.resumed_from_step, Some(10));
    // the same log: identical in practice (max difference 0 on an idle machine); rayon's
    // adaptive work splitting can change float summation order under load, hence the tolerance
    let (la, lb) = (losses(&log(&straight)), losses(&log(&split)));
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!((x.0, x.2), (y.0, y.2), "same steps and learning rates");
        assert!(
            (x.1 - y.1).abs() <= 1e-5 * x.1.abs(),
            "step {}: {} vs {}",
            x.0,
            x.1,
            y.1
        );
    }
    // the same weights, up to the summation order of multi-threaded gradient kernels
    let load = |d: &Path| {
        let m = ScGptModel::load(
            d,
            &LoadOptions {
                n_cls: 0,
                do_mvc: true,
                strict: true,
                weights: Some(d.join("model.safetensors")),
            },
            &scllm_models::Device::flex(),
        )
        .unwrap();
        scllm_models::state_dict(&m.model)
    };
    let (a, b) = (load(&straight), load(&split));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f32;
    for ((ka, _, va), (kb, _, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("weights after a resume: max difference {worst}");
    assert!(worst < 1e-4, "weights after a resume differ by {worst}");

    // bad input
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = pretrain(&PretrainRun {
        config: &cfg20,
        inputs: std::slice::from_ref(&empty),
        out: &tmp.path().join("x"),
        resume: false,
        progress: false,
        stop_after_steps: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("no .h5ad"), "{e}");
    let vocab = tmp.path().join("vocab.json");
    std::fs::write(
        &vocab,
        r#"{"NOTAGENE1": 0, "NOTAGENE2": 1, "<pad>": 2, "<cls>": 3}"#,
    )
    .unwrap();
    let mut c = config(5);
    c.data.vocab = Some(vocab);
    let e = pretrain(&PretrainRun {
        config: &c,
        inputs: &files,
        out: &tmp.path().join("y"),
        resume: false,
        progress: false,
        stop_after_steps: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("vocabulary"), "{e}");
    let e = pretrain(&PretrainRun {
        config: &cfg20,
        inputs: &files,
        out: &tmp.path().join("z"),
        resume: true,
        progress: false,
        stop_after_steps: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}
