//! GroupLens MovieLens-1M: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) and `movies.dat`
//! (`MovieID::Title (Year)::Genre|Genre`), latin-1.

use std::path::Path;

use super::{Encoding, FileLog, Items, LoadReport, Loaded, RatingLayout, file_in, lines, movielens_ratings};
use crate::data::DataError;

pub fn load(dir: &Path, strict: bool) -> Result<Loaded, DataError> {
    let ratings = file_in(dir, "ratings.dat", "movielens_1m")?;
    let movies = file_in(dir, "movies.dat", "movielens_1m")?;
    let (inter, ratings_report) = movielens_ratings(&ratings, RatingLayout::Plain { sep: "::", names: "UserID::MovieID::Rating::Timestamp" }, strict)?;

    let mut items = Items::new::<&str>(&[]);
    let mut log = FileLog::new(&movies, strict);
    lines(&movies, Encoding::Latin1, &mut log, false, |line, text, log| {
        let f: Vec<&str> = text.split("::").collect();
        if f.len() != 3 || f[1].trim().is_empty() {
            return log.bad(line, "expected MovieID::Title::Genres");
        }
        let genres: Vec<&str> = f[2].split('|').collect();
        items.push(f[0].trim(), f[1], &genres, vec![]);
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![ratings_report, log.finish()] } })
}
