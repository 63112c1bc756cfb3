//! Issue 19's hostile inputs, each a regression test: a copy of a committed fixture damaged in
//! one place (with the `hdf5` crate, or byte-patched where HDF5 would refuse to write it), run
//! through the real binary. Every one must end in exit 2 with one `error:` line naming what is
//! wrong — never a panic, an abort, a memory blow-up or a silent wrong answer.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::fixtures;
use hdf5::types::VarLenUnicode;
use scllm_fuzz::{run_case, Limits, Outcome};

/// A copy of `fixtures/rel` in `dir`.
fn copy(rel: &str, dir: &Path) -> PathBuf {
    let to = dir.join(Path::new(rel).file_name().unwrap());
    std::fs::copy(fixtures().join(rel), &to).unwrap();
    to
}

/// Held while this process has an HDF5 file open and while a child runs: a child forked by
/// one test would inherit another test's open descriptor, and with it HDF5's lock on the file.
static HDF5_OPEN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    HDF5_OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `tests/fixtures/cellplm/cells.h5ad` (36 cells × 180 genes, CSR counts, categorical obs),
/// copied and changed by `damage`.
fn damaged(dir: &Path, damage: impl FnOnce(&hdf5::File)) -> PathBuf {
    let _one = serial();
    let f = copy("cellplm/cells.h5ad", dir);
    let h = hdf5::File::open_rw(&f).unwrap();
    damage(&h);
    h.close().unwrap();
    f
}

fn scllm(args: &[&str]) -> (i32, String, String) {
    let _one = serial();
    common::scllm(args)
}

/// Run `args` under a 1 GiB address-space cap (outcome, peak RSS, seconds, stderr).
fn run_capped(args: &[&str]) -> scllm_fuzz::CaseResult {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    run_case(
        Command::new(env!("CARGO_BIN_EXE_scllm")).args(args),
        Limits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
        },
        &dir.path().join("stderr"),
    )
    .unwrap()
}

/// [`run_capped`]: the outcome, peak RSS (MiB) and stderr.
fn capped(args: &[&str]) -> (Outcome, u64, String) {
    let r = run_capped(args);
    (r.outcome, r.peak_rss_kib / 1024, r.stderr_tail)
}

/// Exit 2 and one error line holding every one of `needles`.
fn assert_clean_error(args: &[&str], needles: &[&str]) {
    let (code, _, err) = scllm(args);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(code, 2, "{args:?}: exit {code}, stderr: {err}");
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{args:?}: `{n}` not in {}", lines[0]);
    }
}

fn replace<T: hdf5::H5Type>(g: &hdf5::Group, name: &str, data: &[T]) {
    g.unlink(name).unwrap();
    g.new_dataset_builder()
        .with_data(data)
        .create(name)
        .unwrap();
}

