//! Book-Crossing: `BX-Book-Ratings.csv` (`"User-ID";"ISBN";"Book-Rating"`) and `BX-Books.csv`
//! (`"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";...`), `;`-separated,
//! quoted, latin-1, with `\"` inside quoted fields. No timestamps: order by file position.
//! Rating 0 marks an implicit interaction (a `min_rating` drops those).

use std::path::Path;

use super::{Delimited, Encoding, FileLog, Interactions, Items, LoadReport, Loaded, file_in, parse_rating};
use crate::data::DataError;

pub fn load(dir: &Path, strict: bool) -> Result<Loaded, DataError> {
    let ratings = file_in(dir, "BX-Book-Ratings.csv", "book_crossing")?;
    let books = file_in(dir, "BX-Books.csv", "book_crossing")?;
    let mut inter = Interactions::default();
    let mut log = FileLog::new(&ratings, strict);
    let csv = Delimited::open(&ratings, b';', Encoding::Latin1, Some(b'\\'))?;
    let (u, i, r) = (csv.column("User-ID")?, csv.column("ISBN")?, csv.column("Book-Rating")?);
    let width = u.max(i).max(r) + 1;
    csv.rows(&mut log, |line, f, log| {
        if f.len() < width {
            return log.bad(line, format!("{} fields, expected {width}", f.len()));
        }
        if f[u].trim().is_empty() || f[i].trim().is_empty() {
            return log.bad(line, "empty user or ISBN");
        }
        match parse_rating(&f[r]) {
            Ok(rating) => {
                inter.push(f[u].trim(), f[i].trim(), None, rating);
                Ok(())
            }
            Err(e) => log.bad(line, e),
        }
    })?;
    let ratings_report = log.finish();

    let mut items = Items::new(&["author", "year", "publisher"]);
    let mut log = FileLog::new(&books, strict);
    let csv = Delimited::open(&books, b';', Encoding::Latin1, Some(b'\\'))?;
    let cols = [csv.column("ISBN")?, csv.column("Book-Title")?, csv.column("Book-Author")?, csv.column("Year-Of-Publication")?, csv.column("Publisher")?];
    let width = cols.iter().max().expect("five columns") + 1;
    let [id, title, author, year, publisher] = cols;
    csv.rows(&mut log, |line, f, log| {
        if f.len() < width || f[id].trim().is_empty() || f[title].trim().is_empty() {
            return log.bad(line, format!("expected {width} fields with an ISBN and a title"));
        }
        let year = Some(f[year].trim().to_string()).filter(|y| y != "0");
        items.push(f[id].trim(), &f[title], &[], vec![Some(f[author].clone()), year, Some(f[publisher].clone())]);
        Ok(())
    })?;
    Ok(Loaded { interactions: inter.into_frame()?, items: items.into_frame()?, report: LoadReport { files: vec![ratings_report, log.finish()] } })
}
