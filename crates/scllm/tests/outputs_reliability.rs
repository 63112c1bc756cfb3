//! Output files survive the run that writes them failing: a `kill -9` leaves the previous output
//! whole and a temporary file that the next run in the folder removes; a full disk is an error
//! with the previous output kept; the streamed and in-memory `preprocess` refuse the same values
//! and keep the same metadata; `finetune --resume` refuses another run's seed or split.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, s, scllm};
use scllm_io::{Column, Compressed, DataFrame, Matrix, UnsValue, Values};

fn kang() -> PathBuf {
    fixtures().join("data/kang2018_pbmc_400.h5ad")
}

/// The `.tmp` files in `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    v.sort();
    v
}

/// An `.h5ad` of `cells` cells x 100 genes, 10 counts per cell: big enough that streaming it one
/// cell per block takes seconds.
fn big_input(path: &Path, cells: usize) {
    let ng = 100;
    let (mut indptr, mut indices, mut data) = (vec![0u64], Vec::new(), Vec::new());
    for i in 0..cells {
        for k in 0..10 {
            indices.push(((i * 7 + k * 10) % ng) as u32);
            data.push((1 + (i + k) % 5) as f32);
        }
        indices[i * 10..].sort_unstable();
        indptr.push(indices.len() as u64);
    }
    let x = Matrix::Csr(Compressed {
        nrows: cells,
        ncols: ng,
        indptr,
        indices,
        data: Values::F32(data),
    });
    let obs = DataFrame::new((0..cells).map(|i| format!("c{i}")).collect());
    let var = DataFrame::new((0..ng).map(|j| format!("G{j}")).collect());
    let a = scllm_io::AnnData::new(x, obs, var);
    scllm_io::write_h5ad(&a, path, scllm_io::Compression::None).unwrap();
}

