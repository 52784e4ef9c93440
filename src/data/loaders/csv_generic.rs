//! Generic CSV: an interactions file and an items file (paths relative to the dataset path), with
//! the column names given in the recipe's `columns`. UTF-8. Every other column of the items file
//! becomes an item field (a column named `genres` is read as `|`-separated genres).

use std::path::Path;

use super::{Delimited, Encoding, FileLog, Interactions, Items, LoadReport, Loaded, parse_rating, parse_timestamp};
use crate::data::DataError;
use crate::recipe::types::CsvColumns;

fn delimiter(c: &CsvColumns) -> Result<u8, DataError> {
    match c.delimiter.as_deref().unwrap_or(",").as_bytes() {
        [b] => Ok(*b),
        b"\\t" => Ok(b'\t'),
        _ => Err(DataError::Invalid(format!("CSV delimiter `{}` must be one ASCII character", c.delimiter.as_deref().unwrap_or_default()))),
    }
}

/// The item fields a CSV dataset yields: `item`, `title`, `genres`, then every other named column
/// of its items file (read from the header only).
pub fn item_fields(dir: &Path, c: &CsvColumns) -> Result<Vec<String>, DataError> {
    let path = dir.join(&c.items);
    let file = std::fs::File::open(&path).map_err(|source| DataError::Io { context: "cannot read", path: path.clone(), source })?;
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter(c)?).flexible(true).from_reader(std::io::BufReader::new(file));
    let header = reader.headers().map_err(|e| DataError::Invalid(format!("{}:1: cannot read the header: {e}", path.display())))?;
    let mut fields: Vec<String> = ["item", "title", "genres"].map(String::from).to_vec();
    fields.extend(header.iter().map(str::trim).filter(|h| !h.is_empty() && *h != c.item && *h != c.title && *h != "genres").map(String::from));
    Ok(fields)
}

pub fn load(dir: &Path, c: &CsvColumns, strict: bool) -> Result<Loaded, DataError> {
    let delim = delimiter(c)?;
    let path = dir.join(&c.interactions);
    if !path.is_file() {
        return Err(DataError::Missing(format!("CSV interactions file {} does not exist", path.display())));
    }
    let mut inter = Interactions::default();
    let mut log = FileLog::new(&path, strict);
    let csv = Delimited::open(&path, delim, Encoding::Utf8, None)?;
    let (u, i) = (csv.column(&c.user)?, csv.column(&c.item)?);
    let t = c.timestamp.as_deref().map(|n| csv.column(n)).transpose()?;
    let r = c.rating.as_deref().map(|n| csv.column(n)).transpose()?;
    let width = [Some(u), Some(i), t, r].into_iter().flatten().max().expect("user column") + 1;
    csv.rows(&mut log, |line, f, log| {
        if f.len() < width {
            return log.bad(line, format!("{} fields, expected at least {width}", f.len()));
        }
        if f[u].trim().is_empty() || f[i].trim().is_empty() {
            return log.bad(line, "empty user or item id");
        }
        let ts = match t.map(|t| parse_timestamp(&f[t])).transpose() {
            Ok(v) => v.flatten(),
            Err(e) => return log.bad(line, e),
        };
        let rating = match r.map(|r| parse_rating(&f[r])).transpose() {
            Ok(v) => v.flatten(),
            Err(e) => return log.bad(line, e),
        };
        inter.push(f[u].trim(), f[i].trim(), ts, rating);
        Ok(())
    })?;
    let inter_report = log.finish();

    let path = dir.join(&c.items);
    if !path.is_file() {
        return Err(DataError::Missing(format!("CSV items file {} does not exist", path.display())));
    }
    let mut log = FileLog::new(&path, strict);
    let csv = Delimited::open(&path, delim, Encoding::Utf8, None)?;
    let (id, title) = (csv.column(&c.item)?, csv.column(&c.title)?);
    let genres = csv.column("genres").ok();
    let header = csv.header.clone();
    let extra: Vec<usize> = (0..header.len()).filter(|&k| k != id && k != title && Some(k) != genres && !header[k].is_empty()).collect();
    let names: Vec<&str> = extra.iter().map(|&k| header[k].as_str()).collect();
    let mut items = Items::new(&names);
    let width = header.len();
    csv.rows(&mut log, |line, f, log| {
        if f.len() != width || f[id].trim().is_empty() || f[title].trim().is_empty() {
            return log.bad(line, format!("expected {width} fields with an item id and a title"));
        }
        let g: Vec<&str> = genres.map(|g| f[g].split('|').collect()).unwrap_or_default();
        items.push(f[id].trim(), &f[title], &g, extra.iter().map(|&k| Some(f[k].clone())).collect());
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![inter_report, log.finish()] } })
}
