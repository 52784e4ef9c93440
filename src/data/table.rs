//! Reading and writing stage artifacts: parquet tables (polars) and small JSON summaries, and
//! typed column access.

use std::path::Path;

use polars::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DataError;

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.to_path_buf();
    move |source| DataError::Io { context, path, source }
}

/// Build a DataFrame from named columns of equal length.
pub fn frame(columns: Vec<Column>) -> Result<DataFrame, DataError> {
    DataFrame::new_infer_height(columns).map_err(DataError::table("building a table"))
}

pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), DataError> {
    let file = std::fs::File::create(path).map_err(io("cannot create", path))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Snappy)
        .set_parallel(false)
        .finish(df)
        .map_err(DataError::table(format!("writing {}", path.display())))?;
    Ok(())
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, DataError> {
    let file = std::fs::File::open(path).map_err(io("cannot open", path))?;
    ParquetReader::new(file).finish().map_err(DataError::table(format!("reading {}", path.display())))
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), DataError> {
    let text = serde_json::to_string_pretty(value).expect("plain data serializes");
    std::fs::write(path, text + "\n").map_err(io("cannot write", path))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let text = std::fs::read_to_string(path).map_err(io("cannot read", path))?;
    serde_json::from_str(&text).map_err(|e| DataError::Invalid(format!("{}: {e}", path.display())))
}

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column, DataError> {
    df.column(name).map_err(DataError::table(format!("column `{name}`")))
}

/// A string column; nulls become `None`.
pub fn opt_strs(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, DataError> {
    let c = column(df, name)?.str().map_err(DataError::table(format!("column `{name}`")))?;
    Ok(c.iter().map(|v| v.map(str::to_string)).collect())
}

/// A string column without nulls.
pub fn strs(df: &DataFrame, name: &str) -> Result<Vec<String>, DataError> {
    opt_strs(df, name)?
        .into_iter()
        .map(|v| v.ok_or_else(|| DataError::Invalid(format!("column `{name}` has a null value"))))
        .collect()
}

pub fn opt_i64s(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, DataError> {
    let c = column(df, name)?.cast(&DataType::Int64).map_err(DataError::table(format!("column `{name}`")))?;
    Ok(c.i64().map_err(DataError::table(format!("column `{name}`")))?.iter().collect())
}

pub fn opt_f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, DataError> {
    let c = column(df, name)?.cast(&DataType::Float64).map_err(DataError::table(format!("column `{name}`")))?;
    Ok(c.f64().map_err(DataError::table(format!("column `{name}`")))?.iter().collect())
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
