//! Merging LoRA adapters into one cocktail.

pub mod adaptation;
pub mod entropy;
pub mod learnable;

use std::collections::BTreeMap;

use crate::model::lora::Proj;

/// Merge coefficients w_{m,i}: for each adapted module m = (layer, proj), one weight per input adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficients {
    pub adapters: Vec<String>,
    pub values: BTreeMap<(usize, Proj), Vec<f64>>,
}
