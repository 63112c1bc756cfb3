//! Seeded mutation fuzzing of every reader behind the CLI (issue 19): `.h5ad` (in memory and
//! streamed), 10x folders, CSV, PyTorch pickles (`.pt`/`.pth`/`.bin`/`.ckpt`, Geneformer's
//! dictionary pickles), safetensors and the JSON/text files of model folders. Each mutant runs the
//! real binary in a child process with a 1 GiB address-space cap and a deadline
//! (`scllm_fuzz::run_case`); the CLI's contract is exit 0, or exit 2 with one `error:` line.
//! A crash (panic or signal), an allocation past the cap or a hang fails the test; mutants that
//! did it are kept under `target/fuzz-findings/` to reproduce.
//!
//! CI runs a fixed seed and `SCLLM_FUZZ_CASES` (default 300) mutants per reader; the long
//! campaign (`bench/fuzz_campaign.sh`) sets it to 10,000 and `SCLLM_FUZZ_REPORT` to a JSON path.
//! `SCLLM_FUZZ_BIN` runs another binary (the campaign's "before" column); `SCLLM_FUZZ_ONLY`
//! picks readers by name; `SCLLM_FUZZ_CASE` runs one case and keeps its mutant.
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::fixtures;
use scllm_fuzz::{run_case, Limits, Mutator, Tally};

/// One reader: the fixture files it mutates (one per case, in turn) and the command that reads
/// them. With `folder`, every case gets a copy of that fixture folder (links to its files) with
/// one file replaced; without, the mutant is a lone file.
struct Target {
    reader: &'static str,
    folder: Option<&'static str>,
    files: &'static [&'static str],
    /// The file is gzip: mutate what it holds, then compress again (mutating the compressed
    /// bytes would only test the CRC check).
    gzip: bool,
    /// The command's arguments given the case folder and the mutated file.
    args: fn(&Path, &Path) -> Vec<String>,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn inspect(_: &Path, f: &Path) -> Vec<String> {
    vec!["inspect".into(), s(f)]
}

fn inspect_folder(dir: &Path, _: &Path) -> Vec<String> {
    vec!["inspect".into(), s(dir)]
}

