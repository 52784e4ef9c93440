//! A run directory: `<results>/<experiment>/<run-id>/` with the resolved recipe, the plan, the
//! environment and the log of one `run`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct RunDir {
    pub path: PathBuf,
    log: Mutex<File>,
}

impl RunDir {
    /// Create `<results>/<experiment>/<timestamp>-<hash8>/` (suffixed if it already exists).
    pub fn create(results: &Path, experiment: &str, recipe_hash: &str) -> io::Result<RunDir> {
        let stamp = utc_stamp(SystemTime::now());
        let base = results.join(experiment);
        let short = &recipe_hash[..recipe_hash.len().min(8)];
        let mut path = base.join(format!("{stamp}-{short}"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = base.join(format!("{stamp}-{short}-{n}"));
        }
        std::fs::create_dir_all(&path)?;
        let log = File::create(path.join("run.log"))?;
        Ok(RunDir { path, log: Mutex::new(log) })
    }

    /// An existing run directory (created if missing), its `run.log` appended to.
    pub fn open(path: &Path) -> io::Result<RunDir> {
        std::fs::create_dir_all(path)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(path.join("run.log"))?;
        Ok(RunDir { path: path.to_path_buf(), log: Mutex::new(log) })
    }

    pub fn write_json(&self, name: &str, value: &impl serde::Serialize) -> io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
        std::fs::write(self.path.join(name), text + "\n")
    }

    /// Append a line to `run.log`, prefixed with the UTC time.
    pub fn log(&self, line: &str) {
        if let Ok(mut f) = self.log.lock() {
            let _ = writeln!(f, "{} {line}", utc_stamp(SystemTime::now()));
        }
    }
}

/// `20261125T213243Z` for a point in time.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::civil::civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Facts about the machine and build, recorded with every run.
pub fn environment(runtime: &crate::backend::Runtime, seed: u64, threads: Option<u32>, precision: crate::model::precision::Precision) -> serde_json::Value {
    serde_json::json!({
        "reccocktail": env!("CARGO_PKG_VERSION"),
        // The commit the binary was built from (see build.rs), not the one of the directory the
        // run was started in: a binary built elsewhere, or from uncommitted code, says so.
        "git_commit": env!("RECCOCKTAIL_BUILD_COMMIT"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        // Kernels may round differently on another processor (AMX, AVX-512): say which it was.
        "cpu_model": crate::cpuinfo::model_name(),
        // Vendor, family, model and stepping: virtual machines often name only the vendor's line
        // ("AMD EPYC"), while speeds differ by generation (AMD family 25 is Zen 3/4, whose AVX-512
        // runs on half-width units; family 26, Zen 5, on full-width ones: bf16 products gain less
        // on the first; BENCHMARKS.md).
        "cpu_signature": crate::cpuinfo::signature(),
        // The processor's bf16 matrix units, which `[backbone] dtype = "auto"` looks for.
        "cpu_bf16_units": crate::model::precision::cpu_bf16_flags(),
        // The backbone's frozen weights' precision in this run (`auto` resolved).
        "dtype": precision.dtype,
        // Attention's products' dtype (`[backbone] attention`, as it applies to that dtype).
        "attention": precision.attention,
        "backend": runtime.backend,
        "device": runtime.device_spec.to_string(),
        "compiled_backends": crate::backend::compiled_backends(),
        "threads": threads,
        "seed": seed,
        "started": utc_stamp(SystemTime::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_469_563)), "20261123T213243Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
    }
}
