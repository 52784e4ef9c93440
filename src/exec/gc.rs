//! `reccocktail gc`: the artifact cache's entries that no given recipe's plan uses, listed with
//! their sizes and, on request, removed.
//!
//! Sweeps and edited recipes leave artifacts behind (merged adapters, evaluations, checkpoints of
//! stages never finished). What is kept is every stage key of the plans of the recipes named; a
//! recipe whose backbone `dtype` is `auto` keeps the keys of both precisions, because `auto` is
//! decided per machine (a shared cache may hold a bf16 machine's artifacts and an fp32 one's).
//! Fetched assets are kept unless asked for, since getting them again needs the network.
//!
//! An entry is a key's sealed artifact directory, its checkpoints (`.partial-<key>`) and dead
//! attempts' temporary directories (`.tmp-<key>-<pid>`). One is removed only while its key's lock
//! is held ([`Cache::lock`]): a key a worker is computing is reported as in use and left alone.
//! Lock files stay (empty files: removing one under a waiting worker would let two workers hold
//! "the" lock of one key).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cache::{Cache, MANIFEST};
use crate::plan::{self, PlanError, StageKind};
use crate::recipe::types::Dtype;
use crate::recipe::ResolvedRecipe;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cleaning {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// One key's files in the cache that no kept plan uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub key: String,
    /// The stage id and kind its manifest names (`None` when it has no sealed artifact).
    pub stage: Option<String>,
    pub kind: Option<StageKind>,
    /// `cached`, `partial` (checkpoints of an unfinished stage) or `temporary` (dead attempts),
    /// each that is present.
    pub states: Vec<&'static str>,
    pub bytes: u64,
    #[serde(skip)]
    paths: Vec<PathBuf>,
}

/// The stage keys of `recipes`' plans (both precisions where `dtype = "auto"`).
pub fn keep_keys(recipes: &[ResolvedRecipe]) -> Result<BTreeSet<String>, PlanError> {
    let mut keys = BTreeSet::new();
    for r in recipes {
        let variants = if r.backbone.dtype == Dtype::Auto { vec![Dtype::Bf16, Dtype::F32] } else { vec![r.backbone.dtype] };
        for dtype in variants {
            let mut r = r.clone();
            r.backbone.dtype = dtype;
            keys.extend(plan::compile(&r)?.stages.into_iter().map(|s| s.key));
        }
    }
    Ok(keys)
}

/// The cache's entries whose key is not in `keep`, by key; fetched assets only with `assets`.
pub fn unused(cache: &Cache, keep: &BTreeSet<String>, assets: bool) -> io::Result<Vec<Entry>> {
    let mut found: std::collections::BTreeMap<String, Entry> = Default::default();
    let entries = match std::fs::read_dir(cache.root()) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some((key, state)) = classify(&name) else { continue };
        if keep.contains(key) || !e.file_type()?.is_dir() {
            continue;
        }
        // A worker may seal (rename) or clean a directory while it is read: skip what vanished.
        let bytes = match size(&e.path()) {
            Ok(b) => b,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let entry = found.entry(key.to_string()).or_insert_with(|| Entry { key: key.to_string(), stage: None, kind: None, states: Vec::new(), bytes: 0, paths: Vec::new() });
        if state == "cached"
            && let Ok(text) = std::fs::read_to_string(e.path().join(MANIFEST)) {
            let m: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            entry.stage = m["id"].as_str().map(str::to_string);
            entry.kind = serde_json::from_value(m["kind"].clone()).ok();
        }
        if !entry.states.contains(&state) {
            entry.states.push(state);
        }
        entry.bytes += bytes;
        entry.paths.push(e.path());
    }
    Ok(found.into_values().filter(|e| assets || e.kind != Some(StageKind::Fetch)).map(|mut e| {
        e.states.sort_unstable();
        e.paths.sort();
        e
    }).collect())
}

/// The key and state an entry of the cache directory names, if it is one of a key's directories.
fn classify(name: &str) -> Option<(&str, &'static str)> {
    let is_key = |k: &str| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit());
    if is_key(name) {
        return Some((name, "cached"));
    }
    if let Some(k) = name.strip_prefix(".partial-").filter(|k| is_key(k)) {
        return Some((k, "partial"));
    }
    let k = name.strip_prefix(".tmp-")?.get(..16)?;
    (is_key(k) && name.as_bytes().get(5 + 16) == Some(&b'-')).then_some((k, "temporary"))
}

/// Bytes of the files under `path` (symbolic links not followed).
fn size(path: &Path) -> io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for e in std::fs::read_dir(path)? {
        total += size(&e?.path())?;
    }
    Ok(total)
}

/// What [`remove`] did.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub entries: usize,
    pub bytes: u64,
    /// Keys a worker holds the lock of: left alone.
    pub in_use: Vec<String>,
}

