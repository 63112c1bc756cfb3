//! The compute device and CPU threads of a run.

use crate::bad;
use scllm_models::{Device, DeviceKind};

/// `cpu` (or `cuda` in builds with the feature), with `threads` kernel threads when given.
pub fn compute_device(name: &str, threads: Option<usize>) -> anyhow::Result<Device> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(bad("--threads must be at least 1"));
        }
        scllm_models::set_threads(n)?;
    }
    let kind: DeviceKind = name.parse().map_err(bad)?;
    Ok(scllm_models::device(kind)?)
}
