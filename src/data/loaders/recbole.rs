//! RecBole atomic files: `NAME.inter` (`user_id:token`, `item_id:token`, `rating:float`,
//! `timestamp:float`) and `NAME.item` (a title field such as `movie_title:token_seq`, optional
//! `release_year`, and a genre field such as `class:token_seq` or `genre:token`), tab-separated,
//! UTF-8, `\n` or `\r\n`. A title without its year gets it appended: `Toy Story (1995)`.

use std::path::{Path, PathBuf};

use super::{Encoding, FileLog, Interactions, Items, LoadReport, Loaded, column_index, lines, parse_rating, parse_timestamp};
use crate::data::DataError;

const TITLE_FIELDS: &[&str] = &["movie_title", "title", "book_title", "item_name", "name"];
const GENRE_FIELDS: &[&str] = &["class", "genre", "genres", "categories"];
const YEAR_FIELDS: &[&str] = &["release_year", "year"];

/// `NAME.inter` and `NAME.item` for a directory holding one `.inter` file, or for the `.inter` file.
fn files(path: &Path) -> Result<(PathBuf, PathBuf), DataError> {
    let inter = if path.is_file() {
        path.to_path_buf()
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| DataError::Io { context: "cannot list", path: path.to_path_buf(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "inter"))
            .collect();
        found.sort();
        match found.len() {
            1 => found.remove(0),
            0 => return Err(DataError::Missing(format!("format `recbole` expects a `NAME.inter` file in {}, which has none", path.display()))),
            _ => return Err(DataError::Invalid(format!("{} holds several `.inter` files; point `path` at one of them", path.display()))),
        }
    };
    let item = inter.with_extension("item");
    if !item.is_file() {
        return Err(DataError::Missing(format!("format `recbole` needs {} next to {} (item titles)", item.display(), inter.display())));
    }
    Ok((inter, item))
}

/// Field names without their `:type` suffix.
fn field_names(header: &str) -> Vec<String> {
    header.split('\t').map(|f| f.split(':').next().unwrap_or("").trim().to_string()).collect()
}

fn find(names: &[String], wanted: &[&str]) -> Option<usize> {
    wanted.iter().find_map(|w| names.iter().position(|n| n == w))
}

fn header_of(path: &Path) -> Result<Vec<String>, DataError> {
    let bytes = super::read_bytes(path)?;
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let text = std::str::from_utf8(first).map_err(|_| DataError::Invalid(format!("{}:1: the header is not valid UTF-8", path.display())))?;
    Ok(field_names(text))
}

/// `Toy Story` + `1995` -> `Toy Story (1995)`; a title already ending in its year is kept.
pub(crate) fn title_with_year(title: &str, year: Option<&str>) -> String {
    let title = title.trim();
    let year = year.map(str::trim).filter(|y| !y.is_empty()).map(|y| y.strip_suffix(".0").unwrap_or(y));
    match year {
        Some(y) if !title.ends_with(&format!("({y})")) => format!("{title} ({y})"),
        _ => title.to_string(),
    }
}

pub fn load(path: &Path, strict: bool) -> Result<Loaded, DataError> {
    let (inter_path, item_path) = files(path)?;
    let names = header_of(&inter_path)?;
    let (u, i) = (column_index(&names, "user_id", &inter_path)?, column_index(&names, "item_id", &inter_path)?);
    let r = names.iter().position(|n| n == "rating");
    let t = names.iter().position(|n| n == "timestamp");
    let width = names.len();
    let mut inter = Interactions::default();
    let mut log = FileLog::new(&inter_path, strict);
    lines(&inter_path, Encoding::Utf8, &mut log, true, |line, text, log| {
        let f: Vec<&str> = text.split('\t').collect();
        if f.len() != width {
            return log.bad(line, format!("{} fields, expected {width}", f.len()));
        }
        if f[u].is_empty() || f[i].is_empty() {
            return log.bad(line, "empty user or item id");
        }
        let rating = match r.map(|r| parse_rating(f[r])).transpose() {
            Ok(v) => v.flatten(),
            Err(e) => return log.bad(line, e),
        };
        let ts = match t.map(|t| parse_timestamp(f[t])).transpose() {
            Ok(v) => v.flatten(),
            Err(e) => return log.bad(line, e),
        };
        inter.push(f[u], f[i], ts, rating);
        Ok(())
    })?;
    let inter_report = log.finish();

    let names = header_of(&item_path)?;
    let id = column_index(&names, "item_id", &item_path)?;
    let title = find(&names, TITLE_FIELDS)
        .ok_or_else(|| DataError::Invalid(format!("{}: no title field (one of {})", item_path.display(), TITLE_FIELDS.join(", "))))?;
    let genre = find(&names, GENRE_FIELDS);
    let year = find(&names, YEAR_FIELDS);
    let width = names.len();
    let mut items = Items::new(&["year"]);
    let mut log = FileLog::new(&item_path, strict);
    lines(&item_path, Encoding::Utf8, &mut log, true, |line, text, log| {
        let f: Vec<&str> = text.split('\t').collect();
        if f.len() != width {
            return log.bad(line, format!("{} fields, expected {width}", f.len()));
        }
        if f[id].is_empty() || f[title].trim().is_empty() {
            return log.bad(line, "empty item id or title");
        }
        let y = year.map(|y| f[y]);
        let genres: Vec<&str> = genre.map(|g| f[g].split(' ').collect()).unwrap_or_default();
        let year_value = y.map(|y| y.trim().strip_suffix(".0").unwrap_or(y.trim()).to_string());
        items.push(f[id], &title_with_year(f[title], y), &genres, vec![year_value]);
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![inter_report, log.finish()] } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_get_their_year_once() {
        assert_eq!(title_with_year("Toy Story", Some("1995")), "Toy Story (1995)");
        assert_eq!(title_with_year("Toy Story", Some("1995.0")), "Toy Story (1995)");
        assert_eq!(title_with_year("Toy Story (1995)", Some("1995")), "Toy Story (1995)");
        assert_eq!(title_with_year("Toy Story", None), "Toy Story");
        assert_eq!(title_with_year("Toy Story", Some(" ")), "Toy Story");
    }
}