/// The fixture with its first `cell_type` category renamed to `name`.
fn first_cell_type_named(dir: &Path, name: &str) -> PathBuf {
    damaged(dir, |h| {
        let g = h.group("obs/cell_type").unwrap();
        let cats: Vec<VarLenUnicode> = g.dataset("categories").unwrap().read_raw().unwrap();
        let mut cats: Vec<String> = cats.iter().map(|c| c.as_str().to_string()).collect();
        cats[0] = name.into();
        let cats: Vec<VarLenUnicode> = cats.iter().map(|c| c.parse().unwrap()).collect();
        replace(&g, "categories", &cats);
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn categorical_codes_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = damaged(dir.path(), |h| {
        let g = h.group("obs/cell_type").unwrap();
        let mut codes: Vec<i8> = g.dataset("codes").unwrap().read_raw().unwrap();
        codes[3] = 99;
        replace(&g, "codes", &codes);
    });
    assert_clean_error(
        &["inspect", s(&f)],
        &["obs/cell_type", "categorical code 99"],
    );
    // the output of a command never carries the bad codes on: it cannot start
    let out = dir.path().join("out.h5ad");
    assert_clean_error(&["preprocess", s(&f), "-o", s(&out), "--log1p"], &["99"]);
    assert!(!out.exists());
}

#[test]
fn a_non_monotonic_csr_indptr_is_refused_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let f = damaged(dir.path(), |h| {
        let g = h.group("X").unwrap();
        let mut p: Vec<i64> = g.dataset("indptr").unwrap().read_raw().unwrap();
        p.swap(4, 5);
        replace(&g, "indptr", &p);
    });
    let out = dir.path().join("out.h5ad");
    assert_clean_error(&["inspect", s(&f)], &["X", "indptr"]);
    assert_clean_error(
        &["preprocess", s(&f), "-o", s(&out), "--log1p"],
        &["indptr"],
    );
    assert_clean_error(
        &["preprocess", s(&f), "-o", s(&out), "--log1p", "--stream"],
        &["indptr"],
    );
    let model = fixtures().join("cellplm");
    assert_clean_error(
        &["embed", s(&f), "--model", s(&model), "-o", s(&out)],
        &["indptr"],
    );
    assert!(!out.exists());
}

#[test]
fn a_negative_column_index_is_refused_not_read_as_column_0() {
    let dir = tempfile::tempdir().unwrap();
    let f = damaged(dir.path(), |h| {
        let g = h.group("X").unwrap();
        let mut j: Vec<i32> = g.dataset("indices").unwrap().read_raw().unwrap();
        j[10] = -1;
        replace(&g, "indices", &j);
    });
    let out = dir.path().join("out.h5ad");
    assert_clean_error(&["inspect", s(&f)], &["X/indices", "negative index -1"]);
    assert_clean_error(
        &["preprocess", s(&f), "-o", s(&out), "--stream"],
        &["column index -1"],
    );
}

#[test]
fn names_that_are_not_utf8_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = first_cell_type_named(dir.path(), "ZZ\u{e9}ZZ");
    // HDF5 writes what it is given: make the é (C3 A9) an invalid sequence in the file itself
    let mut bytes = std::fs::read(&f).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"ZZ\xc3\xa9ZZ")
        .expect("the marker is stored as written");
    bytes[at + 2] = 0xff;
    std::fs::write(&f, bytes).unwrap();
    assert_clean_error(&["inspect", s(&f)], &["obs/cell_type", "not valid UTF-8"]);
}

#[test]
fn a_dense_x_whose_shape_disagrees_with_obs_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = damaged(dir.path(), |h| {
        h.unlink("X").unwrap();
        // 8·10⁶ rows where obs has 36, chunked and never written: claims 5.8 GB, stores nothing
        let ds = h
            .new_dataset::<f32>()
            .chunk((1, 180))
            .shape((8_000_000, 180))
            .create("X")
            .unwrap();
        let enc: VarLenUnicode = "array".parse().unwrap();
        ds.new_attr::<VarLenUnicode>()
            .create("encoding-type")
            .unwrap()
            .write_scalar(&enc)
            .unwrap();
    });
    let (outcome, rss, err) = capped(&["inspect", s(&f)]);
    assert_eq!(outcome, Outcome::CleanError, "{err}");
    // read whole or (this large) in blocks: either reader names the shape against obs
    assert!(
        err.contains("8000000x180 does not match the 36x180")
            || err.contains("8000000x180 does not match the 36 cells"),
        "{err}"
    );
    assert!(rss < 256, "{rss} MiB");
}

#[test]
fn a_three_dimensional_x_is_named_not_called_missing() {
    let dir = tempfile::tempdir().unwrap();
    let f = damaged(dir.path(), |h| {
        h.unlink("X").unwrap();
        h.new_dataset_builder()
            .with_data(&ndarray::Array3::<f32>::zeros((36, 180, 2)))
            .create("X")
            .unwrap();
    });
    assert_clean_error(&["inspect", s(&f)], &["X", "3-D array"]);
}

