//! Peak memory of one method, read from Linux's `/proc/self/status`.
//!
//! What is measured: the process's resident-set high-water mark (`VmHWM`) while the method ran.
//! Before each method the mark is reset to the current RSS by writing `5` to
//! `/proc/self/clear_refs` (Linux ≥ 4.0); after it, `VmHWM` is read. The number therefore
//! includes everything already resident (the loaded train and query data, the binary), so
//! the report also gives `rss_before_bytes` and the increase `peak - before`. When the reset is
//! not possible (not Linux, or not permitted) `peak_reset` is false and the number is the
//! process's peak since it started, an upper bound. GPU memory is not included.

/// One `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
pub fn status_bytes(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            let rest = rest.strip_prefix(':')?.trim();
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            return Some(kb * 1024);
        }
    }
    None
}

/// Reset the high-water mark to the current RSS; true when it worked.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Memory readings around one method.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MemoryReading {
    pub rss_before_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    /// True when the high-water mark was reset before the method (see the module docs).
    pub peak_reset: bool,
}

impl MemoryReading {
    pub fn start() -> MemoryReading {
        let peak_reset = reset_peak();
        MemoryReading {
            rss_before_bytes: status_bytes("VmRSS"),
            peak_rss_bytes: None,
            peak_reset,
        }
    }
    pub fn finish(mut self) -> MemoryReading {
        self.peak_rss_bytes = status_bytes("VmHWM");
        self
    }
    pub fn increase_bytes(&self) -> Option<u64> {
        Some(self.peak_rss_bytes?.saturating_sub(self.rss_before_bytes?))
    }
}

/// What the memory columns mean, for the report.
pub const MEMORY_NOTE: &str = "peak memory = the process's resident-set high-water mark (VmHWM) while the method ran, after resetting it via /proc/self/clear_refs; it includes the loaded train/query data; `+x` is the increase over the RSS before the method; GPU memory not included";
