//! Dataset loaders, one file per format, all yielding the canonical tables (see `data/mod.rs`).
//!
//! Malformed rows are counted per file with the first few examples (`file:line: reason`) in the
//! [`LoadReport`]; with `strict`, the first one is fatal. Text that is not valid in the file's
//! encoding is a malformed row naming its file and line.

mod amazon;
mod book_crossing;
mod csv_generic;
mod movielens_100k;
mod movielens_1m;
mod movielens_latest;
mod recbole;

use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::DataError;
use crate::table;
use crate::recipe::types::{CsvColumns, DatasetFormat};

/// How many malformed-row examples a report keeps per file.
const EXAMPLES: usize = 5;

pub struct Loaded {
    pub interactions: DataFrame,
    pub items: DataFrame,
    pub report: LoadReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    pub files: Vec<FileReport>,
}

impl LoadReport {
    pub fn malformed(&self) -> u64 {
        self.files.iter().map(|f| f.malformed).sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileReport {
    pub file: String,
    /// Data rows read (header excluded), malformed ones included.
    pub rows: u64,
    pub malformed: u64,
    pub examples: Vec<String>,
}

/// Counts rows and malformed rows of one file.
pub(crate) struct FileLog {
    report: FileReport,
    strict: bool,
}

impl FileLog {
    pub(crate) fn new(path: &Path, strict: bool) -> Self {
        let file = path.display().to_string();
        Self { report: FileReport { file, rows: 0, malformed: 0, examples: Vec::new() }, strict }
    }

    pub(crate) fn row(&mut self) {
        self.report.rows += 1;
    }

    /// Record a malformed row (fatal when strict).
    pub(crate) fn bad(&mut self, line: u64, reason: impl Into<String>) -> Result<(), DataError> {
        let reason = reason.into();
        if self.strict {
            return Err(DataError::Malformed { file: self.report.file.clone(), line, reason });
        }
        self.report.malformed += 1;
        if self.report.examples.len() < EXAMPLES {
            self.report.examples.push(format!("{}:{line}: {reason}", self.report.file));
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> FileReport {
        self.report
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Utf8,
    Latin1,
}

pub(crate) fn decode(bytes: &[u8], enc: Encoding) -> Option<String> {
    match enc {
        Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_string),
        Encoding::Latin1 => Some(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// The file's bytes; a `.gz` file is decompressed (gzip, possibly several members).
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io { context: "cannot read", path: path.to_path_buf(), source })?;
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(raw.as_slice()), &mut out)
        .map_err(|e| DataError::Invalid(format!("{}: not a valid gzip file: {e}", path.display())))?;
    Ok(out)
}

/// The lines of a text file with their 1-based numbers, `\r\n` or `\n`, decoded; a line that is
/// not valid text in `enc` is reported as malformed and skipped. Empty lines are skipped.
pub(crate) fn lines(path: &Path, enc: Encoding, log: &mut FileLog, skip_header: bool, mut each: impl FnMut(u64, &str, &mut FileLog) -> Result<(), DataError>) -> Result<Option<String>, DataError> {
    let bytes = read_bytes(path)?;
    let mut header = None;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let Some(text) = decode(raw, enc) else {
            if i == 0 && skip_header {
                return Err(DataError::Invalid(format!("{}:1: the header is not valid UTF-8", path.display())));
            }
            log.row();
            log.bad(line_no, "not valid UTF-8 text")?;
            continue;
        };
        if i == 0 && skip_header {
            header = Some(text);
            continue;
        }
        log.row();
        each(line_no, &text, log)?;
    }
    Ok(header)
}

/// Builds the canonical interactions table.
#[derive(Default)]
pub(crate) struct Interactions {
    user: Vec<String>,
    item: Vec<String>,
    timestamp: Vec<Option<i64>>,
    rating: Vec<Option<f64>>,
}

impl Interactions {
    pub(crate) fn push(&mut self, user: &str, item: &str, timestamp: Option<i64>, rating: Option<f64>) {
        self.user.push(user.to_string());
        self.item.push(item.to_string());
        self.timestamp.push(timestamp);
        self.rating.push(rating);
    }

    pub(crate) fn into_frame(self) -> Result<DataFrame, DataError> {
        let order: Vec<u64> = (0..self.user.len() as u64).collect();
        Ok(table::frame(vec![
            Column::new("user".into(), self.user),
            Column::new("item".into(), self.item),
            Column::new("timestamp".into(), self.timestamp),
            Column::new("rating".into(), self.rating),
            Column::new("order".into(), order),
        ])?)
    }
}

/// Builds the canonical items table: item, title, genres, then the format's extra fields.
pub(crate) struct Items {
    item: Vec<String>,
    title: Vec<String>,
    genres: Vec<Option<String>>,
    extra_names: Vec<String>,
    extra: Vec<Vec<Option<String>>>,
}

impl Items {
    pub(crate) fn new<S: AsRef<str>>(extra_names: &[S]) -> Self {
        let extra_names: Vec<String> = extra_names.iter().map(|s| s.as_ref().to_string()).collect();
        Self { item: Vec::new(), title: Vec::new(), genres: Vec::new(), extra: vec![Vec::new(); extra_names.len()], extra_names }
    }

    /// `genres`: the values of the multi-valued genre field; empty means unknown.
    pub(crate) fn push(&mut self, item: &str, title: &str, genres: &[&str], extra: Vec<Option<String>>) {
        debug_assert_eq!(extra.len(), self.extra_names.len());
        self.item.push(item.to_string());
        self.title.push(title.trim().to_string());
        let g: Vec<&str> = genres.iter().map(|g| g.trim()).filter(|g| !g.is_empty()).collect();
        self.genres.push((!g.is_empty()).then(|| g.join(&super::MULTI_SEP.to_string())));
        for (col, v) in self.extra.iter_mut().zip(extra) {
            col.push(v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
    }

    pub(crate) fn into_frame(self) -> Result<DataFrame, DataError> {
        let mut cols = vec![Column::new("item".into(), self.item), Column::new("title".into(), self.title), Column::new("genres".into(), self.genres)];
        for (name, values) in self.extra_names.iter().zip(self.extra) {
            cols.push(Column::new(name.as_str().into(), values));
        }
        Ok(table::frame(cols)?)
    }
}

/// The file `name` inside `dir`, or a clear error.
pub(crate) fn file_in(dir: &Path, name: &str, format: &str) -> Result<PathBuf, DataError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DataError::Missing(format!("format `{format}` expects `{name}` in {}, which has no such file", dir.display())))
    }
}

pub(crate) fn parse_rating(s: &str) -> Result<Option<f64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("rating `{s}` is not a number")),
    }
}

