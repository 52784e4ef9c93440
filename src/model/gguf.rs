//! GGUF files (llama.cpp's format, versions 2 and 3): header, metadata, tensor infos, tensor data
//! dequantized to f32 ([`dequant`]), and the conversion of a llama-architecture file into an HF
//! checkpoint (state dict with HF names, `config.json`, tokenizer) in [`hf`].
//!
//! Layout (little-endian): magic `GGUF`, version u32, tensor count u64, metadata count u64; the
//! metadata key/value pairs; one info per tensor (name, dims innermost-first, ggml type, offset);
//! padding to `general.alignment` (default 32); the tensor data, each tensor at its offset from
//! there. GGUF dims are innermost-first, so the HF (row-major) shape is the reversed dims.

pub mod dequant;
pub mod hf;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use dequant::GgmlType;
pub use hf::{convert, gguf_to_hf, write_hf_dir, HfCheckpoint};

/// Everything that can go wrong reading or converting a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a GGUF file (magic {magic:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, magic: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (supported: 2, 3)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: malformed GGUF: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("{path}: tensor `{tensor}` has type {ty}, which cannot be dequantized (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)")]
    UnsupportedType { path: PathBuf, tensor: String, ty: String },
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    #[error("{path}: metadata `{key}`: {message}")]
    Metadata { path: PathBuf, key: String, message: String },
    #[error("{path}: architecture `{arch}` is not supported (supported: llama, qwen2)")]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    /// The tokenizer built from the metadata failed (its error as text: the tokenizer module
    /// reads GGUF metadata, so GGUF does not import its error type back).
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl GgufError {
    /// Whether the input (the file, its contents) is at fault, rather than the machine (a failed
    /// write): the CLI's exit code 2 versus 1.
    pub fn is_input_problem(&self) -> bool {
        !matches!(self, GgufError::Write { .. })
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Integers of any width (negative ones excluded); None for other kinds.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Signed view of any integer.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Floats and integers as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as JSON (arrays element-wise), for reports and HF configs.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            GgufValue::Bool(b) => J::Bool(*b),
            GgufValue::String(s) => J::String(s.clone()),
            GgufValue::Array(a) => J::Array(a.iter().map(GgufValue::to_json).collect()),
            GgufValue::F32(v) => serde_json::Number::from_f64(f64::from(*v)).map_or(J::Null, J::Number),
            GgufValue::F64(v) => serde_json::Number::from_f64(*v).map_or(J::Null, J::Number),
            other => match (other.as_u64(), other.as_i64()) {
                (Some(u), _) => J::from(u),
                (None, Some(i)) => J::from(i),
                _ => J::Null,
            },
        }
    }
}

/// A tensor on the host: (name, row-major shape, f32 values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Metadata of a GGUF file, by key.
pub type Metadata = BTreeMap<String, GgufValue>;

/// Where one tensor lives and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: innermost (contiguous) dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major (HF / PyTorch) shape: the reversed GGUF dims.
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Size of the data in bytes, when the type's block layout is known.
    pub fn n_bytes(&self) -> Option<u64> {
        let (block, bytes) = self.ggml_type.block_layout()?;
        let n = self.n_elements();
        n.is_multiple_of(block as u64).then(|| n / block as u64 * bytes as u64)
    }
}

/// A parsed GGUF file: its metadata and tensor infos (the data stays on disk until read).
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
}

/// A reader that knows the file length and its position, to refuse lengths past the end.
struct Cursor<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b)?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
}