/// Start `scllm preprocess INPUT --stream -o OUT` and `kill -9` it once its temporary file is in
/// `OUT`'s folder. Returns the temporary file it left and its pid.
fn kill_streaming_preprocess(input: &Path, out: &Path) -> (PathBuf, u32) {
    let dir = out.parent().unwrap();
    let before = temp_files(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_scllm"))
        .args([
            "preprocess",
            s(input),
            "-o",
            s(out),
            "--stream",
            "--block-cells",
            "1",
            "--log1p",
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t0 = Instant::now();
    let tmp = loop {
        let now: Vec<PathBuf> = temp_files(dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if let Some(t) = now.into_iter().next() {
            break t;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("preprocess ended ({st}) before it could be killed: make the input bigger");
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no temporary file");
        std::thread::sleep(Duration::from_millis(2));
    };
    // SAFETY: signalling the child this test started, by its pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let st = child.wait().unwrap();
    assert!(st.code().is_none(), "killed by a signal, not exited: {st}");
    assert!(tmp.exists(), "a killed run cannot clean up after itself");
    (tmp, pid)
}

fn assert_says_removed(err: &str, tmp: &Path, pid: u32) {
    let want = format!(
        "removed stale temporary file {} left by process {pid}, no longer running",
        tmp.display()
    );
    assert!(err.contains(&want), "stderr lacks {want:?}: {err}");
}

#[test]
fn a_killed_preprocess_keeps_the_previous_output_and_the_next_run_removes_its_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.h5ad");
    big_input(&big, 30_000);
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let out = dir.join("pp.h5ad");
    let (code, _, err) = scllm(&["preprocess", s(&kang()), "-o", s(&out), "--log1p"]);
    assert_eq!(code, 0, "{err}");
    let previous = std::fs::read(&out).unwrap();

    let (left, pid) = kill_streaming_preprocess(&big, &out);
    // the name carries the writer's pid and start time
    let name = left.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!(".pp.h5ad.{pid}-")),
        "temporary file {name}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        previous,
        "previous output intact"
    );
    scllm_io::read_h5ad(&out).expect("previous output readable");

    // the next run writing into the folder removes it and says so
    let (code, out_text, err) = scllm(&["preprocess", s(&kang()), "-o", s(&out), "--log1p"]);
    assert_eq!(code, 0, "{err}");
    assert!(out_text.contains("wrote"), "{out_text}");
    assert_says_removed(&err, &left, pid);
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    // a run that finds nothing stale says nothing about it
    let (code, _, err) = scllm(&["preprocess", s(&kang()), "-o", s(&out), "--log1p"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("stale"), "{err}");
}

#[test]
fn convert_and_embed_stream_remove_a_dead_runs_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.h5ad");
    big_input(&big, 30_000);
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let model = fixtures().join("scgpt/small");

    let (left, pid) = kill_streaming_preprocess(&big, &dir.join("pp.h5ad"));
    let st = dir.join("model.safetensors");
    let (code, _, err) = scllm(&["convert", "--model", s(&model), "-o", s(&st)]);
    assert_eq!(code, 0, "{err}");
    assert_says_removed(&err, &left, pid);
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));

    let (left, pid) = kill_streaming_preprocess(&big, &dir.join("pp.h5ad"));
    let emb = dir.join("emb.h5ad");
    let (code, _, err) = scllm(&[
        "embed",
        "--model",
        s(&model),
        s(&fixtures().join("data/pbmc3k_300.h5ad")),
        "-o",
        s(&emb),
        "--stream",
        "--block-cells",
        "100",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_says_removed(&err, &left, pid);
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    scllm_io::read_h5ad(&emb).unwrap();
}

/// A tmpfs of `size` mounted at a new folder; unmounted on drop. `None` where mounting is not
/// permitted (not root, no mount namespace).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Fill the disk but for `free` bytes.
    fn fill_leaving(&self, free: u64) {
        let filler = self.path().join("filler");
        let _ = std::fs::remove_file(&filler);
        // SAFETY: statvfs on a NUL-terminated path into a zeroed struct it fills.
        let avail = unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            let c = std::ffi::CString::new(s(self.path())).unwrap();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
            st.f_bavail * st.f_frsize
        };
        let n = avail.saturating_sub(free) as usize;
        std::fs::write(&filler, vec![1u8; n]).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_preprocess_and_keeps_the_previous_output() {
    let Some(disk) = SmallDisk::mount("16m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk test did not run"
        );
        return;
    };
    let out = disk.path().join("pp.h5ad");
    let (code, _, err) = scllm(&["preprocess", s(&kang()), "-o", s(&out)]);
    assert_eq!(code, 0, "{err}");
    let previous = std::fs::read(&out).unwrap();
    let input = kang();
    for stream in [true, false] {
        // room for the start of the new file, not for all of it
        disk.fill_leaving(previous.len() as u64 / 2);
        let mut args = vec!["preprocess", s(&input), "-o", s(&out), "--log1p"];
        if stream {
            args.push("--stream");
        }
        let (code, stdout, err) = scllm(&args);
        assert_ne!(
            code, 0,
            "stream={stream}: a full disk is an error: {stdout}{err}"
        );
        assert!(!stdout.contains("wrote"), "stream={stream}: {stdout}");
        // (after the progress notes) one line naming the output
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(last.starts_with("error: "), "stream={stream}: {err}");
        assert!(
            last.contains(s(&out)),
            "stream={stream}: names the output: {err}"
        );
        let error_lines = err.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(error_lines, 1, "one error line: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            previous,
            "stream={stream}: previous output kept"
        );
        assert!(
            temp_files(disk.path()).is_empty(),
            "stream={stream}: {:?}",
            temp_files(disk.path())
        );
    }
    // with room again, the same run succeeds
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    let (code, _, err) = scllm(&[
        "preprocess",
        s(&kang()),
        "-o",
        s(&out),
        "--log1p",
        "--stream",
    ]);
    assert_eq!(code, 0, "{err}");
    scllm_io::read_h5ad(&out).unwrap();
}

/// kang's cells with one stored value replaced by `v`, and an `uns` entry of the user's.
fn kang_with(path: &Path, v: Option<f32>) {
    let mut a = scllm_io::read_h5ad(kang()).unwrap();
    let mut c = a.x.take().unwrap().to_csr();
    let mut data = c.data.to_f32();
    if let Some(v) = v {
        data[c.indptr[5] as usize] = v;
    }
    c.data = Values::F32(data);
    a.x = Some(Matrix::Csr(c));
    a.set_uns(
        "lab_notes",
        UnsValue::Dict(vec![
            ("protocol".into(), UnsValue::Str("10x v2".into())),
            (
                "batches".into(),
                UnsValue::Array(Column::I64(vec![1, 2, 3])),
            ),
        ]),
    );
    scllm_io::write_h5ad(&a, path, scllm_io::Compression::None).unwrap();
}

#[test]
fn streamed_preprocess_refuses_the_values_the_in_memory_path_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, f32, &[&str], &str); 5] = [
        ("nan", f32::NAN, &["--log1p"], "NaN"),
        ("inf", f32::INFINITY, &["--log1p"], "infinite"),
        ("neg_norm", -3.0, &["--normalize-total", "1e4"], "negative"),
        ("neg_log", -3.0, &["--log1p"], "negative"),
        ("neg_hvg", -3.0, &["--hvg", "100"], "negative"),
    ];
    for (name, v, flags, what) in cases {
        let input = tmp.path().join(format!("{name}.h5ad"));
        kang_with(&input, Some(v));
        let mut errs = Vec::new();
        for stream in [false, true] {
            let out = tmp.path().join(format!("{name}_{stream}_out.h5ad"));
            let mut args = vec!["preprocess", s(&input), "-o", s(&out), "--json"];
            args.extend_from_slice(flags);
            if stream {
                args.push("--stream");
            }
            let (code, stdout, err) = scllm(&args);
            assert_eq!(code, 2, "{name} stream={stream}: {stdout}{err}");
            assert!(err.contains(what), "{name} stream={stream}: {err}");
            assert!(err.contains(s(&input)), "{name}: names the file: {err}");
            assert!(!out.exists(), "{name} stream={stream}: no output");
            errs.push(err);
        }
        assert_eq!(
            errs[0], errs[1],
            "{name}: the same message in memory and streamed"
        );
    }
    assert!(temp_files(tmp.path()).is_empty());
}

