//! The plan's merge stage (`merge:<arm>`, `merge:<arm>:<setting>`): the arm's adapters (each
//! input stage's `adapter/`) merged by the arm's method into `<out>/adapter/`, with
//! `<out>/coefficients.parquet` (arm, layer, module, adapter, value) and `<out>/merge.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::Column;
use serde_json::json;

use super::{MergeOutput, check_compatible, entropy, from_coefficients, merge};
use crate::data::table::{frame, write_json, write_parquet};
use crate::exec::{StageContext, StageError};
use crate::model::peft::PeftAdapter;
use crate::recipe::resolve::MergeConfig;

/// Run a merge stage into `ctx.out`.
pub fn run(ctx: &StageContext<'_>) -> Result<(), StageError> {
    let start = Instant::now();
    let params = &ctx.stage.params;
    let bad = |what: &str, e: &dyn std::fmt::Display| StageError::Failed(format!("stage `{}`: parameter `{what}`: {e}", ctx.stage.id));
    let names: Vec<String> = serde_json::from_value(params["adapters"].clone()).map_err(|e| bad("adapters", &e))?;
    let config: MergeConfig = serde_json::from_value(params["merge"].clone()).map_err(|e| bad("merge", &e))?;
    let rank: Option<usize> = serde_json::from_value(params.get("rank").cloned().unwrap_or_default()).map_err(|e| bad("rank", &e))?;
    let arm = arm_name(&ctx.stage.id, params.get("setting").and_then(|s| s.as_str()));
    let mut adapters = Vec::with_capacity(names.len());
    for name in &names {
        adapters.push(PeftAdapter::read(&adapter_input(ctx, name)?.join("adapter"))?);
    }
    check_compatible(&names, &adapters)?;
    let output = match &config {
        MergeConfig::Entropy { .. } => {
            let coef = entropy::learn(ctx, &adapters, &config)?;
            from_coefficients(&config, &names, &adapters, coef, rank)?
        }
        _ => merge(&names, &adapters, &config, rank)?,
    };
    let seconds = start.elapsed().as_secs_f64();
    write_artifacts(ctx.out, &arm, &config, &output, seconds)?;
    let r = &output.report;
    let energy = r.dropped_energy.map_or(String::new(), |d| format!(", dropped energy {d:.3e}"));
    (ctx.log)(&format!(
        "merge {arm}: {} of {} -> rank {}..{} on {} modules{}{energy} ({seconds:.1}s)",
        r.method,
        names.join(" + "),
        r.output_rank.0,
        r.output_rank.1,
        r.modules,
        if r.exact { ", exact" } else { "" }
    ));
    Ok(())
}

/// The arm of a stage id `merge:<arm>` or `merge:<arm>:<setting>`.
fn arm_name(id: &str, setting: Option<&str>) -> String {
    let rest = id.strip_prefix("merge:").unwrap_or(id);
    let rest = setting.and_then(|s| rest.strip_suffix(&format!(":{s}"))).unwrap_or(rest);
    rest.to_string()
}

/// The artifact directory of the stage that produced adapter `name` (`train:` or `import:`).
fn adapter_input(ctx: &StageContext<'_>, name: &str) -> Result<PathBuf, StageError> {
    ["train", "import"]
        .iter()
        .find_map(|k| ctx.inputs.get(&format!("{k}:{name}")))
        .cloned()
        .ok_or_else(|| StageError::Failed(format!("stage `{}` has no `train:{name}` or `import:{name}` input", ctx.stage.id)))
}

