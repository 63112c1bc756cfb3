//! A request to stop long work at the next batch (the Python package's Ctrl-C, which cannot
//! reach a thread busy in Rust): the embedding loops and the fine-tuning loops check it between
//! batches and stop with [`ModelError::Interrupted`]. Process-wide: a request stops every such
//! loop running in the process; the requester clears it once they have stopped.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{ModelError, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Ask the running loops to stop.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Withdraw the request (after the loops stopped, before new work).
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// `Err(Interrupted)` when a stop was requested.
pub fn check() -> Result<()> {
    if REQUESTED.load(Ordering::Relaxed) {
        Err(ModelError::Interrupted)
    } else {
        Ok(())
    }
}