/// Timestamps: integers, or floats with an integral value (RecBole writes `881250949.0` sometimes).
pub(crate) fn parse_timestamp(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok(Some(v));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
        _ => Err(format!("timestamp `{s}` is not an integer")),
    }
}

/// How to load: strict malformed-row handling, CSV column names.
pub struct LoadOptions<'a> {
    pub strict: bool,
    pub columns: Option<&'a CsvColumns>,
}

/// The item fields (columns of the items table) a format's loader yields, in order; `None` for
/// `csv`, whose fields are the columns of its items file (see [`csv_item_fields`]). Domain filters
/// name one of these; `validate` checks them against this list.
pub fn item_fields(format: DatasetFormat) -> Option<&'static [&'static str]> {
    match format {
        DatasetFormat::Movielens100k | DatasetFormat::Recbole => Some(&["item", "title", "genres", "year"]),
        DatasetFormat::Movielens1m | DatasetFormat::MovielensLatest => Some(&["item", "title", "genres"]),
        DatasetFormat::BookCrossing => Some(&["item", "title", "genres", "author", "year", "publisher"]),
        DatasetFormat::Amazon2014 | DatasetFormat::Amazon2018 => Some(&["item", "title", "genres", "brand"]),
        DatasetFormat::Csv => None,
    }
}

pub use csv_generic::item_fields as csv_item_fields;

/// Load a dataset from `path` (its directory, or for some formats one of its files).
pub fn load(format: DatasetFormat, path: &Path, opts: &LoadOptions<'_>) -> Result<Loaded, DataError> {
    let dir = if path.is_file() { path.parent().unwrap_or(Path::new(".")).to_path_buf() } else { path.to_path_buf() };
    if !path.exists() {
        return Err(DataError::Missing(format!("dataset path {} does not exist", path.display())));
    }
    match format {
        DatasetFormat::Recbole => recbole::load(path, opts.strict),
        DatasetFormat::Movielens100k => movielens_100k::load(&dir, opts.strict),
        DatasetFormat::Movielens1m => movielens_1m::load(&dir, opts.strict),
        DatasetFormat::MovielensLatest => movielens_latest::load(&dir, opts.strict),
        DatasetFormat::BookCrossing => book_crossing::load(&dir, opts.strict),
        DatasetFormat::Csv => {
            let columns = opts.columns.ok_or_else(|| DataError::Invalid("format `csv` needs `columns`".into()))?;
            csv_generic::load(&dir, columns, opts.strict)
        }
        DatasetFormat::Amazon2014 | DatasetFormat::Amazon2018 => amazon::load(&dir, opts.strict),
    }
}

