//! Sweeps: one declared arm expanded over a grid of parameter values.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::types::{Arm, Recipe};

/// Most points one grid may expand into.
pub const MAX_POINTS: usize = 256;

/// An arm after sweep expansion.
#[derive(Debug, Clone)]
pub struct ExpandedArm {
    pub arm: Arm,
    /// The declared arm it came from.
    pub base_name: String,
    /// The grid point (dotted parameter path -> value), for swept arms.
    pub sweep_point: Option<BTreeMap<String, Json>>,
}

/// The arm with the parameter at dotted `key` set to `value`.
pub fn apply(arm: &Arm, key: &str, value: &Json) -> Result<Arm, String> {
    if key == "name" {
        return Err("the arm name cannot be swept (expanded arms are named after their grid point)".into());
    }
    let mut json = serde_json::to_value(arm).map_err(|e| e.to_string())?;
    let segs: Vec<&str> = key.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(format!("`{key}` is not a dotted parameter path like `merge.lambda`"));
    }
    let mut at = &mut json;
    for seg in &segs[..segs.len() - 1] {
        if at.is_null() {
            *at = Json::Object(Default::default());
        }
        let obj = at.as_object_mut().ok_or_else(|| format!("`{key}`: `{seg}` is not inside a table"))?;
        at = obj.entry(seg.to_string()).or_insert(Json::Null);
    }
    if at.is_null() {
        *at = Json::Object(Default::default());
    }
    let last = segs[segs.len() - 1];
    at.as_object_mut().ok_or_else(|| format!("`{key}` does not name a parameter of a table"))?.insert(last.to_string(), value.clone());
    serde_json::from_value::<Arm>(json).map_err(|e| format!("sweeping `{key}` to {value}: {e}"))
}

/// Every arm of the recipe, with swept arms replaced by one arm per grid point.
pub fn expand(r: &Recipe) -> Result<Vec<ExpandedArm>, String> {
    let mut out = Vec::new();
    for arm in &r.arms {
        let Some(sweep) = r.sweep.iter().find(|s| s.arm == arm.name) else {
            out.push(ExpandedArm { arm: arm.clone(), base_name: arm.name.clone(), sweep_point: None });
            continue;
        };
        let keys: Vec<&String> = sweep.grid.keys().collect();
        let sizes: Vec<usize> = sweep.grid.values().map(Vec::len).collect();
        let total: usize = sizes.iter().product();
        if total == 0 || total > MAX_POINTS {
            return Err(format!("sweep of `{}` has {total} points", arm.name));
        }
        for n in 0..total {
            // Mixed-radix decomposition: the first key varies slowest.
            let mut rem = n;
            let mut idx = vec![0; keys.len()];
            for k in (0..keys.len()).rev() {
                idx[k] = rem % sizes[k];
                rem /= sizes[k];
            }
            let mut point = BTreeMap::new();
            let mut swept = arm.clone();
            for (k, key) in keys.iter().enumerate() {
                let v = &sweep.grid[*key][idx[k]];
                swept = apply(&swept, key, v)?;
                point.insert((*key).clone(), v.clone());
            }
            swept.name = point_name(&arm.name, &point);
            out.push(ExpandedArm { arm: swept, base_name: arm.name.clone(), sweep_point: Some(point) });
        }
    }
    Ok(out)
}

/// `ta@lambda=0.5,size=50`: the arm name plus the last segment of each swept path.
fn point_name(base: &str, point: &BTreeMap<String, Json>) -> String {
    let parts: Vec<String> = point
        .iter()
        .map(|(k, v)| {
            let short = k.rsplit('.').next().unwrap_or(k);
            let v = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{short}={v}")
        })
        .collect();
    format!("{base}@{}", parts.join(","))
}
