//! The one rule by which scllm writes an output file: write a temporary file in the same folder
//! (renaming never crosses a file system there), then rename it over the target. A reader sees
//! the old file or the new one, never half a file; a failed write leaves the old file and removes
//! the temporary one.
//!
//! The temporary file is `.{name}.{pid}.tmp` next to `name`: hidden, matched by the repository's
//! `*.tmp` ignore pattern, and distinct per process so two runs writing the same output do not
//! write into one temporary file.
//!
//! * [`write_atomic`]: bytes already in memory.
//! * [`temp_path_for`], [`finish`] and [`discard`]: for writers that stream into the temporary
//!   path themselves (HDF5 files written element by element).

use std::io;
use std::path::{Path, PathBuf};

/// The temporary file next to `path` that a writer fills before [`finish`] renames it.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Ends a write into `tmp` (from [`temp_path_for`]): when `written` is `Ok`, renames `tmp` over
/// `path`; otherwise, or when the rename fails, removes `tmp`. A failed rename is turned into the
/// writer's own error by `rename_failed`, so each crate keeps its messages.
pub fn finish<E>(
    tmp: &Path,
    path: &Path,
    written: Result<(), E>,
    rename_failed: impl FnOnce(io::Error) -> E,
) -> Result<(), E> {
    match written {
        Ok(()) => std::fs::rename(tmp, path).map_err(|e| {
            discard(tmp);
            rename_failed(e)
        }),
        Err(e) => {
            discard(tmp);
            Err(e)
        }
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
    let written = std::fs::write(&tmp, bytes);
    finish(&tmp, path, written, |e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
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
