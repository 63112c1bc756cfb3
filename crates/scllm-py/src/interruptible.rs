//! Long work run so that Ctrl-C and a progress bar still work: the work runs on its own thread
//! while this (the interpreter's) thread waits with the GIL released, wakes every 100 ms to
//! report progress and to let Python see signals, and on Ctrl-C asks the work to stop at its
//! next batch (`scllm_models::interrupt`) and raises `KeyboardInterrupt` once it has.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Progress of the work, reported to a Python callable.
pub(crate) enum Progress<'py> {
    /// A counter the work advances and the total it counts to: `callback(done, total)`.
    Counter {
        callback: Bound<'py, PyAny>,
        done: Arc<AtomicU64>,
        total: u64,
    },
    /// Whatever loop the work runs now (`scllm_eval::progress::followed`):
    /// `callback(done, total, label)`, a new label starting a new bar.
    Followed { callback: Bound<'py, PyAny> },
}

impl Progress<'_> {
    /// What to report now, if it changed since `shown`.
    fn report(&self, shown: &mut Option<(String, u64, u64)>) -> PyResult<()> {
        let now = match self {
            Progress::Counter { done, total, .. } => {
                (String::new(), done.load(Ordering::Relaxed), *total)
            }
            Progress::Followed { .. } => match scllm_eval::progress::followed() {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        if shown.as_ref() == Some(&now) {
            return Ok(());
        }
        match self {
            Progress::Counter { callback, .. } => callback.call1((now.1, now.2))?,
            Progress::Followed { callback } => callback.call1((now.1, now.2, now.0.clone()))?,
        };
        *shown = Some(now);
        Ok(())
    }
}

/// Run `work` on a new thread; see the module's note.
pub(crate) fn run<T: Send + 'static>(
    py: Python<'_>,
    progress: Option<&Progress<'_>>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    scllm_models::interrupt::clear();
    scllm_eval::progress::unfollow();
    let handle = std::thread::Builder::new()
        .name("scllm-work".into())
        .spawn(work)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    let mut shown = None;
    let stop = |h: &std::thread::JoinHandle<T>, e: PyErr| -> PyErr {
        scllm_models::interrupt::request();
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        scllm_models::interrupt::clear();
        e
    };
    loop {
        let finished = py.detach(|| {
            for _ in 0..10 {
                if handle.is_finished() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            handle.is_finished()
        });
        if let Some(p) = progress {
            if let Err(e) = p.report(&mut shown) {
                return Err(stop(&handle, e));
            }
        }
        if finished {
            break;
        }
        if let Err(e) = py.check_signals() {
            return Err(stop(&handle, e));
        }
    }
    handle.join().map_err(|_| {
        PyRuntimeError::new_err("scllm's work thread panicked (a bug: please report it)")
    })
}
