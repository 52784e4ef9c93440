//! `fixed`: the weights are given, one per adapter, the same on every module
//! (`[1, 0]` = the first adapter alone, `[0.5, 0.5]` = the average).

use super::{Coefficients, Combination, Flags, MergeError, MergeMethod, Method, Param, other_config, uniform};
use crate::model::peft::PeftAdapter;
use crate::recipe::merge::MergeSpec;
use crate::recipe::merge::MergeConfig;

pub struct Fixed;

impl MergeMethod for Fixed {
    fn declaration(&self) -> &'static Method {
        &METHOD
    }

    fn from_flags(&self, f: &Flags) -> Option<MergeSpec> {
        Some(MergeSpec::Fixed { weights: f.weights.clone() })
    }

    fn combine(&self, config: &MergeConfig, names: &[String], adapters: &[PeftAdapter]) -> Result<Combination, MergeError> {
        let MergeConfig::Fixed { weights } = config else { return Err(other_config(&METHOD, config)) };
        Ok(Combination::Linear(coefficients(names, adapters, weights)?))
    }
}

pub const METHOD: Method = Method {
    name: "fixed",
    description: "fixed weights, one per adapter: W = W0 + sum_i w_i s_i B_i A_i",
    params: &[Param { name: "weights", ty: "[float]", default: "required (standalone: the :WEIGHT of each --adapter, default 1)", help: "one weight per adapter", example: "[0.5, 0.5]" }],
    standalone: true,
};

/// w_{m,i} = weights[i] on every module.
pub fn coefficients(names: &[String], adapters: &[PeftAdapter], weights: &[f64]) -> Result<Coefficients, MergeError> {
    uniform("`weights`", names, adapters, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::adapter;

    #[test]
    fn weights_on_every_module_and_length_checked() {
        let a = adapter(&[(0, 4, 3), (1, 4, 3)], 2, 4.0, false, 1);
        let b = adapter(&[(1, 4, 3)], 3, 3.0, false, 2);
        let names = vec!["a".to_string(), "b".to_string()];
        let c = coefficients(&names, &[a.clone(), b.clone()], &[0.25, 0.75]).unwrap();
        assert_eq!(c.values.len(), 2, "union of modules");
        assert!(c.values.values().all(|v| v == &[0.25, 0.75]));
        let e = coefficients(&names, &[a, b], &[1.0]).unwrap_err().to_string();
        assert!(e.contains("`weights` has 1 value but there are 2 adapters"), "{e}");
    }
}