#[test]
fn sparse_parts_that_claim_more_than_the_file_stores_are_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // an unwritten, chunked indptr of 10⁹ entries (8 GB claimed, nothing stored)
    let f = damaged(dir.path(), |h| {
        let g = h.group("X").unwrap();
        g.unlink("indptr").unwrap();
        g.new_dataset::<i64>()
            .chunk(4096)
            .shape(1_000_000_000)
            .create("indptr")
            .unwrap();
    });
    for args in [
        vec!["inspect", s(&f)],
        vec![
            "preprocess",
            s(&f),
            "-o",
            "/nonexistent/out.h5ad",
            "--stream",
        ],
    ] {
        let (outcome, rss, err) = capped(&args);
        assert_eq!(outcome, Outcome::CleanError, "{args:?}: {err}");
        assert!(
            err.contains("X/indptr") && err.contains("claims 1000000000 values"),
            "{err}"
        );
        assert!(rss < 256, "{args:?}: {rss} MiB");
    }
    // a data array claiming 4·10⁹ stored values
    let g = damaged(dir.path(), |h| {
        let x = h.group("X").unwrap();
        x.unlink("data").unwrap();
        x.new_dataset::<f32>()
            .chunk(1 << 16)
            .shape(4_000_000_000usize)
            .create("data")
            .unwrap();
    });
    let (outcome, rss, err) = capped(&["inspect", s(&g)]);
    assert_eq!(outcome, Outcome::CleanError, "{err}");
    assert!(
        err.contains("X/data") && err.contains("claims 4000000000 values"),
        "{err}"
    );
    assert!(rss < 256, "{rss} MiB");
}

#[test]
fn configurations_larger_than_their_weights_are_refused_before_allocation() {
    for (key, value) in [("embsize", 100_000), ("nlayers", 100_000)] {
        let dir = tempfile::tempdir().unwrap();
        for name in ["args.json", "vocab.json", "best_model.pt"] {
            copy(&format!("scgpt/small/{name}"), dir.path());
        }
        let args = dir.path().join("args.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&args).unwrap()).unwrap();
        v[key] = value.into();
        std::fs::write(&args, v.to_string()).unwrap();
        let (outcome, rss, err) = capped(&["convert", "--model", s(dir.path())]);
        assert_eq!(outcome, Outcome::CleanError, "{key}: {err}");
        assert!(err.contains("does not belong to these weights"), "{err}");
        assert!(rss < 256, "{key}: {rss} MiB");
    }
}

#[test]
fn a_dropout_outside_0_1_is_a_config_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = fixtures().join("geneformer/v2");
    for e in std::fs::read_dir(&v2).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let cfg = dir.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["attention_probs_dropout_prob"] = 4294967296.1.into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_clean_error(
        &["convert", "--model", s(dir.path())],
        &["config.json", "attention_probs_dropout_prob", "[0, 1)"],
    );
}

/// A scGPT folder whose weights are safetensors with one NaN in `encoder.embedding.weight`.
fn nan_weights(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir(&model).unwrap();
    for name in ["args.json", "vocab.json"] {
        std::fs::copy(fixtures().join("scgpt/small").join(name), model.join(name)).unwrap();
    }
    let st = model.join("model.safetensors");
    let small = fixtures().join("scgpt/small");
    let (code, _, err) = scllm(&["convert", "--model", s(&small), "-o", s(&st)]);
    assert_eq!(code, 0, "{err}");
    let mut bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let off = header["encoder.embedding.weight"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    bytes[8 + n + off..8 + n + off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&st, bytes).unwrap();
    model
}

#[test]
fn a_nan_weight_is_refused_instead_of_giving_nan_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let model = nan_weights(dir.path());
    let cells = fixtures().join("data/pbmc3k_300.h5ad");
    let out = dir.path().join("out.h5ad");
    assert_clean_error(
        &["embed", s(&cells), "--model", s(&model), "-o", s(&out)],
        &["model.safetensors", "encoder.embedding.weight", "NaN"],
    );
    assert!(!out.exists());
}

