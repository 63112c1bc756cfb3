//! An HDF5 file scllm holds open is not inherited by a process started meanwhile: an inherited
//! descriptor keeps libhdf5's lock alive in the child, and the next open of that file (by `scllm`
//! itself, say) fails with "unable to lock file".

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

use scllm_io::backed::CsrStreamWriter;
use scllm_io::{BackedAnnData, Compression};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/data/kang2018_pbmc_400.h5ad")
}

/// The files a child process holds open right after it starts (its own `ls` aside).
fn inherited_by_child() -> Vec<PathBuf> {
    let out = Command::new("sh")
        // a descriptor that closes while listed (the glob's own) makes readlink fail: ignored
        .args(["-c", "readlink /proc/$$/fd/*; exit 0"])
        .output()
        .expect("runs sh");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

fn holds(files: &[PathBuf], path: &Path) -> bool {
    let name = path.file_name().unwrap();
    files.iter().any(|f| f.file_name() == Some(name))
}

#[test]
fn open_files_do_not_leak_into_child_processes() {
    let src = fixture();
    let reader = BackedAnnData::open(&src, "X").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("streamed_output.h5ad");
    let writer = CsrStreamWriter::create(&out, reader.shape().1, Compression::None).unwrap();
    // The writer works on a temporary name beside `out` until it finishes.
    let open_now: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(open_now.len(), 1, "{open_now:?}");
    // The test process itself holds both (so the check below can see them).
    let ours: Vec<PathBuf> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .collect();
    assert!(holds(&ours, &src), "{ours:?}");
    assert!(holds(&ours, &open_now[0]), "{ours:?}");
    let child = inherited_by_child();
    assert!(!holds(&child, &src), "the reader's file leaked: {child:?}");
    assert!(
        !holds(&child, &open_now[0]),
        "the writer's file leaked: {child:?}"
    );
    drop(writer);
    drop(reader);
}
