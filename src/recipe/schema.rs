//! The recipe's JSON schema, generated from the recipe types.

use std::sync::OnceLock;

use serde_json::Value as Json;

use super::types::Recipe;

/// Where the committed copy lives (checked by a test) and where recipes point with `#:schema`.
pub const COMMITTED_PATH: &str = "schema/recipe.schema.json";

/// The schema as JSON (generated once per process).
pub fn recipe_schema() -> Json {
    static SCHEMA: OnceLock<Json> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let schema = schemars::schema_for!(Recipe);
            let mut json = serde_json::to_value(&schema).expect("a schema is plain JSON");
            if let Some(obj) = json.as_object_mut() {
                obj.insert("title".into(), Json::String("reccocktail recipe".into()));
            }
            json
        })
        .clone()
}

/// The schema as written to `schema/recipe.schema.json` and printed by `reccocktail schema`.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&recipe_schema()).expect("serializable");
    s.push('\n');
    s
}