/// Remove `entries`, each under its key's lock; keys whose lock another process holds are skipped.
pub fn remove(cache: &Cache, entries: &[Entry]) -> io::Result<Removed> {
    let mut out = Removed::default();
    for e in entries {
        let Some(_lock) = cache.try_lock(&e.key)? else {
            out.in_use.push(e.key.clone());
            continue;
        };
        for p in &e.paths {
            match std::fs::remove_dir_all(p) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        out.entries += 1;
        out.bytes += e.bytes;
    }
    Ok(out)
}

/// `reccocktail gc`: list the entries `recipes` do not use and, with `delete`, remove them;
/// returns what to print.
pub fn collect(cache: &Cache, recipes: &[ResolvedRecipe], delete: bool, assets: bool) -> Result<String, GcError> {
    let keep = keep_keys(recipes)?;
    let io = |source| GcError::Io { path: cache.root().to_path_buf(), source };
    let entries = unused(cache, &keep, assets).map_err(io)?;
    let mut text = render(&entries, keep.len(), recipes.len());
    if !delete {
        if !entries.is_empty() {
            text.push_str("nothing removed: `--delete` removes them\n");
        }
        return Ok(text);
    }
    let removed = remove(cache, &entries).map_err(io)?;
    text.push_str(&format!("removed {} entr{} ({})\n", removed.entries, if removed.entries == 1 { "y" } else { "ies" }, human(removed.bytes)));
    if !removed.in_use.is_empty() {
        text.push_str(&format!("left alone, a worker holds them: {}\n", removed.in_use.join(", ")));
    }
    Ok(text)
}

/// Bytes in a short human form (MB with one decimal below 10 GB).
fn human(bytes: u64) -> String {
    if bytes >= 10_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// The listing `gc` prints.
pub fn render(entries: &[Entry], kept: usize, recipes: usize) -> String {
    let mut s = format!("{kept} stage keys of {recipes} recipe{} kept\n", if recipes == 1 { "" } else { "s" });
    if entries.is_empty() {
        s.push_str("no unused entries in the cache\n");
        return s;
    }
    for e in entries {
        s.push_str(&format!("  {}  {:<44} {:<18} {:>10}\n", e.key, e.stage.as_deref().unwrap_or("-"), e.states.join("+"), human(e.bytes)));
    }
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    s.push_str(&format!("{} unused entr{}, {}\n", entries.len(), if entries.len() == 1 { "y" } else { "ies" }, human(total)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_cache_directory_are_classified_by_key() {
        let k = "0123456789abcdef";
        assert_eq!(classify(k), Some((k, "cached")));
        assert_eq!(classify(&format!(".partial-{k}")), Some((k, "partial")));
        assert_eq!(classify(&format!(".tmp-{k}-4242")), Some((k, "temporary")));
        assert_eq!(classify(&format!(".lock-{k}")), None);
        assert_eq!(classify("0123456789abcdeg"), None);
        assert_eq!(classify(".tmp-0123-1"), None);
        assert_eq!(classify("README.md"), None);
    }

    #[test]
    fn unused_entries_are_listed_and_removed_unless_locked_or_kept() {
        let root = std::env::temp_dir().join(format!("reccocktail-gc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = Cache::new(&root);
        let (kept, old, busy, fetched) = ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc", "dddddddddddddddd");
        for (key, kind) in [(kept, "merge"), (old, "merge"), (busy, "evaluate"), (fetched, "fetch")] {
            let d = cache.dir(key);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(MANIFEST), format!("{{\"id\": \"{kind}:x\", \"kind\": \"{kind}\"}}")).unwrap();
            std::fs::write(d.join("data.bin"), vec![0u8; 1000]).unwrap();
        }
        std::fs::create_dir_all(cache.scratch(old).join("checkpoint")).unwrap();
        std::fs::write(cache.scratch(old).join("checkpoint/state"), vec![0u8; 500]).unwrap();
        std::fs::create_dir_all(cache.root().join(format!(".tmp-{old}-77"))).unwrap();
        let keep: BTreeSet<String> = [kept.to_string()].into();

        let found = unused(&cache, &keep, false).unwrap();
        let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, [old, busy], "the kept key and the fetched asset are not listed");
        assert_eq!(found[0].states, ["cached", "partial", "temporary"]);
        assert_eq!(found[0].stage.as_deref(), Some("merge:x"));
        assert!(found[0].bytes >= 1500, "{}", found[0].bytes);
        assert_eq!(unused(&cache, &keep, true).unwrap().len(), 3, "with assets");

        let held = cache.lock(busy, &|| {}).unwrap();
        let removed = remove(&cache, &found).unwrap();
        assert_eq!((removed.entries, removed.in_use.clone()), (1, vec![busy.to_string()]));
        assert!(!cache.dir(old).exists() && !cache.scratch(old).exists() && !cache.root().join(format!(".tmp-{old}-77")).exists());
        assert!(cache.dir(busy).exists() && cache.dir(kept).exists() && cache.dir(fetched).exists());
        drop(held);
        assert_eq!(remove(&cache, &unused(&cache, &keep, false).unwrap()).unwrap().entries, 1);
        assert!(!cache.dir(busy).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
