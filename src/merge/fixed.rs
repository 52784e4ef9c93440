//! `fixed`: the weights are given, one per adapter, the same on every module
//! (`[1, 0]` = the first adapter alone, `[0.5, 0.5]` = the average).

use super::{Coefficients, Method, MergeError, Param, check_list};
use crate::model::peft::PeftAdapter;

pub const METHOD: Method = Method {
    name: "fixed",
    description: "fixed weights, one per adapter: W = W0 + sum_i w_i s_i B_i A_i",
    params: &[Param { name: "weights", ty: "[float]", default: "required (standalone: the :WEIGHT of each --adapter, default 1)", help: "one weight per adapter", example: "[0.5, 0.5]" }],
    standalone: true,
};

/// w_{m,i} = weights[i] on every module.
pub fn coefficients(names: &[String], adapters: &[PeftAdapter], weights: &[f64]) -> Result<Coefficients, MergeError> {
    check_list("`weights`", weights, adapters.len())?;
    Ok(Coefficients::uniform(names, adapters, weights))
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