impl GgufFile {
    /// Parse the header, metadata and tensor infos of a GGUF file.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut cur = Cursor { inner: BufReader::with_capacity(1 << 20, file), pos: 0, len };
        Self::parse(path, &mut cur)
    }

    fn parse<R: Read>(path: &Path, cur: &mut Cursor<R>) -> Result<Self, GgufError> {
        let bad = |message: String| GgufError::Malformed { path: path.to_path_buf(), message };
        let eof = |e: std::io::Error, what: &str| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad(format!("file ends inside {what} (truncated?)"))
            } else {
                GgufError::Io { path: path.to_path_buf(), source: e }
            }
        };
        let magic = cur.bytes::<4>().map_err(|e| eof(e, "the magic"))?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic { path: path.to_path_buf(), magic });
        }
        let version = cur.u32().map_err(|e| eof(e, "the header"))?;
        if version != 2 && version != 3 {
            // A big-endian file reads its version byte-swapped: say so rather than a huge number.
            let version = if version > 0xFFFF { version.swap_bytes() } else { version };
            return Err(GgufError::Version { path: path.to_path_buf(), version });
        }
        let n_tensors = cur.u64().map_err(|e| eof(e, "the header"))?;
        let n_kv = cur.u64().map_err(|e| eof(e, "the header"))?;
        // Every entry takes at least 8 bytes on disk: bounds the counts before allocating.
        if n_tensors.saturating_add(n_kv) > cur.len / 8 {
            return Err(bad(format!("{n_tensors} tensors and {n_kv} metadata entries cannot fit in {} bytes", cur.len)));
        }
        let mut metadata = Metadata::new();
        for i in 0..n_kv {
            let key = read_string(cur).map_err(|e| e.into_error(path, &format!("metadata key #{i}")))?;
            let ty = cur.u32().map_err(|e| eof(e, &format!("metadata `{key}`")))?;
            let value = read_value(cur, ty, 0).map_err(|e| e.into_error(path, &format!("metadata `{key}`")))?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = read_string(cur).map_err(|e| e.into_error(path, &format!("tensor info #{i}")))?;
            let what = format!("tensor info `{name}`");
            let n_dims = cur.u32().map_err(|e| eof(e, &what))?;
            if n_dims > 8 {
                return Err(bad(format!("tensor `{name}` has {n_dims} dimensions (at most 8 expected)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(cur.u64().map_err(|e| eof(e, &what))?);
            }
            let ggml_type = GgmlType::from_id(cur.u32().map_err(|e| eof(e, &what))?);
            let offset = cur.u64().map_err(|e| eof(e, &what))?;
            tensors.push(TensorInfo { name, dims, ggml_type, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => return Err(bad(format!("`general.alignment` must be a positive power of two, found {v:?}"))),
            },
        };
        let data_offset = cur.pos.div_ceil(alignment) * alignment;
        let file = GgufFile { path: path.to_path_buf(), version, metadata, tensors, alignment, data_offset, file_len: cur.len };
        file.check_tensors()?;
        Ok(file)
    }

    /// Names unique, offsets aligned, data inside the file, element counts sane.
    fn check_tensors(&self) -> Result<(), GgufError> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.tensors {
            let err = |message: String| GgufError::Tensor { path: self.path.clone(), tensor: t.name.clone(), message };
            if !seen.insert(t.name.as_str()) {
                return Err(err("appears twice".into()));
            }
            if t.offset % self.alignment != 0 {
                return Err(err(format!("offset {} is not a multiple of the alignment {}", t.offset, self.alignment)));
            }
            if t.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).is_none() {
                return Err(err(format!("dims {:?} overflow", t.dims)));
            }
            if let Some((block, _)) = t.ggml_type.block_layout() {
                let inner = t.dims.first().copied().unwrap_or(1);
                if inner % block as u64 != 0 {
                    return Err(err(format!("innermost dim {inner} is not a multiple of the {} block size {block}", t.ggml_type)));
                }
                let n = t.n_bytes().expect("block-aligned");
                let end = self.data_offset.checked_add(t.offset).and_then(|s| s.checked_add(n));
                if end.is_none_or(|e| e > self.file_len) {
                    return Err(err(format!(
                        "data ({n} bytes at {}) runs past the end of the file ({} bytes): truncated?",
                        self.data_offset + t.offset,
                        self.file_len
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(GgufValue::as_str)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn read_bytes_from(&self, file: &mut File, info: &TensorInfo) -> Result<Vec<u8>, GgufError> {
        let n = info.n_bytes().ok_or_else(|| self.unsupported(info))?;
        let io = |source| GgufError::Io { path: self.path.clone(), source };
        file.seek(SeekFrom::Start(self.data_offset + info.offset)).map_err(io)?;
        let mut buf = vec![0u8; n as usize];
        file.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }

    fn unsupported(&self, info: &TensorInfo) -> GgufError {
        GgufError::UnsupportedType { path: self.path.clone(), tensor: info.name.clone(), ty: info.ggml_type.to_string() }
    }

    /// One tensor dequantized to f32, with its HF (row-major) shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::Tensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            message: "no such tensor in the file".into(),
        })?;
        let mut file = File::open(&self.path).map_err(|source| GgufError::Io { path: self.path.clone(), source })?;
        self.dequantize_from(&mut file, info)
    }

    fn dequantize_from(&self, file: &mut File, info: &TensorInfo) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        if !info.ggml_type.is_dequantizable() {
            return Err(self.unsupported(info));
        }
        let bytes = self.read_bytes_from(file, info)?;
        let data = dequant::dequantize(info.ggml_type, &bytes, info.n_elements() as usize).map_err(|_| self.unsupported(info))?;
        Ok((info.hf_shape(), data))
    }

    /// Every tensor dequantized to f32, in file order: (GGUF name, HF shape, data). Checks every
    /// type first, so an unsupported one fails before any work.
    pub fn all_tensors_f32(&self) -> Result<Vec<NamedTensor>, GgufError> {
        if let Some(bad) = self.tensors.iter().find(|t| !t.ggml_type.is_dequantizable()) {
            return Err(self.unsupported(bad));
        }
        let mut file = File::open(&self.path).map_err(|source| GgufError::Io { path: self.path.clone(), source })?;
        let mut order: Vec<&TensorInfo> = self.tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        let mut out = Vec::with_capacity(order.len());
        for info in order {
            let (shape, data) = self.dequantize_from(&mut file, info)?;
            out.push((info.name.clone(), shape, data));
        }
        Ok(out)
    }
}

/// A read failure before we know which kind of error to report.
enum ReadError {
    Io(std::io::Error),
    Bad(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    fn into_error(self, path: &Path, what: &str) -> GgufError {
        match self {
            ReadError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                GgufError::Malformed { path: path.to_path_buf(), message: format!("file ends inside {what} (truncated?)") }
            }
            ReadError::Io(source) => GgufError::Io { path: path.to_path_buf(), source },
            ReadError::Bad(m) => GgufError::Malformed { path: path.to_path_buf(), message: format!("{what}: {m}") },
        }
    }
}

fn read_string<R: Read>(cur: &mut Cursor<R>) -> Result<String, ReadError> {
    let n = cur.u64()?;
    if n > cur.len.saturating_sub(cur.pos) {
        return Err(ReadError::Bad(format!("string of {n} bytes runs past the end of the file")));
    }
    let mut buf = vec![0u8; n as usize];
    cur.inner.read_exact(&mut buf)?;
    cur.pos += n;
    String::from_utf8(buf).map_err(|e| ReadError::Bad(format!("string is not UTF-8: {e}")))
}

/// Bytes one scalar of a metadata type takes (strings and arrays: their minimum).
fn min_size(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        _ => 8,
    }
}

fn read_value<R: Read>(cur: &mut Cursor<R>, ty: u32, depth: usize) -> Result<GgufValue, ReadError> {
    Ok(match ty {
        0 => GgufValue::U8(cur.bytes::<1>()?[0]),
        1 => GgufValue::I8(i8::from_le_bytes(cur.bytes::<1>()?)),
        2 => GgufValue::U16(u16::from_le_bytes(cur.bytes::<2>()?)),
        3 => GgufValue::I16(i16::from_le_bytes(cur.bytes::<2>()?)),
        4 => GgufValue::U32(cur.u32()?),
        5 => GgufValue::I32(i32::from_le_bytes(cur.bytes::<4>()?)),
        6 => GgufValue::F32(f32::from_le_bytes(cur.bytes::<4>()?)),
        7 => match cur.bytes::<1>()?[0] {
            0 => GgufValue::Bool(false),
            1 => GgufValue::Bool(true),
            b => return Err(ReadError::Bad(format!("bool byte {b} (expected 0 or 1)"))),
        },
        8 => GgufValue::String(read_string(cur)?),
        9 => {
            if depth > 4 {
                return Err(ReadError::Bad("arrays nested too deeply".into()));
            }
            let item_ty = cur.u32()?;
            if item_ty > 12 {
                return Err(ReadError::Bad(format!("array of unknown value type {item_ty}")));
            }
            let n = cur.u64()?;
            if n.saturating_mul(min_size(item_ty)) > cur.len.saturating_sub(cur.pos) {
                return Err(ReadError::Bad(format!("array of {n} items runs past the end of the file")));
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(cur, item_ty, depth + 1)?);
            }
            GgufValue::Array(items)
        }
        10 => GgufValue::U64(cur.u64()?),
        11 => GgufValue::I64(i64::from_le_bytes(cur.bytes::<8>()?)),
        12 => GgufValue::F64(f64::from_le_bytes(cur.bytes::<8>()?)),
        other => return Err(ReadError::Bad(format!("unknown value type {other}"))),
    })
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
pub(crate) mod tests;
