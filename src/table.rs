//! Reading and writing stage artifacts: parquet tables (polars) and small JSON summaries, and
//! typed column access. Ground level: every stage folder uses it, and it knows none of them.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A table or JSON artifact that cannot be built, written or read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{context} {}: {source}", path.display())]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error("table {context}: {source}")]
    Polars { context: String, source: PolarsError },
    #[error("{}: {message}", path.display())]
    Json { path: PathBuf, message: String },
    #[error("column `{0}` has a null value")]
    Null(String),
}

impl TableError {
    /// An artifact that is there but malformed (bad JSON, a null where none may be) is the input's
    /// fault; failing to build, write or read a file is the machine's.
    pub fn is_input_problem(&self) -> bool {
        matches!(self, TableError::Json { .. } | TableError::Null(_))
    }
}

/// Wraps a polars error with what was being done.
pub fn polars_err(context: impl Into<String>) -> impl FnOnce(PolarsError) -> TableError {
    let context = context.into();
    move |source| TableError::Polars { context, source }
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TableError {
    let path = path.to_path_buf();
    move |source| TableError::Io { context, path, source }
}

/// Build a DataFrame from named columns of equal length.
pub fn frame(columns: Vec<Column>) -> Result<DataFrame, TableError> {
    DataFrame::new_infer_height(columns).map_err(polars_err("building a table"))
}

pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), TableError> {
    let file = std::fs::File::create(path).map_err(io("cannot create", path))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Snappy)
        .set_parallel(false)
        .finish(df)
        .map_err(polars_err(format!("writing {}", path.display())))?;
    Ok(())
}

/// The CSV text of a table, with a header row.
pub fn csv_text(df: &mut DataFrame) -> Result<String, TableError> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).include_header(true).finish(df).map_err(polars_err("writing csv"))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Write a table as CSV with a header row.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<(), TableError> {
    let text = csv_text(df)?;
    std::fs::write(path, text).map_err(io("cannot write", path))
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, TableError> {
    let file = std::fs::File::open(path).map_err(io("cannot open", path))?;
    ParquetReader::new(file).finish().map_err(polars_err(format!("reading {}", path.display())))
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TableError> {
    let text = serde_json::to_string_pretty(value).expect("plain data serializes");
    std::fs::write(path, text + "\n").map_err(io("cannot write", path))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, TableError> {
    let text = std::fs::read_to_string(path).map_err(io("cannot read", path))?;
    serde_json::from_str(&text).map_err(|e| TableError::Json { path: path.to_path_buf(), message: e.to_string() })
}

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column, TableError> {
    df.column(name).map_err(polars_err(format!("column `{name}`")))
}

/// A string column; nulls become `None`.
pub fn opt_strs(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, TableError> {
    let c = column(df, name)?.str().map_err(polars_err(format!("column `{name}`")))?;
    Ok(c.iter().map(|v| v.map(str::to_string)).collect())
}

/// A string column without nulls.
pub fn strs(df: &DataFrame, name: &str) -> Result<Vec<String>, TableError> {
    opt_strs(df, name)?
        .into_iter()
        .map(|v| v.ok_or_else(|| TableError::Null(name.to_string())))
        .collect()
}

/// A list-of-strings column (a null list is empty; null entries are dropped).
pub fn str_lists(df: &DataFrame, name: &str) -> Result<Vec<Vec<String>>, TableError> {
    let c = column(df, name)?.list().map_err(polars_err(format!("column `{name}`")))?;
    let mut out = Vec::with_capacity(c.len());
    for v in c.series_iter() {
        out.push(match v {
            Some(s) => s.str().map_err(polars_err(format!("column `{name}`")))?.iter().flatten().map(str::to_string).collect(),
            None => Vec::new(),
        });
    }
    Ok(out)
}

pub fn opt_i64s(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, TableError> {
    let c = column(df, name)?.cast(&DataType::Int64).map_err(polars_err(format!("column `{name}`")))?;
    Ok(c.i64().map_err(polars_err(format!("column `{name}`")))?.iter().collect())
}

pub fn opt_f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, TableError> {
    let c = column(df, name)?.cast(&DataType::Float64).map_err(polars_err(format!("column `{name}`")))?;
    Ok(c.f64().map_err(polars_err(format!("column `{name}`")))?.iter().collect())
}

/// The names of a table's columns.
pub fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names().iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_round_trip() {
        let dir = std::env::temp_dir().join(format!("rc-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut df = frame(vec![
            Column::new("user".into(), ["a", "b"]),
            Column::new("timestamp".into(), [Some(1i64), None]),
            Column::new("rating".into(), [Some(4.5f64), None]),
        ])
        .unwrap();
        let p = dir.join("t.parquet");
        write_parquet(&mut df, &p).unwrap();
        let back = read_parquet(&p).unwrap();
        assert_eq!(strs(&back, "user").unwrap(), ["a", "b"]);
        assert_eq!(opt_i64s(&back, "timestamp").unwrap(), [Some(1), None]);
        assert_eq!(opt_f64s(&back, "rating").unwrap(), [Some(4.5), None]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
