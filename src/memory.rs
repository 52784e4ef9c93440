//! Process memory: what the kernel reports of this process (`/proc/self/status`), and giving freed
//! memory back between stages. A run executes many model stages in one process, and each frees
//! its model and activations when it ends. glibc's allocator keeps much of that freed memory
//! (arena fragments, and blocks under its dynamic mmap threshold, which rises to 32 MB after the
//! first large free) instead of returning it to the system, so every later stage of a run started
//! from the largest peak so far: 6.6 GB held after the bf16 quickstart's training, and the CPU
//! flagship's entropy merge ran out of memory on top of the 24 GB its ingredient's training had
//! peaked at. After every stage the runner hands the freed pages back ([`release_freed`]) and logs
//! the stage's peak resident set ([`StagePeak`]), so a recipe's memory needs can be read off its
//! run log.
//!
//! Large blocks are kept for reuse inside the process ([`reuse_large_blocks`], called once at
//! start): glibc serves every block over 32 MB with a fresh mmap and unmaps it when freed, so each
//! of a training step's big tensors (attention scores of 58 MB at batch 8 x 448) came back as new
//! pages the kernel had to zero. That zeroing was 44% of a bf16 training step's samples.

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

/// Keep large freed blocks in the allocator for reuse instead of unmapping them (glibc: no mmap
/// for large blocks, no automatic trimming of the heap's top; [`release_freed`] still gives free
/// pages back between stages). Call once, before any other thread starts. Skipped when the user
/// set one of glibc's `MALLOC_MMAP_MAX_`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`
/// (their choice wins) or `RECCOCKTAIL_SYSTEM_MALLOC` (the allocator as it comes). Returns whether
/// the setting was applied.
pub fn reuse_large_blocks() -> bool {
    let user_set = ["MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "RECCOCKTAIL_SYSTEM_MALLOC"].iter().any(|v| std::env::var_os(v).is_some());
    if user_set {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_MAX: std::ffi::c_int = -4;
        // SAFETY: mallopt only changes glibc's allocator parameters; called before other threads
        // allocate. A trim threshold of -1 turns automatic trimming off (mallopt(3)): the heap's top
        // is given back by `release_freed`.
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The peak resident set of the process over one stage, where the system reports it (Linux).
pub struct StagePeak;

impl StagePeak {
    /// Start measuring: resets the process's peak resident set where the kernel allows
    /// ([`reset_peak`]; otherwise the peak reported is the process's so far).
    pub fn start() -> StagePeak {
        reset_peak();
        StagePeak
    }

    /// The peak since [`StagePeak::start`], in bytes; `None` off Linux. Read it before
    /// [`release_freed`]: the kernel's peak does not count pages given back with madvise.
    pub fn bytes(&self) -> Option<u64> {
        peak_bytes()
    }
}

/// Reset the process's peak resident set (`VmHWM`) to its current one: writing 5 to
/// `/proc/self/clear_refs` (Linux >= 4.0). False where that is refused or unavailable.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The current resident set of the process, in bytes; `None` off Linux.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// The peak resident set of the process (since it started or since [`reset_peak`]), in bytes;
/// `None` off Linux.
pub fn peak_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// A `/proc/self/status` memory field (`VmHWM:`, `VmRSS:`), in kB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `bytes` as GB with two decimals, for logs.
pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// `bytes` in MiB for tables; NaN where the system reports nothing.
pub fn mib(bytes: Option<u64>) -> f64 {
    bytes.map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0))
}
