//! Long work run so that Ctrl-C and a progress bar still work: the work runs on its own thread
//! while this (the interpreter's) thread waits with the GIL released, wakes every 100 ms to
//! report progress and to let Python see signals, and on Ctrl-C asks the work to stop at its
//! next batch (`scllm_models::interrupt`) and raises `KeyboardInterrupt` once it has.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Progress of the work: a counter it advances and the total it counts to, reported to a
/// Python callable `(done, total)`.
pub(crate) struct Progress<'py> {
    pub callback: Bound<'py, PyAny>,
    pub done: Arc<AtomicU64>,
    pub total: u64,
}

/// Run `work` on a new thread; see the module's note.
pub(crate) fn run<T: Send + 'static>(
    py: Python<'_>,
    progress: Option<&Progress<'_>>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    scllm_models::interrupt::clear();
    let handle = std::thread::Builder::new()
        .name("scllm-work".into())
        .spawn(work)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    let mut shown = u64::MAX;
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
            let done = p.done.load(Ordering::Relaxed);
            if done != shown {
                shown = done;
                if let Err(e) = p.callback.call1((done, p.total)) {
                    return Err(stop(&handle, e));
                }
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
