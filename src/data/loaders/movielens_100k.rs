//! GroupLens MovieLens-100K: `u.data` (`user \t item \t rating \t timestamp`) and `u.item`
//! (latin-1, `|`-separated: id, title with year, release date, video date, URL, 19 genre flags).

use std::path::Path;

use super::{Encoding, FileLog, Items, LoadReport, Loaded, RatingLayout, file_in, lines, movielens_ratings};
use crate::data::DataError;

/// The genre flags of `u.item`, in order (as listed in `u.genre`).
pub const GENRES: [&str; 19] = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
];

pub fn load(dir: &Path, strict: bool) -> Result<Loaded, DataError> {
    let data = file_in(dir, "u.data", "movielens_100k")?;
    let item = file_in(dir, "u.item", "movielens_100k")?;
    let (inter, data_report) = movielens_ratings(&data, RatingLayout::Plain { sep: "\t", names: "user, item, rating, timestamp" }, strict)?;

    let mut items = Items::new(&["year"]);
    let mut log = FileLog::new(&item, strict);
    lines(&item, Encoding::Latin1, &mut log, false, |line, text, log| {
        let f: Vec<&str> = text.split('|').collect();
        if f.len() != 5 + GENRES.len() {
            return log.bad(line, format!("{} fields, expected {}", f.len(), 5 + GENRES.len()));
        }
        if f[1].trim().is_empty() {
            return log.bad(line, "empty title");
        }
        let genres: Vec<&str> = GENRES.iter().zip(&f[5..]).filter(|(_, flag)| flag.trim() == "1").map(|(g, _)| *g).collect();
        let year = f[2].rsplit('-').next().filter(|y| y.len() == 4).map(str::to_string);
        items.push(f[0].trim(), f[1], &genres, vec![year]);
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![data_report, log.finish()] } })
}
