//! The process's allocator between runs.
//!
//! The trainyard binary allocates with jemalloc (src/main.rs) and tells it to keep the pages a
//! run frees for the run's next allocations rather than hand them back to the kernel on a
//! timer: a training loop frees and allocates the same batch-sized buffers over and over, and
//! every page handed back was faulted in again, zeroed, by the next batch. What a run kept is
//! handed back here when the run ends, so an idle worker does not hold its last job's peak.

/// Hands every page jemalloc holds free back to the kernel (`arena.<all>.purge`). Where
/// jemalloc is not the process's allocator (a test binary), its arenas are empty and this
/// does nothing.
pub fn release_freed_memory() {
    // MALLCTL_ARENAS_ALL: every arena.
    let name = c"arena.4096.purge";
    // SAFETY: a NUL-terminated name; "purge" reads and writes no value, so every pointer is
    // null and the length 0.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0)
    };
    if rc != 0 {
        tracing::debug!(rc, "jemalloc did not purge its arenas");
    }
}
