//! Keeping the process's memory bounded after bursts of password hashing.
//!
//! Each argon2id hash allocates one 19 MiB block. glibc serves blocks of
//! 128 KiB or more with their own `mmap`, returned to the system when freed,
//! but only until the first such block is freed: from then on it raises that
//! threshold to the freed block's size (up to 32 MiB), so the next 19 MiB
//! blocks come from the heap of whichever thread asked, and small allocations
//! placed around them keep the heap from shrinking. Measured with
//! `tests/bench/burst.py`: 200 logins in a burst took the local server from
//! 67 MiB to over 2.5 GiB, never given back. With the threshold fixed, the
//! same burst peaks at about 70 MiB and falls back to about 35 MiB
//! (docs/benchmarks/burst.md).

/// Blocks of this size or more are mapped on their own and returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAPPED_FROM_BYTES: libc::c_int = 1024 * 1024;

/// Fixes glibc's mmap threshold, which also stops it from moving. Idempotent;
/// does nothing on other C libraries. Returns whether the setting took.
pub fn return_large_blocks_when_freed() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes an allocator tunable; glibc allows
        // it at any time, from any thread. It returns 1 on success.
        #[allow(unsafe_code)]
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MAPPED_FROM_BYTES) };
        set == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