#[test]
fn streamed_preprocess_keeps_uns() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.h5ad");
    kang_with(&input, None);
    let out = tmp.path().join("out.h5ad");
    let (code, _, err) = scllm(&[
        "preprocess",
        s(&input),
        "-o",
        s(&out),
        "--stream",
        "--log1p",
    ]);
    assert_eq!(code, 0, "{err}");
    let a = scllm_io::read_h5ad(&out).unwrap();
    let notes = a.uns_get("lab_notes").expect("uns['lab_notes'] kept");
    let UnsValue::Dict(d) = notes else {
        panic!("{notes:?}")
    };
    assert!(
        d.iter()
            .any(|(k, v)| k == "protocol" && matches!(v, UnsValue::Str(s) if s == "10x v2")),
        "{d:?}"
    );
    assert!(
        a.uns_get("scllm_preprocess").is_some(),
        "the steps are recorded too"
    );
    // a second run over its own output replaces the record of the steps, not duplicates it
    let out2 = tmp.path().join("out2.h5ad");
    let (code, _, err) = scllm(&["preprocess", s(&out), "-o", s(&out2), "--stream"]);
    assert_eq!(code, 0, "{err}");
    let b = scllm_io::read_h5ad(&out2).unwrap();
    assert!(b.uns_get("lab_notes").is_some());
    let Some(UnsValue::Dict(rec)) = b.uns_get("scllm_preprocess") else {
        panic!("no scllm_preprocess")
    };
    let steps = rec.iter().find(|(k, _)| k == "steps").map(|(_, v)| v);
    assert!(
        matches!(steps, Some(UnsValue::Array(c)) if c.is_empty()),
        "this run's (no) steps: {steps:?}"
    );
}

fn finetune(out: &Path, extra: &[&str]) -> (i32, String, String) {
    let (model, train) = (fixtures().join("scgpt/small"), kang());
    let mut args = vec![
        "finetune",
        "--model",
        s(&model),
        "--train",
        s(&train),
        "--label",
        "cell_type",
        "--method",
        "head",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--max-len",
        "64",
        "-o",
        s(out),
        "--json",
        "--min-cells-per-class",
        "2",
    ];
    args.extend_from_slice(extra);
    scllm(&args)
}

#[test]
fn finetune_resume_refuses_another_seed_or_split() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let (code, _, err) = finetune(&out, &["--seed", "1", "--val-fraction", "0.2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("checkpoint/state.json").is_file());

    let (code, _, err) = finetune(&out, &["--resume", "--seed", "2", "--val-fraction", "0.2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--seed") && err.contains('1') && err.contains('2'),
        "names the flag and both values: {err}"
    );
    let (code, _, err) = finetune(&out, &["--resume", "--seed", "1", "--val-fraction", "0.3"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--val-fraction") && err.contains("0.2") && err.contains("0.3"),
        "{err}"
    );
    let (code, _, err) = finetune(&out, &["--resume", "--seed", "1", "--val-by", "donor=1015"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--val-fraction 0.2") && err.contains("--val-by donor=1015"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: ") && err.contains("state.json"),
        "{err}"
    );
    // the same run resumes
    let (code, _, err) = finetune(&out, &["--resume", "--seed", "1", "--val-fraction", "0.2"]);
    assert_eq!(code, 0, "{err}");
}
