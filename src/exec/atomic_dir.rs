//! Directories replaced as a whole (training checkpoints): a write goes to `<dir>.tmp` and takes
//! `dir`'s place with two renames, so a process killed at any moment leaves either the previous
//! complete directory or the new one, never a mixture.

use std::path::{Path, PathBuf};

/// Fill a fresh `<dir>.tmp` with `fill`, then put it in `dir`'s place.
pub fn write(dir: &Path, fill: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    let tmp = sibling(dir, "tmp");
    let old = sibling(dir, "old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("cannot clear", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io("cannot create", &tmp))?;
    fill(&tmp)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io("cannot clear", &old))?;
        }
        std::fs::rename(dir, &old).map_err(io("cannot move", dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io("cannot move", &tmp))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io("cannot remove", &old))?;
    }
    Ok(())
}

/// The last complete directory written to `dir`: `dir` itself, or the previous one when a write
/// was cut between its two renames. `marker` is a file every complete directory has.
pub fn latest(dir: &Path, marker: &str) -> Option<PathBuf> {
    [dir.to_path_buf(), sibling(dir, "old")].into_iter().find(|d| d.join(marker).is_file())
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "checkpoint".into());
    dir.with_file_name(format!("{name}.{suffix}"))
}

fn io(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> String {
    let (what, p) = (what.to_string(), p.to_path_buf());
    move |e| format!("{what} {}: {e}", p.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_directory_and_a_cut_one_leaves_the_previous() {
        let root = std::env::temp_dir().join(format!("reccocktail-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("checkpoint");
        assert_eq!(latest(&dir, "meta"), None);
        write(&dir, |d| std::fs::write(d.join("meta"), "1").map_err(|e| e.to_string())).unwrap();
        write(&dir, |d| std::fs::write(d.join("meta"), "2").map_err(|e| e.to_string())).unwrap();
        assert_eq!(std::fs::read_to_string(latest(&dir, "meta").unwrap().join("meta")).unwrap(), "2");
        // A failed fill leaves the previous directory in place.
        assert!(write(&dir, |_| Err("disk full".into())).is_err());
        assert_eq!(std::fs::read_to_string(dir.join("meta")).unwrap(), "2");
        // Cut between the renames: only `<dir>.old` is complete.
        std::fs::rename(&dir, root.join("checkpoint.old")).unwrap();
        assert_eq!(latest(&dir, "meta").unwrap(), root.join("checkpoint.old"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
