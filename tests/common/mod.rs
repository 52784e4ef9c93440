//! What several integration tests share: a tiny experiment on the committed MovieLens subset.

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tiny experiment's recipe up to its arms: a tiny model at `model`, the committed MovieLens
/// subset sliced into drama and comedy, a base spirit (comedy) and an ingredient (drama). Tests
/// append their arms and `[evaluation]`.
pub fn tiny_recipe_head(name: &str, model: &Path) -> String {
    format!(
        r#"
[experiment]
name = "{name}"
seed = 7
backend = "flex"
threads = 1

[backbone]
path = "{model}"

[datasets.latest]
path = "{data}"
format = "movielens_latest"
min_rating = 3.5
k_core = 3

[domains.drama]
dataset = "latest"
filter = {{ field = "genres", any_of = ["Drama"] }}
label = "drama movies"

[domains.comedy]
dataset = "latest"
filter = {{ field = "genres", any_of = ["Comedy"] }}
label = "comedies"

[data]
max_history = 3
candidates = 5
max_train_per_user = 1

[templates.rank]
path = "{template}"

[lora]
rank = 4
alpha = 8
targets = ["q_proj", "v_proj", "up_proj"]

[training]
lr = 5e-3
batch_size = 4
max_seq_len = 512
eval_every = 2

[base_spirit]
domains = ["comedy"]
template = "rank"
max_samples = 8
max_valid_samples = 4

[ingredients.drama]
domains = ["drama"]
template = "rank"
max_samples = 8
max_valid_samples = 4

"#,
        model = model.display(),
        data = root().join("datasets/ml-latest-small-subset").display(),
        template = root().join("templates/rank.jinja").display(),
    )
}
