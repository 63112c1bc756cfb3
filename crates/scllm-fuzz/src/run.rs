//! One fuzz case: a command run in a child process with an address-space cap and a deadline,
//! its exit sorted into an [`Outcome`] by the CLI's contract (exit 0; or exit 2 with a last
//! stderr line `error: ...`; anything else is a finding).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What a child may use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Address-space cap (`RLIMIT_AS`): an allocation past it fails and Rust aborts with
    /// "memory allocation of N bytes failed", which [`Outcome::OverMemory`] reports. A run whose
    /// resident peak passes half of it is reported so too, even if it ended well: it came close.
    pub memory_bytes: u64,
    /// Wall-clock deadline; a child still running is killed and reported as [`Outcome::Hang`].
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            timeout: Duration::from_secs(30),
        }
    }
}

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit 0: the input was read (a mutant can still be a valid file).
    Accepted,
    /// Exit 2 with a one-line `error: ...`: bad input reported as bad input.
    CleanError,
    /// Another non-zero exit with an `error:` line: scllm reported a failure of its own (exit 1)
    /// where the input was at fault. Not a crash, but not the contract either.
    OtherError,
    /// A panic, a signal (SIGSEGV, SIGABRT, ...) or an exit without an error line.
    Crash,
    /// An allocation failed under [`Limits::memory_bytes`].
    OverMemory,
    /// Still running at [`Limits::timeout`].
    Hang,
}

impl Outcome {
    /// Whether this outcome breaks the promise "an error, never a crash, a blow-up or a hang".
    pub fn is_finding(self) -> bool {
        matches!(self, Outcome::Crash | Outcome::OverMemory | Outcome::Hang)
    }
}

/// One run: its outcome, peak resident memory, and the end of what it printed on stderr.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub outcome: Outcome,
    pub peak_rss_kib: u64,
    pub seconds: f64,
    pub stderr_tail: String,
}

/// Run `cmd` (stdout discarded, stderr kept in `stderr_file`) under `limits`.
#[cfg(unix)]
pub fn run_case(
    cmd: &mut Command,
    limits: Limits,
    stderr_file: &Path,
) -> std::io::Result<CaseResult> {
    use std::os::unix::process::CommandExt;

    let err = File::create(stderr_file)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    let cap = limits.memory_bytes;
    // SAFETY: setrlimit is async-signal-safe and touches only the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: cap as libc::rlim_t,
                rlim_max: cap as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // wait4, not Child::wait: it also reports the child's peak RSS
        // SAFETY: pid is our own child, the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if start.elapsed() > limits.timeout && !timed_out {
            timed_out = true;
            // SAFETY: signalling our own, not yet reaped, child
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let seconds = start.elapsed().as_secs_f64();
    let stderr = std::fs::read(stderr_file).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let peak_rss_kib = usage.ru_maxrss.max(0) as u64;
    let outcome = if timed_out {
        Outcome::Hang
    } else if peak_rss_kib * 1024 > limits.memory_bytes / 2 {
        Outcome::OverMemory
    } else {
        classify(
            libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            &stderr,
        )
    };
    let tail: String = {
        let chars: Vec<char> = stderr.chars().collect();
        chars[chars.len().saturating_sub(600)..].iter().collect()
    };
    Ok(CaseResult {
        outcome,
        peak_rss_kib,
        seconds,
        stderr_tail: tail,
    })
}

/// The CLI's contract applied to an exit: `code` is `None` when a signal ended the process.
pub fn classify(code: Option<i32>, stderr: &str) -> Outcome {
    if stderr.contains("memory allocation of") && stderr.contains("failed") {
        return Outcome::OverMemory;
    }
    if stderr.contains("panicked at") {
        return Outcome::Crash;
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    match code {
        Some(0) => Outcome::Accepted,
        Some(2) if last.starts_with("error: ") => Outcome::CleanError,
        Some(c) if c != 101 && last.starts_with("error: ") => Outcome::OtherError,
        _ => Outcome::Crash,
    }
}

/// Counts per outcome for one reader, peak memory, and the first findings with their case index.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    pub reader: String,
    pub cases: usize,
    pub accepted: usize,
    pub clean_error: usize,
    pub other_error: usize,
    pub crash: usize,
    pub over_memory: usize,
    pub hang: usize,
    pub max_rss_kib: u64,
    /// The case that reached `max_rss_kib`.
    pub max_rss_case: usize,
    pub seconds: f64,
    /// `(case index, outcome, stderr tail)` of the first findings and other errors.
    pub examples: Vec<(usize, Outcome, String)>,
}

