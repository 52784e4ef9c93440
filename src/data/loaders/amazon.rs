//! Amazon reviews + metadata, JSON lines (files as distributed: `.json` / `.jsonl`, or gzipped
//! `.json.gz` / `.jsonl.gz`, read directly):
//! - 2014 (McAuley et al.): `reviews_NAME[_5].json` (`reviewerID`, `asin`, `overall`,
//!   `unixReviewTime`) and `meta_NAME.json`, whose lines are Python dict literals
//!   (`{'asin': '...', 'title': '...', 'categories': [['Beauty', 'Makeup']]}`), or strict JSON;
//! - 2018 (Ni et al.): `NAME[_5].json` (same review fields) and `meta_NAME.json` (JSON, with
//!   `title`, `category` list, `brand`).
//!
//! Category paths become `genres` (every distinct category name, so a domain can filter on one).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{FileLog, Interactions, Items, LoadReport, Loaded, lines, Encoding};
use crate::data::DataError;

/// JSON lines file names the loader reads: plain or gzipped, as distributed.
const ENDINGS: [&str; 4] = [".json", ".jsonl", ".json.gz", ".jsonl.gz"];

fn find(dir: &Path, meta: bool) -> Result<PathBuf, DataError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| DataError::Io { context: "cannot list", path: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            ENDINGS.iter().any(|e| n.ends_with(e)) && n.starts_with("meta_") == meta
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => {
            let what = if meta { "metadata file `meta_NAME.json`" } else { "reviews file (`reviews_NAME_5.json` or `NAME.json`)" };
            let names: Vec<String> = found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().to_string()).collect();
            let listed = if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) };
            Err(DataError::Missing(format!("format `amazon` expects exactly one {what} (`.json`, `.jsonl`, optionally `.gz`) in {}, found {n}{listed}", dir.display())))
        }
    }
}

/// Python literal (as written by `str(dict)`) to JSON: quotes, `True`/`False`/`None`, tuples.
fn python_to_json(s: &str) -> Option<Value> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push('"');
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => match chars.next()? {
                            '\'' => out.push('\''),
                            'x' => {
                                let h: String = [chars.next()?, chars.next()?].iter().collect();
                                out.push_str(&format!("\\u00{h}"));
                            }
                            e => {
                                out.push('\\');
                                out.push(e);
                            }
                        },
                        '"' if c == '\'' => out.push_str("\\\""),
                        d if d == c => break,
                        d if (d as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", d as u32)),
                        d => out.push(d),
                    }
                }
                out.push('"');
            }
            '(' => out.push('['),
            ')' => out.push(']'),
            c if c.is_ascii_alphabetic() => {
                let mut word = c.to_string();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_alphanumeric()) {
                    word.push(d);
                    chars.next();
                }
                out.push_str(match word.as_str() {
                    "True" => "true",
                    "False" => "false",
                    "None" => "null",
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    serde_json::from_str(&out).ok()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn categories(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.trim().is_empty() && !out.contains(s) => out.push(s.trim().to_string()),
        Value::Array(a) => a.iter().for_each(|x| categories(x, out)),
        _ => {}
    }
}

pub fn load(dir: &Path, strict: bool) -> Result<Loaded, DataError> {
    let reviews = find(dir, false)?;
    let meta = find(dir, true)?;
    let mut inter = Interactions::default();
    let mut log = FileLog::new(&reviews, strict);
    lines(&reviews, Encoding::Utf8, &mut log, false, |line, t, log| {
        let Ok(v) = serde_json::from_str::<Value>(t) else {
            return log.bad(line, "not a JSON object");
        };
        let (Some(u), Some(i)) = (v.get("reviewerID").and_then(text), v.get("asin").and_then(text)) else {
            return log.bad(line, "no `reviewerID` or `asin`");
        };
        let ts = v.get("unixReviewTime").and_then(Value::as_i64);
        inter.push(&u, &i, ts, v.get("overall").and_then(Value::as_f64));
        Ok(())
    })?;
    let reviews_report = log.finish();

    let mut items = Items::new(&["brand"]);
    let mut log = FileLog::new(&meta, strict);
    lines(&meta, Encoding::Utf8, &mut log, false, |line, t, log| {
        let Some(v) = serde_json::from_str::<Value>(t).ok().or_else(|| python_to_json(t)) else {
            return log.bad(line, "neither JSON nor a Python dict literal");
        };
        let Some(asin) = v.get("asin").and_then(text) else {
            return log.bad(line, "no `asin`");
        };
        // Items without a title stay out of the items table: their reviews count as no_metadata.
        let Some(title) = v.get("title").and_then(text).filter(|t| !t.trim().is_empty()) else {
            return Ok(());
        };
        let mut cats = Vec::new();
        categories(v.get("categories").or_else(|| v.get("category")).unwrap_or(&Value::Null), &mut cats);
        let cats: Vec<&str> = cats.iter().map(String::as_str).collect();
        items.push(&asin, &title, &cats, vec![v.get("brand").and_then(text)]);
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![reviews_report, log.finish()] } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_literals_become_json() {
        let v = python_to_json(r#"{'asin': '0205616461', 'title': "Bath & Body's \"Best\"", 'categories': [['Beauty', 'Bath']], 'x': (1, True, None), 'y': 'caf\xe9'}"#).unwrap();
        assert_eq!(v["title"], "Bath & Body's \"Best\"");
        assert_eq!(v["categories"][0][1], "Bath");
        assert_eq!(v["x"], serde_json::json!([1, true, null]));
        assert_eq!(v["y"], "café");
        assert!(python_to_json("{'a': object()}").is_none());
    }
}
