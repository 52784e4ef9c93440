//! The content-addressed artifact store: `<results>/.cache/<key>/`.
//!
//! A stage writes into a fresh temporary directory and, once complete, renames it to its key:
//! an artifact directory either exists whole (with its `stage.json` manifest) or not at all.
//! Checkpoints of an interrupted stage live in `.partial-<key>/` until the stage completes.

use std::io;
use std::path::{Path, PathBuf};

use crate::plan::CacheStatus;

/// Name of the manifest written last into every completed artifact directory.
pub const MANIFEST: &str = "stage.json";

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(results_dir: &Path) -> Self {
        Self { root: results_dir.join(".cache") }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the completed artifact of `key` lives.
    pub fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Persistent scratch space (checkpoints) of a stage that has not completed yet.
    pub fn scratch(&self, key: &str) -> PathBuf {
        self.root.join(format!(".partial-{key}"))
    }

    pub fn status(&self, key: &str) -> CacheStatus {
        if self.dir(key).join(MANIFEST).is_file() {
            CacheStatus::Cached
        } else if self.scratch(key).is_dir() {
            CacheStatus::Partial
        } else {
            CacheStatus::Missing
        }
    }

    /// A fresh, empty temporary directory for a stage's output.
    pub fn begin(&self, key: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.root)?;
        let tmp = self.root.join(format!(".tmp-{key}-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(tmp)
    }

    /// Seal `tmp` with its manifest and move it to its key; drops the stage's scratch space.
    pub fn commit(&self, key: &str, tmp: &Path, manifest: &serde_json::Value) -> io::Result<PathBuf> {
        let text = serde_json::to_string_pretty(manifest).map_err(io::Error::other)?;
        std::fs::write(tmp.join(MANIFEST), text + "\n")?;
        let dest = self.dir(key);
        if dest.exists() {
            // Same key, same content: an earlier or concurrent run got there first.
            std::fs::remove_dir_all(tmp)?;
        } else {
            std::fs::rename(tmp, &dest)?;
        }
        let scratch = self.scratch(key);
        if scratch.exists() {
            std::fs::remove_dir_all(scratch)?;
        }
        Ok(dest)
    }

    /// Drop a failed attempt's temporary directory (its scratch space is kept for resuming).
    pub fn abort(&self, tmp: &Path) {
        let _ = std::fs::remove_dir_all(tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_all_or_nothing() {
        let root = std::env::temp_dir().join(format!("rc-cache-{}", std::process::id()));
        let cache = Cache::new(&root);
        assert_eq!(cache.status("k1"), CacheStatus::Missing);
        std::fs::create_dir_all(cache.scratch("k1")).unwrap();
        assert_eq!(cache.status("k1"), CacheStatus::Partial);
        let tmp = cache.begin("k1").unwrap();
        std::fs::write(tmp.join("a.txt"), "x").unwrap();
        assert_eq!(cache.status("k1"), CacheStatus::Partial, "an unsealed attempt is not an artifact");
        let dest = cache.commit("k1", &tmp, &serde_json::json!({"id": "s"})).unwrap();
        assert_eq!(cache.status("k1"), CacheStatus::Cached);
        assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "x");
        assert!(!tmp.exists() && !cache.scratch("k1").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
