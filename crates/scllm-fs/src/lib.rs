//! The one rule by which scllm writes an output file: write a temporary file in the same folder
//! (renaming never crosses a file system there), flush it to disk, then rename it over the
//! target. A reader sees the old file or the new one, never half a file; a failed write leaves
//! the old file and removes the temporary one.
//!
//! The temporary file is `.{name}.{pid}-{start}-{host}.tmp` next to `name`: hidden, matched by
//! the repository's `*.tmp` ignore pattern, and distinct per process so two runs writing the same
//! output do not write into one temporary file. `start` is the process's start time (Linux: clock
//! ticks since boot, `/proc/PID/stat` field 22) and `host` this machine's short host name; see
//! [`stale`] for why.
//!
//! A process killed outright (`kill -9`, out of memory, a lost node) cannot remove its temporary
//! file. So the first time a process asks for a temporary file in a folder, it removes the
//! temporary files there whose writer is gone ([`stale::remove_stale_temp_files`]) and says so on
//! stderr.
//!
//! * [`write_atomic`]: bytes already in memory.
//! * [`temp_path_for`], [`finish`] and [`discard`]: for writers that stream into the temporary
//!   path themselves (HDF5 files written element by element).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub mod stale;

/// The temporary file next to `path` that a writer fills before [`finish`] renames it. Removes
/// the stale temporary files of dead processes in that folder first (once per folder and process).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    stale::sweep_once(folder_of(path));
    path.with_file_name(stale::temp_name(&name))
}

/// The folder a path's temporary file goes to (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Ends a write into `tmp` (from [`temp_path_for`]): when `written` is `Ok`, flushes `tmp` to
/// disk (a deferred write error, e.g. a full disk or quota, surfaces here) and renames it over
/// `path`; otherwise, or when the flush or the rename fails, removes `tmp`. A failed flush or
/// rename is turned into the writer's own error by `io_failed`, so each crate keeps its messages.
pub fn finish<E>(
    tmp: &Path,
    path: &Path,
    written: Result<(), E>,
    io_failed: impl FnOnce(io::Error) -> E,
) -> Result<(), E> {
    match written {
        Ok(()) => {
            let done = std::fs::File::open(tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(tmp, path));
            match done {
                Ok(()) => {
                    sync_folder(folder_of(path));
                    Ok(())
                }
                Err(e) => {
                    discard(tmp);
                    Err(io_failed(e))
                }
            }
        }
        Err(e) => {
            discard(tmp);
            Err(e)
        }
    }
}

/// Makes the rename itself durable. Best effort: some file systems refuse to sync a folder, and
/// the output is complete either way.
fn sync_folder(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes an unfinished temporary file. Errors are ignored: the file may never have been
/// created, and the error that made the write fail is the one worth reporting.
pub fn discard(tmp: &Path) {
    let _ = std::fs::remove_file(tmp);
}

/// Writes `bytes` to `path` atomically (see the crate documentation). The folder must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path_for(path);
    // every step checked: `std::fs::write` would drop the error of the final close
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.flush()
    });
    finish(&tmp, path, written, |e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scllm-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn temp_path_is_hidden_next_to_the_target_and_ignored_as_tmp() {
        let t = temp_path_for(Path::new("out/report.json"));
        assert_eq!(t.parent(), Some(Path::new("out")));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".report.json."), "{name}");
        assert!(name.ends_with(".tmp"), "{name}");
        // the pid and the start time, so a later run can tell a dead writer's file
        assert!(
            name.contains(&format!(".{}-", std::process::id())),
            "{name}"
        );
        // a bare file name stays in the current folder
        assert_eq!(
            temp_path_for(Path::new("x.png")).parent(),
            Some(Path::new(""))
        );
    }

    #[test]
    fn replaces_an_existing_file() {
        let dir = scratch("replace");
        let p = dir.join("a.txt");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert!(temp_files(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_no_temp_file() {
        let dir = scratch("fail");
        let p = dir.join("a.txt");
        std::fs::write(&p, b"old").unwrap();
        let tmp = temp_path_for(&p);
        std::fs::write(&tmp, b"half").unwrap();
        let r: Result<(), String> = finish(&tmp, &p, Err("disk full".into()), |e| e.to_string());
        assert_eq!(r.unwrap_err(), "disk full");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(temp_files(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_keeps_the_old_file_and_no_temp_file() {
        let dir = scratch("rename");
        // a non-empty folder cannot be replaced by a file
        let p = dir.join("taken");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"old").unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        assert_eq!(std::fs::read(p.join("inside")).unwrap(), b"old");
        assert!(temp_files(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error_and_leaves_nothing() {
        let dir = scratch("missing");
        let p = dir.join("no-such-folder").join("a.txt");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!p.exists());
        assert!(temp_files(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
