//! `task_arithmetic`: `W = W0 + sum_i lambda_i s_i B_i A_i`, with one lambda for every adapter
//! or one per adapter (the recipe's `lambda` is expanded to one per adapter when resolved).

use super::{Coefficients, Combination, Flags, MergeError, MergeMethod, Method, Param, other_config, uniform};
use crate::model::peft::PeftAdapter;
use crate::recipe::merge::{Lambda, MergeSpec};
use crate::recipe::merge::MergeConfig;

pub struct TaskArithmetic;

impl MergeMethod for TaskArithmetic {
    fn declaration(&self) -> &'static Method {
        &METHOD
    }

    /// `--lambda` (default 1) scales each adapter's `:WEIGHT`.
    fn from_flags(&self, f: &Flags) -> Option<MergeSpec> {
        let lambda = f.lambda.unwrap_or(1.0);
        Some(MergeSpec::TaskArithmetic { lambda: Lambda::PerAdapter(f.weights.iter().map(|w| w * lambda).collect()) })
    }

    fn combine(&self, config: &MergeConfig, names: &[String], adapters: &[PeftAdapter]) -> Result<Combination, MergeError> {
        let MergeConfig::TaskArithmetic { lambdas } = config else { return Err(other_config(&METHOD, config)) };
        Ok(Combination::Linear(coefficients(names, adapters, lambdas)?))
    }
}

pub const METHOD: Method = Method {
    name: "task_arithmetic",
    description: "task arithmetic: w_i = lambda for every adapter, or lambda_i per adapter",
    params: &[Param {
        name: "lambda",
        ty: "float | [float]",
        default: "required (standalone: --lambda, default 1, times the :WEIGHT of each --adapter)",
        help: "one scalar for all adapters, or one per adapter",
        example: "0.7",
    }],
    standalone: true,
};

/// w_{m,i} = lambdas[i] on every module.
pub fn coefficients(names: &[String], adapters: &[PeftAdapter], lambdas: &[f64]) -> Result<Coefficients, MergeError> {
    uniform("`lambda`", names, adapters, lambdas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::adapter;

    #[test]
    fn per_adapter_lambdas() {
        let a = adapter(&[(0, 4, 3)], 2, 4.0, false, 1);
        let names = vec!["a".to_string(), "b".to_string()];
        let c = coefficients(&names, &[a.clone(), a.clone()], &[0.3, 0.9]).unwrap();
        assert_eq!(c.values[&(0, crate::model::lora::Proj::Q)], vec![0.3, 0.9]);
        assert!(coefficients(&names, &[a.clone(), a], &[0.3, f64::NAN]).unwrap_err().to_string().contains("non-finite"));
    }
}
