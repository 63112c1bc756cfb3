//! Process-wide allocator setting for tensor work.
//!
//! glibc's malloc serves every block over 128 KiB (rising to 32 MiB with its dynamic threshold)
//! with a fresh `mmap` and returns it with `munmap` on free. A training or embedding step
//! allocates and frees tensors of tens to hundreds of MiB many times over, so each step paid the
//! kernel to map, zero and fault in the same memory again: perf showed ~18 % of a fine-tuning
//! step in page faults. Keeping freed memory in the heap for reuse cut a small-config step by
//! ~20 % (bench/RESULTS.md) at a few percent more peak RSS.

/// Serve large allocations from the heap and keep freed heap memory for reuse instead of
/// handing it back to the kernel after every tensor. Call once, early in `main`. No effect (and
/// no harm) on platforms other than Linux with glibc.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 1 GiB: larger blocks (a whole dataset's matrix) still get their own mapping.
        const LIMIT: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes malloc's tuning parameters; it is safe to call at any
        // time, and a rejected value leaves the defaults in place.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, LIMIT);
            libc::mallopt(libc::M_TRIM_THRESHOLD, LIMIT);
        }
    }
}
