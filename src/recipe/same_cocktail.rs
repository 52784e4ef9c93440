//! Arms that are the same cocktail twice: `fixed` and `task_arithmetic` apply one linear kernel,
//! so the same adapters at the same weights give the same merge, evaluated twice. `validate`
//! warns about them.

use super::merge::{merge_config, MergeConfig};
use super::resolve;
use super::sweep::{expand, ExpandedArm};
use super::types::Recipe;

/// Two arms (after sweep expansion) that are one cocktail.
#[derive(Debug, Clone, PartialEq)]
pub struct SameCocktail {
    pub first: String,
    pub second: String,
    /// The declared arm `second` came from, and whether it is a sweep point (where to point).
    pub second_base: String,
    pub second_swept: bool,
    /// The adapters merged, with their weights (zero weights left out).
    pub weights: Vec<(String, f64)>,
}

/// Every pair of linear arms that merge the same adapters with the same weights, in recipe order.
pub fn same_cocktails(r: &Recipe) -> Vec<SameCocktail> {
    let Ok(arms) = expand(r) else { return Vec::new() };
    let mut seen: Vec<(&ExpandedArm, Vec<(String, f64)>)> = Vec::new();
    let mut out = Vec::new();
    for x in &arms {
        let Ok(adapters) = resolve::arm_adapters(r, &x.arm) else { continue };
        let weights = match merge_config(&x.arm.merge, adapters.len(), 0) {
            MergeConfig::Fixed { weights } | MergeConfig::TaskArithmetic { lambdas: weights } => weights,
            _ => continue,
        };
        if weights.len() != adapters.len() {
            continue;
        }
        let mut used: Vec<(String, f64)> = adapters.into_iter().zip(weights).filter(|(_, w)| *w != 0.0).collect();
        used.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((first, _)) = seen.iter().find(|(_, w)| *w == used) {
            out.push(SameCocktail { first: first.arm.name.clone(), second: x.arm.name.clone(), second_base: x.base_name.clone(), second_swept: x.sweep_point.is_some(), weights: used.clone() });
        }
        seen.push((x, used));
    }
    out
}