#[test]
fn knn_refuses_nan_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let f = damaged(dir.path(), |h| {
        let mut e = vec![0.5f32; 36 * 4];
        e[7] = f32::NAN;
        let g = h.group("obsm").unwrap();
        g.new_dataset_builder()
            .with_data(&ndarray::Array2::from_shape_vec((36, 4), e).unwrap())
            .create("X_emb")
            .unwrap();
    });
    let out = dir.path().join("out.h5ad");
    // the damaged file is query and reference: the query's NaN is what must be refused
    assert_clean_error(
        &[
            "baseline",
            "knn",
            s(&f),
            "--train",
            s(&f),
            "--label",
            "cell_type",
            "--use-rep",
            "X_emb",
            "-o",
            s(&out),
        ],
        &["obsm['X_emb']", "NaN"],
    );
    assert!(!out.exists());
}

#[test]
fn inspect_never_calls_nan_data_raw_counts() {
    let (code, out, err) = scllm(&["inspect", s(&fixtures().join("bad/nan.h5ad"))]);
    assert_eq!(code, 0, "{err}");
    let x = out
        .lines()
        .find(|l| l.trim_start().starts_with("X:"))
        .unwrap();
    assert!(x.contains("invalid: 1 NaN or infinite"), "{x}");
    assert!(!x.contains("— raw counts"), "{x}");
}

#[test]
fn escape_sequences_in_labels_are_shown_not_sent_to_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let f = first_cell_type_named(dir.path(), "\u{1b}]0;pwned\u{7}\u{1b}[31mB cells");
    let (code, out, err) = scllm(&["inspect", s(&f), "--label", "cell_type"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\u{1b}[31mB cells"), "{out}");
    // and in an error message that quotes the label
    let (_, _, err) = scllm(&["inspect", s(&f), "--label", "\u{1b}[2Jnope"]);
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn a_closed_pipe_ends_inspect_quietly() {
    let f = fixtures().join("data/kang2018_pbmc_400.h5ad");
    // `true` exits at once: every write of scllm's meets a closed pipe
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in 1 2 3 4 5; do '{}' inspect --json '{}' | true; done",
            env!("CARGO_BIN_EXE_scllm"),
            f.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "{err}");
}

#[test]
fn text_inputs_never_point_at_a_format_flag_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("table.csv");
    std::fs::write(&csv, "not,an\nhdf5").unwrap();
    // commands that read .h5ad only: the message says how to convert, with real flags
    let (code, _, err) = scllm(&[
        "evaluate-embedding",
        s(&csv),
        "--use-rep",
        "X_pca",
        "--label",
        "l",
        "--batch",
        "b",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("--format"), "{err}");
    let (code, _, err) = scllm(&[
        "evaluate-embedding",
        s(dir.path()),
        "--use-rep",
        "X_pca",
        "--label",
        "l",
        "--batch",
        "b",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("--format") && err.contains("scllm preprocess"),
        "{err}"
    );
}

#[test]
fn hdf5_library_loops_end_in_a_clean_error() {
    // libhdf5 itself spins (global heap) or allocates without end (local heap free list) on
    // these; the watchdog must end both with exit 2, quickly and in bounded memory
    for (name, needle, most_s) in [
        ("bad/hdf5_heap_loop.h5ad", "did not finish reading", 20.0),
        ("bad/hdf5_free_list_loop.h5ad", "grew the process", 5.0),
    ] {
        let f = fixtures().join(name);
        let r = run_capped(&["inspect", s(&f)]);
        assert_eq!(r.outcome, Outcome::CleanError, "{name}: {}", r.stderr_tail);
        assert!(r.stderr_tail.contains(needle), "{name}: {}", r.stderr_tail);
        assert!(r.stderr_tail.contains(name), "{}", r.stderr_tail);
        assert!(r.seconds < most_s, "{name}: {} s", r.seconds);
        assert!(r.peak_rss_kib < 400 << 10, "{name}: {} KiB", r.peak_rss_kib);
    }
}