fn convert(dir: &Path, _: &Path) -> Vec<String> {
    vec!["convert".into(), "--model".into(), s(dir)]
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            reader: "h5ad (anndata, strings and categoricals)",
            folder: None,
            files: &["data/anndata_features.h5ad"],
            gzip: false,
            args: inspect,
        },
        Target {
            reader: "h5ad (gzip datasets)",
            folder: None,
            files: &["data/anndata_features_gzip.h5ad"],
            gzip: false,
            args: inspect,
        },
        Target {
            reader: "h5ad (sparse X)",
            folder: None,
            files: &["data/pbmc3k_10x_scanpy.h5ad"],
            gzip: false,
            args: inspect,
        },
        Target {
            reader: "h5ad (preprocess --stream)",
            folder: None,
            files: &["cellplm/cells.h5ad"],
            gzip: false,
            args: |dir, f| {
                let out = dir.join("out.h5ad");
                [
                    "preprocess",
                    &s(f),
                    "-o",
                    &s(&out),
                    "--stream",
                    "--block-cells",
                    "10",
                    "--normalize-total",
                    "--log1p",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Target {
            reader: "10x mtx folder",
            folder: Some("data/pbmc3k_10x"),
            files: &["matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"],
            gzip: true,
            args: inspect_folder,
        },
        Target {
            reader: "CSV table",
            folder: None,
            files: &["data/pbmc3k_40.csv"],
            gzip: false,
            args: inspect,
        },
        Target {
            reader: "scGPT .pt pickle",
            folder: Some("scgpt/small"),
            files: &["best_model.pt"],
            gzip: false,
            args: convert,
        },
        Target {
            reader: "scGPT args.json / vocab.json",
            folder: Some("scgpt/small"),
            files: &["args.json", "vocab.json"],
            gzip: false,
            args: convert,
        },
        Target {
            reader: "safetensors",
            folder: Some("geneformer/v2"),
            files: &["model.safetensors"],
            gzip: false,
            args: convert,
        },
        Target {
            reader: "Geneformer config.json / dictionary pickle",
            folder: Some("geneformer/v2"),
            files: &["config.json", "token_dictionary_gc104M.pkl"],
            gzip: false,
            args: convert,
        },
        Target {
            reader: "scBERT .pth / config / gene panel",
            folder: Some("scbert/model"),
            files: &["scbert_best.pth", "scbert_config.json", "gene_panel.txt"],
            gzip: false,
            args: convert,
        },
        Target {
            reader: "CellPLM .ckpt / config.json",
            folder: Some("cellplm"),
            files: &["tiny.best.ckpt", "tiny.config.json"],
            gzip: false,
            args: |dir, _| {
                let cells = fixtures().join("cellplm/cells.h5ad");
                let out = dir.join("out.h5ad");
                ["embed", &s(&cells), "--model", &s(dir), "-o", &s(&out)]
                    .map(String::from)
                    .to_vec()
            },
        },
    ]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Lay out case `i` of `t` under `dir`: returns the mutated file's path.
fn prepare(t: &Target, seeds: &[Vec<u8>], i: usize, seed: u64, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let k = i % t.files.len();
    let name = Path::new(t.files[k]).file_name().unwrap();
    if let Some(folder) = t.folder {
        for e in std::fs::read_dir(fixtures().join(folder)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() && e.file_name() != name {
                std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
            }
        }
    }
    // one stream per (reader, case): any case is reproduced from the seed and its index
    let mut m = Mutator::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let bytes = if t.gzip {
        gzip(&m.mutate(&seeds[k]))
    } else {
        m.mutate(&seeds[k])
    };
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn fuzz(t: &Target, cases: usize, seed: u64, bin: &Path, work: &Path, keep: &Path) -> Tally {
    let seeds: Vec<Vec<u8>> = t
        .files
        .iter()
        .map(|f| {
            let p = fixtures().join(t.folder.unwrap_or("")).join(f);
            let b = std::fs::read(&p).unwrap();
            if t.gzip {
                gunzip(&b)
            } else {
                b
            }
        })
        .collect();
    let reader_seed = t
        .reader
        .bytes()
        .fold(seed, |h, b| h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b));
    // every seed is under 2.2 MB and every clean run stays under 512 MiB of address space;
    // the HDF5 hang guard gives up after 10 s
    let limits = Limits {
        memory_bytes: 1 << 30,
        timeout: Duration::from_secs(30),
    };
    // SCLLM_FUZZ_CASE=i runs case i alone and keeps its mutant whatever happens (to reproduce)
    let only_case = std::env::var("SCLLM_FUZZ_CASE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let (first, cases) = only_case.map_or((0, cases), |i| (i, i + 1));
    let next = AtomicUsize::new(first);
    let tally = Mutex::new(Tally::new(t.reader));
    std::thread::scope(|sc| {
        for w in 0..2 {
            let (next, tally, seeds) = (&next, &tally, &seeds);
            sc.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cases {
                    break;
                }
                let dir = work.join(format!("w{w}-{i}"));
                let file = prepare(t, seeds, i, reader_seed, &dir);
                let r = run_case(
                    Command::new(bin).args((t.args)(&dir, &file)),
                    limits,
                    &work.join(format!("stderr-{w}")),
                )
                .unwrap();
                if r.outcome.is_finding() || only_case.is_some() {
                    let slug: String = t
                        .reader
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    std::fs::create_dir_all(keep).unwrap();
                    let name = file.file_name().unwrap().to_string_lossy().into_owned();
                    std::fs::copy(&file, keep.join(format!("{slug}-{i}-{name}"))).unwrap();
                }
                std::fs::remove_dir_all(&dir).ok();
                tally.lock().unwrap().add(i, &r);
            });
        }
    });
    tally.into_inner().unwrap()
}

#[test]
fn mutated_inputs_give_errors_never_crashes_blow_ups_or_hangs() {
    let cases = env_usize("SCLLM_FUZZ_CASES", 300);
    let seed = env_usize("SCLLM_FUZZ_SEED", 19) as u64;
    let bin = std::env::var_os("SCLLM_FUZZ_BIN")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scllm")));
    let only = std::env::var("SCLLM_FUZZ_ONLY").unwrap_or_default();
    let work = tempfile::tempdir().unwrap();
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings");
    let mut rows = Vec::new();
    for t in targets() {
        if !only.is_empty() && !t.reader.contains(&only) {
            continue;
        }
        let tally = fuzz(&t, cases, seed, &bin, work.path(), &keep);
        println!("{}", tally.markdown_row());
        rows.push(tally);
    }
    println!(
        "| reader | cases | accepted | clean errors | other errors | crashes | over memory | hangs | peak RSS (MiB) | seconds |"
    );
    for r in &rows {
        println!("{}", r.markdown_row());
    }
    if let Some(path) = std::env::var_os("SCLLM_FUZZ_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    }
    let findings: Vec<String> = rows
        .iter()
        .filter(|r| r.findings() > 0)
        .map(|r| {
            format!(
                "{}: {} crashes, {} over memory, {} hangs; first: {:?}",
                r.reader,
                r.crash,
                r.over_memory,
                r.hang,
                r.examples.first()
            )
        })
        .collect();
    assert!(
        findings.is_empty(),
        "findings (mutants kept in {}):\n{}",
        keep.display(),
        findings.join("\n")
    );
}
