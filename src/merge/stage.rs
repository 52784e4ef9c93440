//! The plan's merge stage (`merge:<arm>`, `merge:<arm>:<setting>`): the arm's adapters (each
//! `adapter` input's `adapter/`) merged by the arm's method into `<out>/adapter/`, with
//! `<out>/coefficients.parquet` (layer, module, adapter, value) and `<out>/merge.json`.

use std::path::Path;
use std::time::Instant;

use polars::prelude::Column;

use super::params::MergeParams;
use super::{MergeOutput, adaptation, check_compatible, from_coefficients, merge, summary_json};
use crate::table::{frame, write_json, write_parquet};
use crate::exec::context::{StageContext, StageError};
use crate::model::peft::{PeftAdapter, base_model_mismatches};
use crate::plan::Role;
use crate::recipe::merge::MergeConfig;

/// Run a merge stage into `ctx.out`.
pub fn run(ctx: &StageContext<'_>, p: &MergeParams) -> Result<(), StageError> {
    let start = Instant::now();
    let (names, config) = (&p.adapters, &p.merge);
    let rank = p.rank.map(|r| r as usize);
    let dirs = ctx.inputs_of(Role::Adapter);
    if dirs.len() != names.len() {
        return Err(StageError::Failed(format!("stage `{}` has {} adapter inputs for {} adapters", ctx.stage.id, dirs.len(), names.len())));
    }
    let mut adapters = Vec::with_capacity(names.len());
    for (_, dir) in dirs {
        adapters.push(PeftAdapter::read(&dir.join("adapter"))?);
    }
    check_compatible(names, &adapters)?;
    for w in base_model_mismatches(names, &adapters, None) {
        (ctx.log)(&format!("{}: warning: {w}", ctx.stage.id));
    }
    let output = match (config, &p.entropy) {
        (MergeConfig::Entropy { .. }, Some(e)) => {
            let coef = adaptation::learn(ctx, names, &adapters, config, e)?;
            from_coefficients(config, names, &adapters, coef, rank)?
        }
        (MergeConfig::Entropy { .. }, None) => return Err(StageError::Failed(format!("stage `{}`: an entropy merge without its entropy parameters", ctx.stage.id))),
        _ => merge(names, &adapters, config, rank)?,
    };
    let seconds = start.elapsed().as_secs_f64();
    write_artifacts(ctx.out, config, &output, seconds)?;
    let r = &output.report;
    let energy = r.dropped_energy.map_or(String::new(), |d| format!(", dropped energy {d:.3e}"));
    (ctx.log)(&format!(
        "{}: {} of {} -> rank {}..{} on {} modules{}{energy} ({seconds:.1}s)",
        ctx.stage.id,
        r.method,
        names.join(" + "),
        r.output_rank.0,
        r.output_rank.1,
        r.modules,
        if r.exact { ", exact" } else { "" }
    ));
    Ok(())
}

/// Write `adapter/`, `coefficients.parquet` (layer, module, adapter, value; the report names the
/// arm) and `merge.json` into `out`.
pub fn write_artifacts(out: &Path, config: &MergeConfig, output: &MergeOutput, seconds: f64) -> Result<(), StageError> {
    output.adapter.save(&out.join("adapter"))?;
    let c = &output.coefficients;
    let (mut layers, mut modules, mut adapters, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (&(layer, proj), ws) in &c.values {
        for (name, w) in c.adapters.iter().zip(ws) {
            layers.push(layer as u32);
            modules.push(proj.hf_name().to_string());
            adapters.push(name.clone());
            values.push(*w);
        }
    }
    let mut df = frame(vec![
        Column::new("layer".into(), layers),
        Column::new("module".into(), modules),
        Column::new("adapter".into(), adapters),
        Column::new("value".into(), values),
    ])?;
    write_parquet(&mut df, &out.join("coefficients.parquet"))?;
    write_json(&out.join("merge.json"), &summary_json(config, output, seconds))?;
    Ok(())
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
        for (i, id) in stage.input_ids().enumerate() {
            let dir = tmp.join(id.replace(':', "_"));
            adapter(&[(0, 8, 6), (1, 8, 6)], 2 + i, 4.0, false, i as u64).save(&dir.join("adapter")).unwrap();
            inputs.insert(id.to_string(), dir);
        }
        assert_eq!(inputs.len(), 2, "{:?}", stage.inputs);
        let out = tmp.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let runtime = crate::backend::select(crate::recipe::types::BackendChoice::Auto, crate::backend::DeviceSpec::Cpu, None).unwrap();
        let lines = std::cell::RefCell::new(Vec::new());
        let log = |l: &str| lines.borrow_mut().push(l.to_string());
        let failed = std::collections::BTreeMap::new();
        let progress = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let ctx = StageContext { stage, inputs, failed_inputs: &failed, out: &out, scratch: tmp.join("scratch"), run_dir: &tmp, runtime: &runtime, log: &log, progress: &progress };
        let crate::plan::StageParams::Merge(params) = &stage.params else { panic!("a merge stage has merge parameters") };
        run(&ctx, params).unwrap();
        let merged = PeftAdapter::read(&out.join("adapter")).unwrap();
        assert_eq!(merged.modules[&(0, crate::model::lora::Proj::Q)].a.shape[0], 5);
        let df = crate::table::read_parquet(&out.join("coefficients.parquet")).unwrap();
        assert_eq!(crate::table::names(&df), ["layer", "module", "adapter", "value"]);
        assert_eq!(df.height(), 4, "2 modules x 2 adapters");
        assert_eq!(crate::table::strs(&df, "module").unwrap()[0], "q_proj");
        assert_eq!(crate::table::opt_f64s(&df, "value").unwrap(), vec![Some(0.5); 4]);
        let meta: serde_json::Value = crate::table::read_json(&out.join("merge.json")).unwrap();
        assert_eq!(meta["method"], "fixed");
        assert!(lines.borrow()[0].starts_with("merge:fixed: fixed of "), "{:?}", lines.borrow());
        std::fs::remove_dir_all(&tmp).ok();
    }
}
