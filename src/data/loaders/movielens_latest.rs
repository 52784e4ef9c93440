//! GroupLens MovieLens "latest" layout: `ratings.csv` (`userId,movieId,rating,timestamp`) and
//! `movies.csv` (`movieId,title,genres` with `|`-separated genres, titles quoted when they hold
//! commas), UTF-8.

use std::path::Path;

use super::{Delimited, Encoding, FileLog, Items, LoadReport, Loaded, RatingLayout, file_in, movielens_ratings};
use crate::data::DataError;

pub fn load(dir: &Path, strict: bool) -> Result<Loaded, DataError> {
    let ratings = file_in(dir, "ratings.csv", "movielens_latest")?;
    let movies = file_in(dir, "movies.csv", "movielens_latest")?;
    let (inter, ratings_report) = movielens_ratings(&ratings, RatingLayout::Csv { columns: ["userId", "movieId", "rating", "timestamp"] }, strict)?;

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
