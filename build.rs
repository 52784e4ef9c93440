//! With the libtorch backend, bake the libtorch folder into the binaries' run path, so that
//! `reccocktail` and the tests run without LD_LIBRARY_PATH. Also record the commit the binary was
//! built from (`RECCOCKTAIL_BUILD_COMMIT`, with `-dirty` when tracked files had uncommitted
//! changes), which every run writes to its `environment.json`.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TCH").is_some()
        && let Ok(libtorch) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch}/lib");
    }
    println!("cargo:rustc-env=RECCOCKTAIL_BUILD_COMMIT={}", build_commit().unwrap_or_else(|| "unknown".into()));
}

/// `git rev-parse HEAD` (+ `-dirty`), and the paths whose change makes it stale.
fn build_commit() -> Option<String> {
    let git = |args: &[&str]| Command::new("git").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dir = git(&["rev-parse", "--git-dir"])?;
    let dir = Path::new(&dir);
    for watched in [dir.join("HEAD"), dir.join("index"), dir.join("packed-refs")] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", dir.join(head_ref).display());
    }
    for tracked in ["src", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={tracked}");
    }
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}
