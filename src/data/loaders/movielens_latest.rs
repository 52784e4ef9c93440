//! GroupLens MovieLens "latest" layout: `ratings.csv` (`userId,movieId,rating,timestamp`) and
//! `movies.csv` (`movieId,title,genres` with `|`-separated genres, titles quoted when they hold
//! commas), UTF-8.

use std::path::Path;

use super::{Delimited, Encoding, FileLog, Interactions, Items, LoadReport, Loaded, file_in, parse_rating, parse_timestamp};
use crate::data::DataError;

pub fn load(dir: &Path, strict: bool) -> Result<Loaded, DataError> {
    let ratings = file_in(dir, "ratings.csv", "movielens_latest")?;
    let movies = file_in(dir, "movies.csv", "movielens_latest")?;
    let mut inter = Interactions::default();
    let mut log = FileLog::new(&ratings, strict);
    let csv = Delimited::open(&ratings, b',', Encoding::Utf8, None)?;
    let (u, i, r, t) = (csv.column("userId")?, csv.column("movieId")?, csv.column("rating")?, csv.column("timestamp")?);
    let width = u.max(i).max(r).max(t) + 1;
    csv.rows(&mut log, |line, f, log| {
        if f.len() < width {
            return log.bad(line, format!("{} fields, expected {width}", f.len()));
        }
        if f[u].trim().is_empty() || f[i].trim().is_empty() {
            return log.bad(line, "empty user or item id");
        }
        match (parse_rating(&f[r]), parse_timestamp(&f[t])) {
            (Ok(rating), Ok(ts)) => {
                inter.push(f[u].trim(), f[i].trim(), ts, rating);
                Ok(())
            }
            (Err(e), _) | (_, Err(e)) => log.bad(line, e),
        }
    })?;
    let ratings_report = log.finish();

    let mut items = Items::new::<&str>(&[]);
    let mut log = FileLog::new(&movies, strict);
    let csv = Delimited::open(&movies, b',', Encoding::Utf8, None)?;
    let (id, title, genres) = (csv.column("movieId")?, csv.column("title")?, csv.column("genres")?);
    let width = id.max(title).max(genres) + 1;
    csv.rows(&mut log, |line, f, log| {
        if f.len() < width || f[title].trim().is_empty() || f[id].trim().is_empty() {
            return log.bad(line, "expected movieId,title,genres");
        }
        let g: Vec<&str> = f[genres].split('|').filter(|g| *g != "(no genres listed)").collect();
        items.push(f[id].trim(), &f[title], &g, vec![]);
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![ratings_report, log.finish()] } })
}