impl Tally {
    pub fn new(reader: &str) -> Self {
        Tally {
            reader: reader.to_string(),
            ..Tally::default()
        }
    }

    pub fn add(&mut self, index: usize, r: &CaseResult) {
        self.cases += 1;
        self.seconds += r.seconds;
        if r.peak_rss_kib > self.max_rss_kib {
            self.max_rss_kib = r.peak_rss_kib;
            self.max_rss_case = index;
        }
        let slot = match r.outcome {
            Outcome::Accepted => &mut self.accepted,
            Outcome::CleanError => &mut self.clean_error,
            Outcome::OtherError => &mut self.other_error,
            Outcome::Crash => &mut self.crash,
            Outcome::OverMemory => &mut self.over_memory,
            Outcome::Hang => &mut self.hang,
        };
        *slot += 1;
        if (r.outcome.is_finding() || r.outcome == Outcome::OtherError) && self.examples.len() < 8 {
            self.examples
                .push((index, r.outcome, r.stderr_tail.clone()));
        }
    }

    /// Crashes, memory blow-ups and hangs.
    pub fn findings(&self) -> usize {
        self.crash + self.over_memory + self.hang
    }

    /// One table row: reader, cases, accepted, clean errors, other errors, crashes, over memory,
    /// hangs, peak RSS (MiB), seconds.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
            self.reader,
            self.cases,
            self.accepted,
            self.clean_error,
            self.other_error,
            self.crash,
            self.over_memory,
            self.hang,
            self.max_rss_kib as f64 / 1024.0,
            self.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_contract_sorts_exits() {
        assert_eq!(classify(Some(0), ""), Outcome::Accepted);
        assert_eq!(
            classify(Some(2), "warn\nerror: f.h5ad: X: bad\n"),
            Outcome::CleanError
        );
        assert_eq!(classify(Some(1), "error: internal\n"), Outcome::OtherError);
        assert_eq!(
            classify(Some(101), "thread 'main' panicked at src/x.rs:1:1\n"),
            Outcome::Crash
        );
        assert_eq!(classify(Some(2), "no error line\n"), Outcome::Crash);
        assert_eq!(classify(None, ""), Outcome::Crash);
        assert_eq!(
            classify(None, "memory allocation of 8000000000 bytes failed\n"),
            Outcome::OverMemory
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_child_is_capped_timed_and_sorted() {
        let dir = std::env::temp_dir().join(format!("scllm-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = dir.join("stderr");
        let fast = Limits {
            memory_bytes: 1 << 30,
            timeout: Duration::from_millis(300),
        };
        let ok = run_case(Command::new("sh").args(["-c", "exit 0"]), fast, &err).unwrap();
        assert_eq!(ok.outcome, Outcome::Accepted);
        let bad = run_case(
            Command::new("sh").args(["-c", "echo 'error: x.h5ad: bad' >&2; exit 2"]),
            fast,
            &err,
        )
        .unwrap();
        assert_eq!(bad.outcome, Outcome::CleanError);
        assert!(bad.stderr_tail.contains("x.h5ad"));
        let segv = run_case(Command::new("sh").args(["-c", "kill -SEGV $$"]), fast, &err).unwrap();
        assert_eq!(segv.outcome, Outcome::Crash);
        let hang = run_case(Command::new("sleep").arg("5"), fast, &err).unwrap();
        assert_eq!(hang.outcome, Outcome::Hang);
        assert!(hang.seconds < 4.0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
