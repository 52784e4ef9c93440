//! The content-addressed artifact store: `<results>/.cache/<key>/`.
//!
//! A stage writes into a fresh temporary directory and, once complete, renames it to its key:
//! an artifact directory either exists whole (with its `stage.json` manifest) or not at all.
//! Checkpoints of an interrupted stage live in `.partial-<key>/` until the stage completes.
//!
//! Several processes may share one cache (two recipes sharing a base spirit, Slurm jobs on a
//! shared filesystem, a user rerunning while jobs run): a worker computes a key only while it
//! holds that key's lock ([`Cache::lock`]: `flock` on `.lock-<key>`, which works on local disks
//! and on NFS mounted with `local_lock=none`). The loser waits, then finds the winner's sealed
//! artifact. Under the lock, a `.tmp-<key>-*` directory can only be a dead attempt's leftover (a
//! live attempt holds the lock), so it is removed; another key's attempts are never touched.

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

    /// Take `key`'s lock, waiting for the worker that holds it (`waiting` is called once, before
    /// blocking, when the lock is taken). Released when the returned guard drops (or the process
    /// dies: the kernel drops its locks).
    pub fn lock(&self, key: &str, waiting: &dyn Fn()) -> io::Result<KeyLock> {
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(KeyLock { _file: file })
    }

    /// Take `key`'s lock if no other worker holds it; `None` when one does.
    pub fn try_lock(&self, key: &str) -> io::Result<Option<KeyLock>> {
        let file = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn lock_file(&self, key: &str) -> io::Result<std::fs::File> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.root.join(format!(".lock-{key}")))
    }

    /// Remove the temporary directories of earlier attempts at `key` (call with its lock held).
    pub fn clean_stale(&self, key: &str) -> io::Result<usize> {
        let prefix = format!(".tmp-{key}-");
        let mut removed = 0;
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_dir_all(e.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
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

/// A held per-key lock (see [`Cache::lock`]).
#[derive(Debug)]
pub struct KeyLock {
    _file: std::fs::File,
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

    #[test]
    fn a_key_lock_excludes_other_holders_and_stale_attempts_are_cleaned() {
        let root = std::env::temp_dir().join(format!("rc-lock-{}", std::process::id()));
        let cache = Cache::new(&root);
        let held = cache.lock("k", &|| panic!("free lock")).unwrap();
        // Another open file description (as another process has) cannot take it meanwhile.
        let other = std::fs::OpenOptions::new().write(true).open(cache.root().join(".lock-k")).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        // Another key is independent.
        drop(cache.lock("j", &|| panic!("free lock")).unwrap());
        std::fs::create_dir_all(cache.root().join(".tmp-k-123")).unwrap();
        std::fs::create_dir_all(cache.root().join(".tmp-j-123")).unwrap();
        assert_eq!(cache.clean_stale("k").unwrap(), 1);
        assert!(cache.root().join(".tmp-j-123").exists(), "another key's attempt is left alone");
        drop(held);
        assert!(other.try_lock().is_ok(), "released on drop");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
