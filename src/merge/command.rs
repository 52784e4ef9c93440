//! `reccocktail merge`: PEFT adapters of one base model in, one merged PEFT adapter (or, with
//! `--dense`, the merged model as an HF directory) out — like mergekit, but exact for LoRA.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::builder::{PossibleValue, PossibleValuesParser};
use serde::Serialize;

use super::{MergeError, MergeReport, combine, merge};
use crate::model::peft::{PeftAdapter, base_model_mismatches, module_name};
use crate::recipe::merge::{MergeConfig, merge_config};
use crate::recipe::resolve::DEFAULT_SEED;

fn methods_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(super::declarations().map(|m| PossibleValue::new(m.name).help(m.description)))
}

#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Merge method (see below for each method's parameters).
    #[arg(long, value_parser = methods_parser())]
    pub method: String,
    /// PEFT adapter directory, optionally weighted: DIR or DIR:WEIGHT (default 1; repeatable, at least one).
    #[arg(long = "adapter", required = true, value_parser = crate::model::commands::parse_adapter_arg)]
    pub adapters: Vec<(PathBuf, f64)>,
    /// The base model (HF directory or .gguf): checks the adapters' shapes against it; needed by --dense.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// task_arithmetic: lambda for every adapter (times its :WEIGHT); ties, dare: scale of the merged delta.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// ties: fraction of each delta's entries kept (default 0.5).
    #[arg(long)]
    pub density: Option<f64>,
    /// dare: probability of dropping each delta entry (default 0.5).
    #[arg(long)]
    pub drop_rate: Option<f64>,
    /// dare: seed of the drop masks (default 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// SVD-truncate the merged adapter to this rank (ties, dare: factorization rank, default the sum of the ranks).
    #[arg(long)]
    pub rank: Option<usize>,
    /// Output directory: a PEFT adapter (or, with --dense, an HF model directory), plus merge.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the dense merged model W0 + ΔW (needs --base).
    #[arg(long)]
    pub dense: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Refuse adapters whose recorded base models (`base_model_name_or_path`) disagree with each
    /// other or with --base, instead of warning.
    #[arg(long)]
    pub strict: bool,
}

/// What the command did.
#[derive(Debug, Serialize)]
pub struct MergeSummary {
    pub out: PathBuf,
    pub dense: bool,
    #[serde(flatten)]
    pub report: MergeReport,
    pub seconds: f64,
    /// Base-model disagreements that did not stop the merge (see --strict).
    pub warnings: Vec<String>,
}

impl MergeSummary {
    pub fn render(&self) -> String {
        let r = &self.report;
        let names: Vec<&str> = r.adapters.iter().map(|a| a.name.as_str()).collect();
        let what = if self.dense { "dense HF model".to_string() } else { format!("PEFT adapter, rank {}", rank_text(r.output_rank)) };
        let mut s: String = self.warnings.iter().map(|w| format!("warning: {w}\n")).collect();
        s += &format!("merged {} with `{}` -> {} ({what}, {} modules)\n", names.join(" + "), r.method, self.out.display(), r.modules);
        if let Some(d) = r.dropped_energy {
            s.push_str(&format!("dropped energy {:.3e} ({})\n", d, if r.exact { "exact" } else { "approximate" }));
        } else {
            s.push_str("exact: the weighted factors stacked along the rank axis\n");
        }
        s
    }
}

fn rank_text((lo, hi): (usize, usize)) -> String {
    if lo == hi { lo.to_string() } else { format!("{lo}..{hi}") }
}

fn invalid(m: impl Into<String>) -> MergeError {
    MergeError::Invalid(m.into())
}

/// Names of the adapters in tables and messages: their directory names (numbered if repeated).
fn adapter_names(dirs: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        let base = d.file_name().map_or_else(|| d.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut name = base.clone();
        let mut k = 2;
        while out.contains(&name) {
            name = format!("{base}#{k}");
            k += 1;
        }
        out.push(name);
    }
    out
}

/// The method's configuration from the flags; flags that do not apply to the method are errors.
pub fn config_from_args(args: &MergeArgs) -> Result<MergeConfig, MergeError> {
    let m = args.method.as_str();
    let method = super::find(m).ok_or_else(|| invalid(format!("unknown merge method `{m}`")))?;
    let decl = method.declaration();
    if !decl.standalone {
        let standalone: Vec<&str> = super::declarations().filter(|d| d.standalone).map(|d| d.name).collect();
        return Err(invalid(format!("`{m}` runs only inside a recipe (`reccocktail run`): {}; standalone methods: {}", decl.description, standalone.join(", "))));
    }
    // A flag applies to the methods that declare the parameter it sets.
    for (flag, param, given) in [("lambda", "lambda", args.lambda.is_some()), ("density", "density", args.density.is_some()), ("drop-rate", "drop_rate", args.drop_rate.is_some()), ("seed", "seed", args.seed.is_some())] {
        if given && !decl.params.iter().any(|p| p.name == param) {
            let takers: Vec<&str> = super::declarations().filter(|d| d.standalone && d.params.iter().any(|p| p.name == param)).map(|d| d.name).collect();
            return Err(invalid(format!("--{flag} does not apply to `{m}` (only to {})", takers.join(", "))));
        }
    }
    let flags = super::Flags { weights: args.adapters.iter().map(|(_, w)| *w).collect(), lambda: args.lambda, density: args.density, drop_rate: args.drop_rate, seed: args.seed };
    // The flags become the recipe's merge table and resolve through the recipe's own function,
    // so the defaults (density, drop rate, seed, ...) are the recipe's.
    let spec = method.from_flags(&flags).ok_or_else(|| invalid(format!("`{m}` has no command-line form")))?;
    Ok(merge_config(&spec, args.adapters.len(), DEFAULT_SEED))
}

