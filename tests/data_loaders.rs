//! Every loader on small hand-written files, including broken rows: exact tables, malformed rows
//! counted with file and line, strict mode fatal, encodings.

use std::path::Path;

use reccocktail::data::loaders::{self, LoadOptions, Loaded};
use reccocktail::table;
use reccocktail::recipe::types::{CsvColumns, DatasetFormat};

fn load(format: DatasetFormat, dir: &str, strict: bool, columns: Option<&CsvColumns>) -> Result<Loaded, String> {
    loaders::load(format, Path::new(dir), &LoadOptions { strict, columns }).map_err(|e| e.to_string())
}

fn pairs(l: &Loaded) -> Vec<(String, String)> {
    table::strs(&l.interactions, "user").unwrap().into_iter().zip(table::strs(&l.interactions, "item").unwrap()).collect()
}

fn col(df: &polars::prelude::DataFrame, name: &str) -> Vec<Option<String>> {
    table::opt_strs(df, name).unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn movielens_100k_latin1_and_malformed_rows() {
    let l = load(DatasetFormat::Movielens100k, "tests/fixtures/data/ml100k", false, None).unwrap();
    assert_eq!(pairs(&l), [("1", "10"), ("1", "11"), ("2", "10"), ("3", "11")].map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(table::opt_i64s(&l.interactions, "order").unwrap(), [Some(0), Some(1), Some(2), Some(3)]);
    assert_eq!(l.report.files[0].rows, 6);
    assert_eq!(l.report.files[0].malformed, 2);
    assert!(l.report.files[0].examples[0].ends_with("u.data:4: 1 fields, expected 4 (user, item, rating, timestamp)"), "{:?}", l.report.files[0].examples);
    assert!(l.report.files[0].examples[1].ends_with("u.data:5: rating `x` is not a number"));
    assert_eq!(l.report.files[1].malformed, 1);
    assert_eq!(col(&l.items, "title"), [s("Toy Story (1995)"), s("Café Society (1995)"), s("Heat (1995)")]);
    assert_eq!(col(&l.items, "genres"), [s("Animation|Children's|Comedy"), s("Drama"), s("Action|Crime|Thriller")]);
    assert_eq!(col(&l.items, "year"), [s("1995"), s("1995"), s("1995")]);
    let e = load(DatasetFormat::Movielens100k, "tests/fixtures/data/ml100k", true, None).err().unwrap();
    assert!(e.ends_with("u.data:4: 1 fields, expected 4 (user, item, rating, timestamp) (the dataset is `strict`: malformed rows are fatal)"), "{e}");
}

#[test]
fn movielens_1m() {
    let l = load(DatasetFormat::Movielens1m, "tests/fixtures/data/ml1m", false, None).unwrap();
    assert_eq!(pairs(&l).len(), 2);
    assert_eq!(l.report.malformed(), 1);
    assert_eq!(col(&l.items, "title"), [s("Toy Story (1995)"), s("Café (1999)")]);
    assert_eq!(col(&l.items, "genres")[0], s("Animation|Children's|Comedy"));
}

#[test]
fn recbole_atomic_files_crlf_years_and_bad_utf8() {
    let l = load(DatasetFormat::Recbole, "tests/fixtures/data/recbole", false, None).unwrap();
    assert_eq!(table::opt_i64s(&l.interactions, "timestamp").unwrap(), [Some(100), Some(50)]);
    assert_eq!(table::opt_f64s(&l.interactions, "rating").unwrap(), [Some(5.0), Some(3.0)]);
    let ex = &l.report.files[0].examples;
    assert!(ex[0].ends_with("tiny.inter:4: 3 fields, expected 4"), "{ex:?}");
    assert!(ex[1].ends_with("tiny.inter:5: not valid UTF-8 text"), "{ex:?}");
    assert_eq!(col(&l.items, "title"), [s("Toy Story (1995)"), s("Café (1999)")]);
    assert_eq!(col(&l.items, "genres"), [s("Animation|Children's|Comedy"), s("Drama")]);
    // The .inter file itself works as the path too.
    let l2 = load(DatasetFormat::Recbole, "tests/fixtures/data/recbole/tiny.inter", false, None).unwrap();
    assert_eq!(pairs(&l2), pairs(&l));
    let e = load(DatasetFormat::Recbole, "tests/fixtures/data/recbole", true, None).err().unwrap();
    assert!(e.contains("tiny.inter:4:"), "{e}");
}

#[test]
fn book_crossing_quoted_latin1_without_timestamps() {
    let l = load(DatasetFormat::BookCrossing, "tests/fixtures/data/bx", false, None).unwrap();
    assert_eq!(pairs(&l).len(), 3);
    assert_eq!(table::opt_i64s(&l.interactions, "timestamp").unwrap(), [None, None, None]);
    assert_eq!(table::opt_f64s(&l.interactions, "rating").unwrap(), [Some(0.0), Some(5.0), Some(8.0)]);
    assert_eq!(l.report.malformed(), 1);
    assert_eq!(col(&l.items, "title"), [s("Flesh Tones: A Novel"), s("Rites of Passage \"Quoted\"")]);
    assert_eq!(col(&l.items, "author"), [s("M. J. Rose"), s("Judith Rae")]);
    assert_eq!(col(&l.items, "publisher"), [s("Ballantine Books"), s("Heinle")]);
}

/// The columns of the `csv` fixture.
fn shop_columns() -> CsvColumns {
    CsvColumns {
        interactions: "events.csv".into(),
        items: "catalog.csv".into(),
        user: "uid".into(),
        item: "iid".into(),
        timestamp: Some("ts".into()),
        rating: Some("stars".into()),
        title: "name".into(),
        delimiter: None,
    }
}

#[test]
fn generic_csv_with_recipe_columns() {
    let c = shop_columns();
    let l = load(DatasetFormat::Csv, "tests/fixtures/data/csv", false, Some(&c)).unwrap();
    assert_eq!(pairs(&l).len(), 3);
    assert_eq!(table::opt_f64s(&l.interactions, "rating").unwrap(), [Some(5.0), Some(4.0), None]);
    assert_eq!(l.report.malformed(), 1);
    assert_eq!(col(&l.items, "title"), [s("Item X"), s("Item, Y"), s("Item Z")]);
    assert_eq!(col(&l.items, "genres"), [s("Tools|Garden"), s("Tools"), None]);
    assert_eq!(col(&l.items, "brand"), [s("Acme"), None, s("Other")]);
    let bad = CsvColumns { user: "who".into(), ..c };
    let e = load(DatasetFormat::Csv, "tests/fixtures/data/csv", false, Some(&bad)).err().unwrap();
    assert!(e.contains("no column `who` (columns: uid, iid, ts, stars)"), "{e}");
}

#[test]
fn latest_layout_broken_rows_and_missing_files() {
    let l = load(DatasetFormat::MovielensLatest, "tests/fixtures/data/latest_broken", false, None).unwrap();
    assert_eq!(pairs(&l).len(), 1);
    assert!(l.report.files[1].examples[0].ends_with("movies.csv:3: not valid UTF-8 text"), "{:?}", l.report);
    let e = load(DatasetFormat::MovielensLatest, "tests/fixtures/data/latest_broken", true, None).err().unwrap();
    assert!(e.contains("ratings.csv:3: rating `oops` is not a number"), "{e}");
    let e = load(DatasetFormat::MovielensLatest, "tests/fixtures/data/ml1m", false, None).err().unwrap();
    assert!(e.contains("expects `ratings.csv` in tests/fixtures/data/ml1m"), "{e}");
    let e = load(DatasetFormat::Amazon2014, "tests/fixtures/data/ml1m", false, None).err().unwrap();
    assert!(e.contains("expects exactly one reviews file"), "{e}");
}

#[test]
fn the_committed_subset_loads_whole() {
    let l = load(DatasetFormat::MovielensLatest, "datasets/ml-latest-small-subset", true, None).unwrap();
    let p = pairs(&l);
    assert_eq!(p.len(), 10_497);
    assert_eq!(p.iter().map(|x| &x.0).collect::<std::collections::HashSet<_>>().len(), 200);
    assert_eq!(l.items.height(), 2_581);
    assert_eq!(l.report.malformed(), 0);
}

#[test]
fn amazon_2014_python_metadata_and_2018_json() {
    let l = load(DatasetFormat::Amazon2014, "tests/fixtures/data/amazon2014", false, None).unwrap();
    assert_eq!(pairs(&l).len(), 3);
    assert!(l.report.files[0].examples[0].ends_with("reviews_Beauty_5.json:3: not a JSON object"), "{:?}", l.report);
    assert_eq!(table::opt_i64s(&l.interactions, "timestamp").unwrap()[2], Some(1391040002));
    // B03 has no title: it is not an item (its reviews are dropped as no_metadata when cleaning).
    assert_eq!(col(&l.items, "title"), [s("Lip Balm"), s("Nature's Soap")]);
    assert_eq!(col(&l.items, "genres"), [s("Beauty|Skin Care|Lips"), s("Beauty|Bath")]);
    assert_eq!(col(&l.items, "brand"), [s("Acme"), None]);
    assert_eq!(l.report.files[1].malformed, 1);
    let l = load(DatasetFormat::Amazon2018, "tests/fixtures/data/amazon2018", true, None).unwrap();
    assert_eq!(pairs(&l).len(), 2);
    assert_eq!(col(&l.items, "genres"), [s("Toys & Games|Building Toys"), None]);
}

#[test]
fn amazon_gzipped_json_lines_read_directly() {
    // The same files as amazon2018, gzipped; the metadata as two gzip members (`.jsonl.gz`).
    let plain = load(DatasetFormat::Amazon2018, "tests/fixtures/data/amazon2018", true, None).unwrap();
    let gz = load(DatasetFormat::Amazon2018, "tests/fixtures/data/amazon2018_gz", true, None).unwrap();
    assert_eq!(pairs(&gz), pairs(&plain));
    assert_eq!(col(&gz.items, "title"), col(&plain.items, "title"));
    assert_eq!(col(&gz.items, "genres"), [s("Toys & Games|Building Toys"), None]);
    assert!(gz.report.files[1].file.ends_with("meta_Toys.jsonl.gz"), "{:?}", gz.report);
    // A file that is not gzip is an input problem naming the file.
    let dir = std::env::temp_dir().join(format!("reccocktail-bad-gz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy("tests/fixtures/data/amazon2018/meta_Toys.json", dir.join("meta_Toys.json")).unwrap();
    std::fs::write(dir.join("Toys_5.json.gz"), b"{\"not\": \"gzip\"}\n").unwrap();
    let e = load(DatasetFormat::Amazon2018, dir.to_str().unwrap(), false, None).err().unwrap();
    assert!(e.contains("Toys_5.json.gz: not a valid gzip file"), "{e}");
    // Two reviews files (plain and gzipped) are ambiguous: both are named.
    std::fs::copy("tests/fixtures/data/amazon2018/Toys_5.json", dir.join("Toys_5.json")).unwrap();
    let e = load(DatasetFormat::Amazon2018, dir.to_str().unwrap(), false, None).err().unwrap();
    assert!(e.contains("found 2 (Toys_5.json, Toys_5.json.gz)"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn item_fields_known_to_validate_are_the_loaders_columns() {
    let fixtures = [
        (DatasetFormat::Movielens100k, "tests/fixtures/data/ml100k"),
        (DatasetFormat::Movielens1m, "tests/fixtures/data/ml1m"),
        (DatasetFormat::MovielensLatest, "datasets/ml-latest-small-subset"),
        (DatasetFormat::Recbole, "tests/fixtures/data/recbole"),
        (DatasetFormat::BookCrossing, "tests/fixtures/data/bx"),
        (DatasetFormat::Amazon2014, "tests/fixtures/data/amazon2014"),
        (DatasetFormat::Amazon2018, "tests/fixtures/data/amazon2018"),
    ];
    for (format, dir) in fixtures {
        let l = load(format, dir, false, None).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(table::names(&l.items), loaders::item_fields(format).unwrap(), "{format:?}");
    }
    assert!(loaders::item_fields(DatasetFormat::Csv).is_none());
    let c = shop_columns();
    let l = load(DatasetFormat::Csv, "tests/fixtures/data/csv", false, Some(&c)).unwrap();
    assert_eq!(table::names(&l.items), loaders::csv_item_fields(Path::new("tests/fixtures/data/csv"), &c).unwrap());
}
