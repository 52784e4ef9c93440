//! Process memory between stages: a run executes many model stages in one process, and each frees
//! its model and activations when it ends. glibc's allocator keeps much of that freed memory
//! (arena fragments, and blocks under its dynamic mmap threshold, which rises to 32 MB after the
//! first large free) instead of returning it to the system, so a long run's resident set grew by
//! gigabytes per training stage: the CPU flagship reached 24 GB and swapped. After every stage the
//! runner hands the freed pages back ([`release_freed`]) and logs the stage's peak resident set
//! ([`StagePeak`]), so a recipe's memory needs can be read off its run log.

/// Return the freed pages of every allocator arena to the system (glibc's `malloc_trim`; a no-op
/// on other C libraries, whose allocators differ).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only releases free memory of glibc's own arenas; it reads no
        // caller-provided memory and is thread-safe (it takes each arena's lock).
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The peak resident set of the process over one stage, where the system reports it (Linux).
pub struct StagePeak;

impl StagePeak {
    /// Start measuring: resets the process's peak resident set (`VmHWM`) where the kernel allows.
    pub fn start() -> StagePeak {
        // Writing 5 to clear_refs resets VmHWM to the current resident set (Linux >= 4.0); where
        // that is refused, the peak reported is the process's so far.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        StagePeak
    }

    /// The peak since [`StagePeak::start`], in bytes; `None` off Linux.
    pub fn bytes(&self) -> Option<u64> {
        status_kib("VmHWM:").map(|k| k * 1024)
    }
}

/// The current resident set of the process, in bytes; `None` off Linux.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// `bytes` as GB with two decimals, for the run log.
pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}
