//! `[cluster]`: what `reccocktail submit` asks the scheduler for, per stage kind. Where the work
//! runs, never what it computes: part of neither the recipe hash nor any stage key.
//!
//! ```toml
//! [cluster.default]       # every job
//! partition = "cpu"
//! time = "01:00:00"
//! cpus = 2
//! mem = "8G"
//! [cluster.train]         # overrides for training jobs (likewise merge, evaluate, sasrec)
//! partition = "gpu"
//! gpus = 1
//! time = "12:00:00"
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Resources of one job; unset fields fall back to `[cluster.default]`'s, then to the scheduler's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobResources {
    /// Slurm partition (`--partition`).
    #[schemars(length(min = 1, max = 256))]
    pub partition: Option<String>,
    /// Slurm account (`--account`).
    #[schemars(length(min = 1, max = 256))]
    pub account: Option<String>,
    /// Time limit (`--time`), e.g. `"02:00:00"` or `"1-00:00:00"`.
    #[schemars(regex(pattern = r"^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$"))]
    pub time: Option<String>,
    /// CPUs per task (`--cpus-per-task`).
    #[schemars(range(min = 1, max = 4096))]
    pub cpus: Option<u32>,
    /// Memory per node (`--mem`), e.g. `"16G"`.
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]?$"))]
    pub mem: Option<String>,
    /// GPUs (`--gres=gpu:N`). Never requested for data stages (fetch, data, split, prompts,
    /// eval-set, baselines, report), which run on CPU.
    #[schemars(range(min = 0, max = 64))]
    pub gpus: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Every job.
    pub default: Option<JobResources>,
    /// Overrides for LoRA training jobs.
    pub train: Option<JobResources>,
    /// Overrides for merge jobs (entropy merges run the model).
    pub merge: Option<JobResources>,
    /// Overrides for evaluation jobs.
    pub evaluate: Option<JobResources>,
    /// Overrides for SASRec training jobs.
    pub sasrec: Option<JobResources>,
}

impl ClusterSpec {
    /// The resources of a job of stage kind `kind` (`train`, `merge`, ...; others are data stages).
    pub fn for_kind(&self, kind: &str) -> JobResources {
        let base = self.default.clone().unwrap_or_default();
        let over = match kind {
            "train" | "import" => self.train.as_ref(),
            "merge" => self.merge.as_ref(),
            "evaluate" => self.evaluate.as_ref(),
            "sasrec" => self.sasrec.as_ref(),
            _ => return JobResources { gpus: None, ..base },
        };
        let Some(o) = over else { return base };
        JobResources {
            partition: o.partition.clone().or(base.partition),
            account: o.account.clone().or(base.account),
            time: o.time.clone().or(base.time),
            cpus: o.cpus.or(base.cpus),
            mem: o.mem.clone().or(base.mem),
            gpus: o.gpus.or(base.gpus),
        }
    }
}

impl JobResources {
    /// As `#SBATCH` option lines.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.partition {
            out.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            out.push(format!("--account={a}"));
        }
        if let Some(t) = &self.time {
            out.push(format!("--time={t}"));
        }
        if let Some(c) = self.cpus {
            out.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            out.push(format!("--mem={m}"));
        }
        if let Some(g) = self.gpus.filter(|&g| g > 0) {
            out.push(format!("--gres=gpu:{g}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_override_the_defaults_and_data_stages_get_no_gpu() {
        let c = ClusterSpec {
            default: Some(JobResources { partition: Some("cpu".into()), time: Some("01:00:00".into()), gpus: Some(1), ..Default::default() }),
            train: Some(JobResources { partition: Some("gpu".into()), time: Some("12:00:00".into()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(c.for_kind("train").sbatch_options(), ["--partition=gpu", "--time=12:00:00", "--gres=gpu:1"]);
        assert_eq!(c.for_kind("evaluate").sbatch_options(), ["--partition=cpu", "--time=01:00:00", "--gres=gpu:1"]);
        assert_eq!(c.for_kind("split").sbatch_options(), ["--partition=cpu", "--time=01:00:00"]);
    }
}
