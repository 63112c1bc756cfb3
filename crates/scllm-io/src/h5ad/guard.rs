//! Limits on what HDF5 may spend reading a damaged file: a deadline on variable-length string
//! reads and a memory budget on reading a file's structure.
//!
//! Two library loops that no input check can reach (both in HDF5 1.10 and 2.2; HDFGroup/hdf5):
//! - `H5HG__cache_heap_deserialize` (src/H5HGcache.c) advances by the stored size of a global
//!   heap's object 0: when that is 0 it never advances, and reading any variable-length string
//!   kept there spins at 100 % CPU forever;
//! - `H5HL__fl_deserialize` (src/H5HLcache.c) follows a local heap's free list without a cycle
//!   check: a damaged list allocates 32 bytes per lap until the machine runs out (24 GB seen from
//!   a 116 kB file).
//!
//! Nothing outside the library can stop a thread inside it, so the command-line tool arms a
//! watchdog thread: past a deadline, or when the process grows by more than the structure's
//! budget (256 MiB plus four times what the datasets read so far claim), it prints one error
//! line naming the file and ends the process with exit code 2. Library users (the Python
//! binding) keep the default, no watchdog, since ending the process would end their interpreter.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// What reading a file's structure (names, attributes, small arrays) may grow the process by,
/// besides the datasets it reads.
const STRUCTURE_BUDGET: u64 = 256 << 20;
/// How often the watchdog looks at the process's size while a budget is armed.
const POLL: Duration = Duration::from_millis(10);

#[derive(Default)]
struct State {
    deadlines: BTreeMap<u64, (Instant, String)>,
    /// Nesting depth, resident bytes when armed, bytes allowed on top, the file.
    memory: Option<(usize, u64, u64, String)>,
}

struct Watch {
    state: Mutex<State>,
    wake: Condvar,
}

fn watch() -> &'static Watch {
    static WATCH: OnceLock<Watch> = OnceLock::new();
    WATCH.get_or_init(|| {
        std::thread::Builder::new()
            .name("scllm-hdf5-watchdog".into())
            .spawn(run)
            .expect("spawning the HDF5 watchdog thread");
        Watch {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }
    })
}

fn lock(w: &Watch) -> MutexGuard<'_, State> {
    w.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Arm the watchdog on HDF5 reads of damaged files: past a deadline or a memory budget it
/// prints one error line and ends the process with exit code 2. For programs that own their
/// process (the CLI).
pub fn exit_on_damage() {
    ENABLED.store(true, Ordering::SeqCst);
}

thread_local! {
    /// The file this thread opened last, for the message.
    static FILE: RefCell<PathBuf> = const { RefCell::new(PathBuf::new()) };
}

fn file() -> String {
    FILE.with(|f| f.borrow().display().to_string())
}

/// Record the file this thread is about to read (named in the messages).
pub(crate) fn reading(path: &Path) {
    FILE.with(|f| *f.borrow_mut() = path.to_path_buf());
}

/// Read `n` variable-length strings with `read` under a deadline (10 s + 20 µs a string, where
/// a healthy file reads millions a second).
pub(crate) fn strings<T>(n: usize, read: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return read();
    }
    let budget = Duration::from_secs(10) + Duration::from_micros(20) * n.min(1 << 26) as u32;
    let message = format!(
        "{}: HDF5 did not finish reading {n} strings in {} s: a global heap of the file is damaged (HDF5 loops on it); re-create or re-download the file",
        file(),
        budget.as_secs()
    );
    let w = watch();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(w)
        .deadlines
        .insert(id, (Instant::now() + budget, message));
    w.wake.notify_all();
    let out = read();
    lock(w).deadlines.remove(&id);
    out
}

/// Run `read` (the reading of a file's structure and of the datasets it names) under the memory
/// budget; nested calls share the outer one.
pub(crate) fn structure<T>(read: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return read();
    }
    let w = watch();
    {
        let mut s = lock(w);
        match &mut s.memory {
            Some((depth, ..)) => *depth += 1,
            None => s.memory = Some((1, resident_bytes(), STRUCTURE_BUDGET, file())),
        }
    }
    w.wake.notify_all();
    let out = read();
    let mut s = lock(w);
    if let Some((depth, ..)) = &mut s.memory {
        *depth -= 1;
        if *depth == 0 {
            s.memory = None;
        }
    }
    out
}

/// Widen the armed budget for a dataset about to be read that claims `bytes` (its values and
/// their conversion).
pub(crate) fn allow(bytes: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some((_, _, allowed, _)) = &mut lock(watch()).memory {
        *allowed = allowed.saturating_add(bytes.saturating_mul(4));
    }
}

/// The process's resident size (Linux `/proc/self/statm`; 0 elsewhere, which disarms the
/// budget's check in effect only where it cannot be measured).
fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn die(message: &str) -> ! {
    eprintln!("error: {message}");
    // SAFETY: _exit ends the process at once; the stuck thread holds HDF5's lock, so the
    // library's own exit handlers (which take it) must not run.
    #[cfg(unix)]
    unsafe {
        libc::_exit(2)
    };
    #[cfg(not(unix))]
    std::process::exit(2);
}

fn run() {
    let w = watch();
    let mut s = lock(w);
    loop {
        let now = Instant::now();
        if let Some((t, message)) = s.deadlines.values().min_by_key(|(t, _)| *t) {
            if now >= *t {
                die(message);
            }
        }
        if let Some((_, start, allowed, file)) = &s.memory {
            let grown = resident_bytes().saturating_sub(*start);
            if grown > *allowed {
                die(&format!(
                    "{file}: HDF5 grew the process by {} MiB reading the file's structure, more than its datasets claim: the file is damaged (HDF5 loops on it); re-create or re-download the file",
                    grown >> 20
                ));
            }
        }
        let next = s.deadlines.values().map(|(t, _)| *t).min();
        let wait = match (next, s.memory.is_some()) {
            (_, true) => Some(POLL),
            (Some(t), false) => Some(t.saturating_duration_since(now)),
            (None, false) => None,
        };
        s = match wait {
            Some(d) => {
                w.wake
                    .wait_timeout(s, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => w.wake.wait(s).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