/// Run `reccocktail merge`.
pub fn run(args: &MergeArgs) -> Result<MergeSummary, MergeError> {
    let start = Instant::now();
    let config = config_from_args(args)?;
    if args.dense && args.base.is_none() {
        return Err(invalid("--dense writes W0 + ΔW and needs the base model: add --base MODEL (an HF directory or a .gguf file)"));
    }
    let dirs: Vec<PathBuf> = args.adapters.iter().map(|(d, _)| d.clone()).collect();
    let names = adapter_names(&dirs);
    let adapters = dirs.iter().map(|d| PeftAdapter::read(d)).collect::<Result<Vec<_>, _>>()?;
    let base_name = args.base.as_ref().map(|b| b.display().to_string());
    let warnings = base_model_mismatches(&names, &adapters, base_name.as_deref());
    if args.strict && !warnings.is_empty() {
        return Err(invalid(format!("{} (--strict refuses adapters of another base model)", warnings.join("; "))));
    }
    if let Some(base) = &args.base {
        check_against_base(base, &names, &adapters)?;
    }
    let output = merge(&names, &adapters, &config, args.rank)?;
    if args.dense {
        combine::write_dense(args.base.as_deref().expect("checked"), &output.adapter, &args.out)?;
    } else {
        output.adapter.save(&args.out)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut meta = super::summary_json(&config, &output, seconds);
    meta["dense"] = args.dense.into();
    meta["sources"] = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().into();
    meta["warnings"] = warnings.clone().into();
    crate::table::write_json(&args.out.join("merge.json"), &meta)?;
    Ok(MergeSummary { out: args.out.clone(), dense: args.dense, report: output.report, seconds, warnings })
}

/// Every adapted module must exist in the base model with the adapter's shape.
fn check_against_base(base: &Path, names: &[String], adapters: &[PeftAdapter]) -> Result<(), MergeError> {
    let shapes = combine::base_shapes(base)?;
    for (name, a) in names.iter().zip(adapters) {
        for (&(layer, proj), pair) in &a.modules {
            let module = module_name(layer, proj);
            let &(d_out, d_in) = shapes.get(&(layer, proj)).ok_or_else(|| invalid(format!("adapter `{name}` adapts `{module}`, which the base model {} does not have", base.display())))?;
            let got = (pair.b.shape[0], pair.a.shape[1]);
            if got != (d_out, d_in) {
                return Err(invalid(format!("adapter `{name}` at `{module}` is [out, in] = [{}, {}], the base model's layer is [{d_out}, {d_in}]", got.0, got.1)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(method: &str) -> MergeArgs {
        MergeArgs {
            method: method.into(),
            adapters: vec![("x/a".into(), 0.5), ("y/a".into(), 2.0)],
            base: None,
            lambda: None,
            density: None,
            drop_rate: None,
            seed: None,
            rank: None,
            out: "o".into(),
            dense: false,
            json: false,
            strict: false,
        }
    }

    #[test]
    fn flags_map_to_configs_and_inapplicable_flags_are_errors() {
        let mut a = args("task_arithmetic");
        a.lambda = Some(0.5);
        assert_eq!(config_from_args(&a).unwrap(), MergeConfig::TaskArithmetic { lambdas: vec![0.25, 1.0] });
        let mut a = args("fixed");
        assert_eq!(config_from_args(&a).unwrap(), MergeConfig::Fixed { weights: vec![0.5, 2.0] });
        a.density = Some(0.3);
        assert!(config_from_args(&a).unwrap_err().to_string().contains("--density does not apply to `fixed`"));
        assert_eq!(config_from_args(&args("dare")).unwrap(), MergeConfig::Dare { drop_rate: 0.5, lambda: 1.0, weights: vec![0.5, 2.0], seed: 42 });
        assert!(config_from_args(&args("entropy")).unwrap_err().to_string().contains("only inside a recipe"));
        assert_eq!(adapter_names(&["x/a".into(), "y/a".into(), "b".into()]), ["a", "a#2", "b"]);
    }
}