/// Write `adapter/`, `coefficients.parquet` and `merge.json` into `out`.
pub fn write_artifacts(out: &Path, arm: &str, config: &MergeConfig, output: &MergeOutput, seconds: f64) -> Result<(), StageError> {
    output.adapter.save(&out.join("adapter"))?;
    let c = &output.coefficients;
    let (mut arms, mut layers, mut modules, mut adapters, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (&(layer, proj), ws) in &c.values {
        for (name, w) in c.adapters.iter().zip(ws) {
            arms.push(arm.to_string());
            layers.push(layer as u32);
            modules.push(proj.hf_name().to_string());
            adapters.push(name.clone());
            values.push(*w);
        }
    }
    let mut df = frame(vec![
        Column::new("arm".into(), arms),
        Column::new("layer".into(), layers),
        Column::new("module".into(), modules),
        Column::new("adapter".into(), adapters),
        Column::new("value".into(), values),
    ])?;
    write_parquet(&mut df, &out.join("coefficients.parquet"))?;
    write_json(&out.join("merge.json"), &summary_json(Some(arm), config, output, seconds))?;
    Ok(())
}

/// `merge.json`: method, parameters, adapters, output rank, dropped energy, seconds.
pub fn summary_json(arm: Option<&str>, config: &MergeConfig, output: &MergeOutput, seconds: f64) -> serde_json::Value {
    let r = &output.report;
    json!({
        "arm": arm,
        "method": r.method,
        "params": config,
        "adapters": r.adapters,
        "output_rank": { "min": r.output_rank.0, "max": r.output_rank.1 },
        "modules": r.modules,
        "rank": r.rank,
        "dropped_energy": r.dropped_energy,
        "exact": r.exact,
        "note": r.note,
        "seconds": seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_stage_of_a_recipe_writes_the_adapter_the_table_and_the_summary() {
        use crate::merge::tests::adapter;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes");
        let loaded = crate::recipe::load(&root.join("small_latest.toml")).unwrap();
        let resolved = crate::recipe::ResolvedRecipe::from_loaded(&loaded).unwrap();
        let plan = crate::plan::compile(&resolved).unwrap();
        let stage = plan.stages.iter().find(|s| s.id == "merge:fixed").expect("a merge stage");
        let tmp = std::env::temp_dir().join(format!("rc-merge-stage-{}", std::process::id()));
        let mut inputs = std::collections::BTreeMap::new();
        for (i, id) in stage.inputs.iter().enumerate() {
            let dir = tmp.join(id.replace(':', "_"));
            adapter(&[(0, 8, 6), (1, 8, 6)], 2 + i, 4.0, false, i as u64).save(&dir.join("adapter")).unwrap();
            inputs.insert(id.clone(), dir);
        }
        assert_eq!(inputs.len(), 2, "{:?}", stage.inputs);
        let out = tmp.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let runtime = crate::backend::select(crate::recipe::types::BackendChoice::Auto, crate::backend::DeviceSpec::Cpu, None).unwrap();
        let lines = std::cell::RefCell::new(Vec::new());
        let log = |l: &str| lines.borrow_mut().push(l.to_string());
        let failed = std::collections::BTreeMap::new();
        let progress = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let ctx = StageContext { resolved: &resolved, plan: &plan, stage, inputs, failed_inputs: &failed, out: &out, scratch: tmp.join("scratch"), run_dir: &tmp, runtime: &runtime, log: &log, progress: &progress };
        crate::exec::stages::run_stage(&ctx).unwrap();
        let merged = PeftAdapter::read(&out.join("adapter")).unwrap();
        assert_eq!(merged.modules[&(0, crate::model::lora::Proj::Q)].a.shape[0], 5);
        let df = crate::data::table::read_parquet(&out.join("coefficients.parquet")).unwrap();
        assert_eq!(crate::data::table::names(&df), ["arm", "layer", "module", "adapter", "value"]);
        assert_eq!(df.height(), 4, "2 modules x 2 adapters");
        assert_eq!(crate::data::table::strs(&df, "arm").unwrap(), vec!["fixed"; 4]);
        assert_eq!(crate::data::table::strs(&df, "module").unwrap()[0], "q_proj");
        assert_eq!(crate::data::table::opt_f64s(&df, "value").unwrap(), vec![Some(0.5); 4]);
        let meta: serde_json::Value = crate::data::table::read_json(&out.join("merge.json")).unwrap();
        assert_eq!(meta["method"], "fixed");
        assert_eq!(meta["arm"], "fixed");
        assert!(lines.borrow()[0].starts_with("merge fixed: fixed of "), "{:?}", lines.borrow());
        std::fs::remove_dir_all(&tmp).ok();
    }

    #[test]
    fn arm_names_from_stage_ids() {
        assert_eq!(arm_name("merge:mix", None), "mix");
        assert_eq!(arm_name("merge:adaptive:warm", Some("warm")), "adaptive");
    }
}
