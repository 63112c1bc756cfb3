//! Temporary files left by writers that died before they could remove them.
//!
//! A temporary file's name carries its writer: `.{name}.{pid}-{start}-{host}.tmp`. It is stale
//! when it was written on this machine (`host`) and the process `pid` is gone (`kill(pid, 0)`
//! fails with `ESRCH`) or is another process that reused the number (its start time is not
//! `start`). Files of live writers, of other machines (a folder on a shared file system) and of
//! writers whose state cannot be read are left alone: removing a file being written would break
//! that run, leaving a stale one only costs disk space.
//!
//! Files named by earlier versions, `.{name}.{pid}.tmp`, carry no start time; they are removed
//! only when no process `pid` is running (a reused number keeps them).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// A temporary file whose writer is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleFile {
    pub path: PathBuf,
    pub pid: u32,
}

/// This process's part of a temporary file's name: `{pid}-{start}-{host}`.
fn own_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}-{}-{}", process_start(pid).unwrap_or(0), host())
    })
}

/// The temporary file name for the output file `name` (see [`crate::temp_path_for`]).
pub(crate) fn temp_name(name: &str) -> String {
    format!(".{name}.{}.tmp", own_tag())
}

/// The short host name, reduced to characters that keep the name parseable (no `.`).
fn host() -> String {
    let raw = host_name();
    let short = raw.split('.').next().unwrap_or("");
    let clean: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length; gethostname NUL-terminates within it
    // or truncates, and the last byte is kept 0 below in either case.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

/// When process `pid` started (Linux: clock ticks after boot), `None` when unknown.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: count from the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    // fields 3.. follow; the start time is field 22
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether a process `pid` exists (possibly one that reused the number).
#[cfg(unix)]
fn pid_exists(pid: u32) -> bool {
    // 0 and numbers past i32 are not single processes (kill(0) signals a whole group)
    let Ok(p) = i32::try_from(pid) else {
        return true;
    };
    if p <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    if unsafe { libc::kill(p, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to someone else
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn pid_exists(_pid: u32) -> bool {
    true // cannot tell: keep the file
}

/// The writer named by a temporary file's name, if it is one of ours.
#[derive(Debug, PartialEq, Eq)]
enum Writer {
    /// `{pid}-{start}-{host}`
    Tagged { pid: u32, start: u64, host: String },
    /// `{pid}` (earlier versions)
    Old { pid: u32 },
}

fn parse(file_name: &str) -> Option<Writer> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (name, tag) = inner.rsplit_once('.')?;
    if name.is_empty() {
        return None;
    }
    if tag.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Writer::Old {
            pid: tag.parse().ok()?,
        });
    }
    let mut parts = tag.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_string();
    Some(Writer::Tagged { pid, start, host })
}

/// Whether the writer of a temporary file is certainly gone.
fn is_gone(w: &Writer) -> bool {
    let me = std::process::id();
    match w {
        Writer::Old { pid } => *pid != me && !pid_exists(*pid),
        Writer::Tagged {
            pid,
            start,
            host: h,
        } => {
            if *h != host() {
                return false; // another machine's process table
            }
            if !pid_exists(*pid) {
                return true;
            }
            // the number is in use: by the writer, or by a process started since
            match process_start(*pid) {
                Some(now) => now != *start,
                None => false,
            }
        }
    }
}

/// Removes the temporary files in `dir` whose writer is gone (see the module documentation) and
/// returns them. Unreadable folders and files that cannot be removed are skipped silently.
pub fn remove_stale_temp_files(dir: &Path) -> Vec<StaleFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(w) = name.to_str().and_then(parse) else {
            continue;
        };
        // only plain files: a folder named like a temporary file is not ours to delete
        if !e.file_type().is_ok_and(|t| t.is_file()) || !is_gone(&w) {
            continue;
        }
        let path = e.path();
        // another run may have removed it meanwhile: only a removal of ours is reported
        if std::fs::remove_file(&path).is_ok() {
            let pid = match w {
                Writer::Tagged { pid, .. } | Writer::Old { pid } => pid,
            };
            removed.push(StaleFile { path, pid });
        }
    }
    removed
}

/// [`remove_stale_temp_files`] on `dir`, the first time this process writes there, saying what it
/// removed on stderr.
pub(crate) fn sweep_once(dir: &Path) {
    static SWEPT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if !swept
            .get_or_insert_with(HashSet::new)
            .insert(dir.to_path_buf())
        {
            return;
        }
    }
    for f in remove_stale_temp_files(dir) {
        eprintln!(
            "removed stale temporary file {} left by process {}, no longer running",
            f.path.display(),
            f.pid
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{scratch, temp_files};

    /// The number of a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn names_parse_back() {
        let me = std::process::id();
        let n = temp_name("a.b.h5ad");
        match parse(&n) {
            Some(Writer::Tagged { pid, host: h, .. }) => {
                assert_eq!(pid, me);
                assert_eq!(h, host());
            }
            other => panic!("{n}: {other:?}"),
        }
        assert_eq!(parse(".x.h5ad.123.tmp"), Some(Writer::Old { pid: 123 }));
        // a host name with hyphens stays whole
        assert_eq!(
            parse(".x.5-6-node-1.tmp"),
            Some(Writer::Tagged {
                pid: 5,
                start: 6,
                host: "node-1".into()
            })
        );
        for not_ours in [
            ".tmp",
            "x.1.tmp",
            "..1.tmp",
            ".x.abc.tmp",
            ".x.1-2.tmp",
            ".x.1",
        ] {
            assert_eq!(parse(not_ours), None, "{not_ours}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn removes_dead_and_reused_writers_files_only() {
        let dir = scratch("stale");
        let me = std::process::id();
        let start = process_start(me).unwrap();
        let dead = dead_pid();
        let h = host();
        let make = |n: &str| {
            std::fs::write(dir.join(n), b"x").unwrap();
            n.to_string()
        };
        let gone = make(&format!(".a.h5ad.{dead}-{start}-{h}.tmp"));
        let reused = make(&format!(".b.h5ad.{me}-{}-{h}.tmp", start + 1));
        let old_gone = make(&format!(".c.h5ad.{dead}.tmp"));
        let live = make(&temp_name("d.h5ad"));
        let old_live = make(&format!(".e.h5ad.{me}.tmp"));
        let elsewhere = make(&format!(".f.h5ad.{dead}-{start}-{h}x.tmp"));
        let unrelated = make("notes.tmp");
        std::fs::create_dir(dir.join(format!(".g.{dead}.tmp"))).unwrap();
        let mut removed: Vec<String> = remove_stale_temp_files(&dir)
            .into_iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        let mut want = vec![gone, reused, old_gone];
        want.sort();
        assert_eq!(removed, want);
        let mut left = temp_files(&dir);
        left.sort();
        let mut kept = vec![
            live,
            old_live,
            elsewhere,
            unrelated,
            format!(".g.{dead}.tmp"),
        ];
        kept.sort();
        assert_eq!(left, kept);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_sweeps_the_folder_once() {
        let dir = scratch("sweep");
        let dead = dead_pid();
        let stale = dir.join(format!(".old.h5ad.{dead}.tmp"));
        std::fs::write(&stale, b"x").unwrap();
        crate::write_atomic(&dir.join("a.txt"), b"new").unwrap();
        assert!(!stale.exists());
        // a second write in the same folder does not look again
        std::fs::write(&stale, b"x").unwrap();
        crate::write_atomic(&dir.join("b.txt"), b"new").unwrap();
        assert!(stale.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
