//! The command line (clap). Each subcommand is a thin layer over the library.

mod bench;
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::backend::{self, DeviceSpec};
use crate::error::Error;
use bench::BenchCommand;
use common::{parse_backend, print_json};
use crate::exec::{self, Cache, RunOptions};
use crate::plan;
use crate::recipe::{self, RecipeError, ResolvedRecipe};
use crate::recipe::types::BackendChoice;

#[derive(Debug, Parser)]
#[command(name = "reccocktail", version, about = "LLM-based recommendation experiments (RecCocktail LoRA merging) from TOML recipes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check recipes and report every problem, with file:line:col (exit 2 on any problem).
    Validate {
        #[arg(required = true)]
        recipes: Vec<PathBuf>,
        /// Print problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the recipe JSON schema (the committed copy is schema/recipe.schema.json).
    Schema {
        /// Write it to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the resolved recipe: defaults applied, references resolved, sweeps expanded.
    Resolve { recipe: PathBuf },
    /// Print the execution plan (a DAG of cached stages) with each stage's cache status.
    Plan {
        recipe: PathBuf,
        #[arg(long)]
        json: bool,
        /// Results directory holding the artifact cache.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Run a recipe: execute every stage not in the cache, then write the result tables.
    Run {
        recipe: PathBuf,
        /// Run only this stage (by id, see `plan`) and the stages it needs.
        #[arg(long, conflicts_with = "stage")]
        only: Option<String>,
        /// Run exactly this stage; every input must be cached (what a scheduler's job runs).
        #[arg(long)]
        stage: Option<String>,
        /// Log into this existing run directory instead of a new one (a submission's jobs).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Compute nothing: write the result tables from the stages already cached, listing the
        /// arms whose stages are not as not run (for a look at a long run's finished part).
        #[arg(long)]
        cached_only: bool,
        #[command(flatten)]
        on: RunOverrides,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Run the plan as Slurm jobs: one batch job per stage not in the cache, chained with
    /// `afterok` dependencies; the scripts and `submission.json` go into a new run directory.
    Submit {
        recipe: PathBuf,
        /// The scheduler (only Slurm is supported).
        #[arg(long, value_enum, default_value = "slurm")]
        scheduler: Scheduler,
        /// Write the scripts and print the `sbatch` lines without submitting.
        #[arg(long)]
        dry_run: bool,
        /// Passed on to every job's `run`.
        #[command(flatten)]
        on: RunOverrides,
        /// Results directory: the artifact cache every job shares (on a shared filesystem).
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Where each stage of a submission stands: cached, pending, running, failed (with its log),
    /// done; from the cache and `squeue`.
    Status {
        run_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show the compiled backends and check that each one computes and differentiates.
    Env,
    /// Time one workload on this machine and print JSON: `bench forward` / `bench train` (forward
    /// tokens/s, LoRA training throughput), `bench eval` (users ranked per second, likelihood vs
    /// generate), `bench entropy` (one adaptation step per prompt), `bench merge` (merge time and
    /// memory).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Merge PEFT adapters of one base model into one adapter (or, with --dense, a merged HF model),
    /// exactly on the LoRA products s_i B_i A_i; writes merge.json beside the output.
    #[command(after_long_help = crate::merge::registry_help())]
    Merge(crate::merge::command::MergeArgs),
    /// Convert a GGUF model (F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q2_K..Q6_K/Q8_K, dequantized) into an HF directory.
    Convert {
        gguf: PathBuf,
        out: PathBuf,
    },
    /// Generate text with a model (HF directory or .gguf) and optional PEFT adapters; greedy by default.
    Generate {
        /// HF model directory or .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// PEFT adapter directory, optionally weighted: DIR or DIR:WEIGHT (repeatable).
        #[arg(long = "adapter", value_parser = crate::model::commands::parse_adapter_arg)]
        adapters: Vec<(PathBuf, f64)>,
        /// Wrap the prompt in the model's chat template (as one user message).
        #[arg(long)]
        chat: bool,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Stop when the generated text contains this string (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Print {"prompt_ids": [...], "ids": [...], "text": "..."}.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "auto")]
        device: DeviceSpec,
        #[arg(long, value_parser = parse_backend, default_value = "auto")]
        backend: BackendChoice,
        #[arg(long)]
        threads: Option<u32>,
    },
    /// Dataset, domain, split, prompt and evaluation-set statistics of a recipe, with an example
    /// prompt (runs the data stages through the cache).
    Data {
        recipe: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Re-print the summary of a run directory's results table (written by the report stage).
    Report {
        run_dir: PathBuf,
        /// Print the table's rows and the failures as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Fetch known assets (all when none is named) into the artifact cache with the package client.
    Fetch {
        assets: Vec<String>,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// List the artifact cache's entries that no named recipe's plan uses, with their sizes
    /// (fetched assets kept unless --assets); --delete removes them, except those a running worker
    /// holds.
    Gc {
        /// The recipes whose stages to keep (every sweep point; both precisions of `dtype = "auto"`).
        #[arg(required = true)]
        recipes: Vec<PathBuf>,
        /// Remove the unused entries (without it, only list them).
        #[arg(long)]
        delete: bool,
        /// Count fetched models and datasets as unused too when no named recipe uses them.
        #[arg(long)]
        assets: bool,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
}

/// Where a run executes, overriding the recipe's `[experiment]`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOverrides {
    /// Device: auto, cpu, cuda, cuda:N (overrides the recipe).
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Backend: auto, flex, tch (overrides the recipe).
    #[arg(long, value_parser = parse_backend)]
    backend: Option<BackendChoice>,
    /// CPU threads (overrides the recipe).
    #[arg(long)]
    threads: Option<u32>,
}

impl RunOverrides {
    /// As `run` options, for a job's command line.
    fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = self.device {
            out.extend(["--device".to_string(), d.to_string()]);
        }
        if let Some(b) = self.backend {
            out.extend(["--backend".to_string(), crate::recipe::types::serde_name(&b)]);
        }
        if let Some(t) = self.threads {
            out.extend(["--threads".to_string(), t.to_string()]);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Scheduler {
    Slurm,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", render_error(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

fn render_error(e: &Error) -> String {
    match e {
        Error::Recipe(RecipeError::Invalid(d)) => d.to_string(),
        other => format!("error: {other}"),
    }
}

fn resolve(path: &Path) -> Result<ResolvedRecipe, Error> {
    let loaded = recipe::load(path)?;
    if let Some(w) = loaded.warnings_report() {
        eprintln!("{w}\n");
    }
    ResolvedRecipe::from_loaded(&loaded).map_err(Error::Resolve)
}

fn gc(recipes: &[PathBuf], delete: bool, assets: bool, results: &Path) -> Result<(), Error> {
    let resolved = recipes.iter().map(|r| resolve(r)).collect::<Result<Vec<_>, _>>()?;
    let cache = Cache::new(results);
    let text = exec::gc::collect(&cache, &resolved, delete, assets)?;
    print!("{text}");
    Ok(())
}

pub fn dispatch(cmd: Command) -> Result<(), Error> {
    match cmd {
        Command::Validate { recipes, json } => validate(&recipes, json),
        Command::Schema { out } => {
            let text = recipe::schema::schema_text();
            match out {
                Some(path) => std::fs::write(&path, text).map_err(|source| Error::Io { context: format!("writing {}", path.display()), source }),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::Resolve { recipe } => print_json(&resolve(&recipe)?),
        Command::Plan { recipe, json, results } => {
            let resolved = resolve(&recipe)?;
            let plan = plan::compile(&resolved)?;
            let cache = Cache::new(&results);
            let status = |k: &str| cache.status(k);
            if json {
                print_json(&plan.to_json(&status))
            } else {
                print!("{}", plan.render(&status));
                Ok(())
            }
        }
        Command::Submit { recipe, scheduler: Scheduler::Slurm, dry_run, on, results } => {
            let absolute = |p: &Path| std::path::absolute(p).map_err(|source| Error::Io { context: format!("cannot resolve {}", p.display()), source });
            // The jobs start in this directory and read the recipe by the path given here: a
            // recipe's hash and its local files' keys include their paths as written, so the jobs
            // plan exactly what was submitted, and what a local `run` from here would.
            let loaded = recipe::load(&recipe)?;
            if let Some(w) = loaded.warnings_report() {
                eprintln!("{w}\n");
            }
            let resolved = ResolvedRecipe::from_loaded(&loaded).map_err(Error::Resolve)?;
            let plan = plan::compile(&resolved)?;
            let opts = crate::slurm::SubmitOptions {
                recipe,
                results: absolute(&results)?,
                exe: std::env::current_exe().map_err(|source| Error::Io { context: "cannot find this binary".into(), source })?,
                workdir: absolute(Path::new("."))?,
                run_args: on.args(),
                dry_run,
            };
            let cluster = loaded.recipe.cluster.clone().unwrap_or_default();
            let (run_dir, sub) = crate::slurm::submit(&resolved, &plan, &cluster, &opts, &|l| println!("{l}"))?;
            eprintln!("{} job{} {}, {} stage{} cached; run directory: {}", sub.jobs.len(), if sub.jobs.len() == 1 { "" } else { "s" }, if dry_run { "written (dry run)" } else { "submitted" }, sub.cached.len(), if sub.cached.len() == 1 { "" } else { "s" }, run_dir.display());
            Ok(())
        }
        Command::Status { run_dir, json } => {
            let (sub, rows) = crate::slurm::status::status(&run_dir)?;
            if json {
                print_json(&rows)
            } else {
                print!("{}", crate::slurm::status::render(&sub, &rows));
                Ok(())
            }
        }
        Command::Run { recipe, only, stage, run_dir, cached_only, on: RunOverrides { device, backend, threads }, results } => {
            let resolved = resolve(&recipe)?;
            let plan = plan::compile(&resolved)?;
            let e = &resolved.experiment;
            let device = match device {
                Some(d) => d,
                None => e.device.parse::<DeviceSpec>().map_err(Error::Usage)?,
            };
            let runtime = backend::select(backend.unwrap_or(e.backend), device, threads.or(e.threads))?;
            let outcome = exec::run(&resolved, &plan, &runtime, &RunOptions { results_dir: results, only, stage, run_dir, cached_only });
            let run_dir = match &outcome {
                Ok(summary) => Some(summary.run_dir.clone()),
                Err(exec::RunError::Failed { summary, .. }) => Some(summary.run_dir.clone()),
                Err(_) => None,
            };
            // The summary the report stage wrote (when the run reached it), then where it all is.
            if let Some(run_dir) = run_dir {
                if let Ok(text) = std::fs::read_to_string(run_dir.join("summary.md")) {
                    println!("{text}");
                }
                println!("run directory: {}", run_dir.display());
            }
            outcome.map(|_| ()).map_err(Error::Run)
        }
        Command::Data { recipe, json, results } => {
            let resolved = resolve(&recipe)?;
            let plan = plan::compile(&resolved)?;
            let runtime = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, resolved.experiment.threads)?;
            let stats = crate::data::inspect::data_stats(&resolved, &plan, &runtime, &results, &|l| eprintln!("{l}"))?;
            if json {
                print_json(&stats)
            } else {
                print!("{}", crate::data::inspect::render(&stats));
                Ok(())
            }
        }
        Command::Fetch { assets, results } => fetch(&assets, &results),
        Command::Gc { recipes, delete, assets, results } => gc(&recipes, delete, assets, &results),
        Command::Report { run_dir, json } => {
            let results = crate::results::Results::read(&run_dir)?;
            if json {
                print_json(&results)
            } else {
                print!("{}", crate::results::markdown(&results));
                Ok(())
            }
        }
        Command::Bench { what } => bench::run(what),
        Command::Merge(args) => {
            let summary = crate::merge::command::run(&args)?;
            if args.json {
                print_json(&summary)
            } else {
                print!("{}", summary.render());
                Ok(())
            }
        }
        Command::Convert { gguf, out } => {
            crate::model::gguf::convert(&gguf, &out).map_err(Error::Gguf)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Generate { model, adapters, chat, prompt, max_new_tokens, temperature, top_p, seed, stop, json, device, backend, threads } => {
            let runtime = backend::select(backend, device, threads)?;
            let config = crate::model::generate::GenerationConfig { max_new_tokens, temperature, top_p, seed, eos_ids: Vec::new() };
            let args = crate::model::commands::GenerateArgs { model: &model, adapters: &adapters, chat, prompt: &prompt, config, stop: &stop };
            let out = crate::model::commands::generate_text(&args, &runtime).map_err(Error::Model)?;
            if json {
                print_json(&out)
            } else {
                println!("{}", out.text);
                Ok(())
            }
        }
        Command::Env => {
            println!("reccocktail {}", env!("CARGO_PKG_VERSION"));
            for b in backend::compiled_backends() {
                let choice = parse_backend(&b.to_string()).expect("own names");
                let rt = backend::select(choice, DeviceSpec::Auto, None)?;
                let (v, g) = backend::smoke_test(&rt.device);
                let ok = (v, g) == (54.0, 40.0);
                println!("backend {b}: device {}, smoke test {}", rt.device_spec, if ok { "ok" } else { "WRONG RESULT" });
            }
            Ok(())
        }
    }
}

fn fetch(names: &[String], results: &Path) -> Result<(), Error> {
    let mut chosen = Vec::new();
    for n in names {
        let a = crate::assets::find(n).ok_or_else(|| Error::Usage(format!("unknown asset `{n}` (known: {})", crate::assets::names().collect::<Vec<_>>().join(", "))))?;
        chosen.push(a);
    }
    if chosen.is_empty() {
        chosen = crate::assets::ASSETS.iter().collect();
    }
    for a in chosen {
        let (dir, cached) = crate::exec::fetch_into_cache(results, a).map_err(crate::data::DataError::from)?;
        println!("{} {} -> {} ({})", if cached { "cached " } else { "fetched" }, a.name, dir.display(), a.license);
    }
    Ok(())
}

fn validate(recipes: &[PathBuf], json: bool) -> Result<(), Error> {
    let mut failed = 0usize;
    let mut reports = Vec::new();
    for path in recipes {
        match recipe::load(path) {
            Ok(loaded) => {
                let warnings = loaded.warnings_report();
                if json {
                    let problems = warnings.as_ref().map_or(serde_json::json!([]), |w| w.to_json());
                    reports.push(serde_json::json!({ "file": path.display().to_string(), "ok": true, "problems": problems }));
                } else {
                    match &warnings {
                        Some(w) => {
                            eprintln!("{w}\n");
                            println!("{}: ok ({} warning{})", path.display(), w.items.len(), if w.items.len() == 1 { "" } else { "s" });
                        }
                        None => println!("{}: ok", path.display()),
                    }
                }
            }
            Err(RecipeError::Invalid(d)) => {
                failed += 1;
                if json {
                    reports.push(serde_json::json!({ "file": d.file, "ok": false, "problems": d.to_json() }));
                } else {
                    eprintln!("{d}\n");
                }
            }
            Err(e @ RecipeError::Io { .. }) => {
                failed += 1;
                if json {
                    reports.push(serde_json::json!({ "file": path.display().to_string(), "ok": false, "problems": [{ "message": e.to_string() }] }));
                } else {
                    eprintln!("error: {e}\n");
                }
            }
        }
    }
    if json {
        print_json(&reports)?;
    }
    if failed > 0 {
        Err(Error::Usage(format!("{failed} of {} recipe{} invalid", recipes.len(), if recipes.len() == 1 { " is" } else { "s are" })))
    } else {
        Ok(())
    }
}