/// How a MovieLens ratings file lays out `user, item, rating, timestamp`.
pub(crate) enum RatingLayout {
    /// No header; the four fields separated by `sep` (100K: tab, 1M: `::`), latin-1.
    Plain { sep: &'static str, names: &'static str },
    /// A UTF-8 CSV file whose header names the four columns (latest).
    Csv { columns: [&'static str; 4] },
}

/// Read a MovieLens ratings file into interactions; bad rows go to the report (fatal if strict).
pub(crate) fn movielens_ratings(path: &Path, layout: RatingLayout, strict: bool) -> Result<(Interactions, FileReport), DataError> {
    let mut inter = Interactions::default();
    let mut log = FileLog::new(path, strict);
    let mut push = |line: u64, f: [&str; 4], log: &mut FileLog| {
        if f[0].trim().is_empty() || f[1].trim().is_empty() {
            return log.bad(line, "empty user or item id");
        }
        match (parse_rating(f[2]), parse_timestamp(f[3])) {
            (Ok(r), Ok(t)) => {
                inter.push(f[0].trim(), f[1].trim(), t, r);
                Ok(())
            }
            (Err(e), _) | (_, Err(e)) => log.bad(line, e),
        }
    };
    match layout {
        RatingLayout::Plain { sep, names } => {
            lines(path, Encoding::Latin1, &mut log, false, |line, text, log| match <[&str; 4]>::try_from(text.split(sep).collect::<Vec<_>>()) {
                Ok(f) => push(line, f, log),
                Err(f) => log.bad(line, format!("{} fields, expected 4 ({names})", f.len())),
            })?;
        }
        RatingLayout::Csv { columns } => {
            let csv = Delimited::open(path, b',', Encoding::Utf8, None)?;
            let cols = [csv.column(columns[0])?, csv.column(columns[1])?, csv.column(columns[2])?, csv.column(columns[3])?];
            let width = cols.iter().max().expect("four columns") + 1;
            csv.rows(&mut log, |line, f, log| {
                if f.len() < width {
                    return log.bad(line, format!("{} fields, expected {width}", f.len()));
                }
                push(line, cols.map(|c| f[c].as_str()), log)
            })?;
        }
    }
    Ok((inter, log.finish()))
}

/// A delimited file with quoting (csv crate), each field decoded in the file's encoding.
pub(crate) struct Delimited {
    path: PathBuf,
    enc: Encoding,
    header: Vec<String>,
    reader: csv::Reader<std::io::Cursor<Vec<u8>>>,
}

impl Delimited {
    pub(crate) fn open(path: &Path, delimiter: u8, enc: Encoding, escape: Option<u8>) -> Result<Self, DataError> {
        let bytes = read_bytes(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .escape(escape)
            .double_quote(escape.is_none())
            .from_reader(std::io::Cursor::new(bytes));
        let header = reader.byte_headers().map_err(|e| DataError::Invalid(format!("{}:1: cannot read the header: {e}", path.display())))?;
        let header = header
            .iter()
            .map(|f| decode(f, enc).map(|s| s.trim().to_string()).ok_or_else(|| DataError::Invalid(format!("{}:1: the header is not valid UTF-8", path.display()))))
            .collect::<Result<_, _>>()?;
        Ok(Self { path: path.to_path_buf(), enc, header, reader })
    }

    /// Index of a header column, or a clear error.
    pub(crate) fn column(&self, name: &str) -> Result<usize, DataError> {
        column_index(&self.header, name, &self.path)
    }

    /// Every data row with its line number; unreadable and undecodable rows go to `log`.
    pub(crate) fn rows(mut self, log: &mut FileLog, mut each: impl FnMut(u64, &[String], &mut FileLog) -> Result<(), DataError>) -> Result<(), DataError> {
        let mut rec = csv::ByteRecord::new();
        loop {
            let line = self.reader.position().line();
            match self.reader.read_byte_record(&mut rec) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = rec.position().map(|p| p.line()).unwrap_or(line);
                    if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
                        continue;
                    }
                    log.row();
                    match rec.iter().map(|f| decode(f, self.enc)).collect::<Option<Vec<String>>>() {
                        Some(f) => each(line, &f, log)?,
                        None => log.bad(line, "not valid UTF-8 text")?,
                    }
                }
                Err(e) => {
                    log.row();
                    let line = e.position().map(|p| p.line()).unwrap_or(line);
                    log.bad(line, format!("unreadable row: {e}"))?;
                }
            }
        }
    }
}

/// Index of a header column, or a clear error.
pub(crate) fn column_index(header: &[String], name: &str, path: &Path) -> Result<usize, DataError> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        DataError::Invalid(format!("{}: no column `{name}` (columns: {})", path.display(), header.join(", ")))
    })
}
