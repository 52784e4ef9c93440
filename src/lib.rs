//! reccocktail: LLM-based recommendation experiments from declarative TOML recipes.
//!
//! The flow: recipe TOML -> [`recipe::Recipe`] (parsed, validated) -> [`recipe::ResolvedRecipe`]
//! (defaults, references, sweeps) -> [`plan::Plan`] (a DAG of content-keyed stages) ->
//! [`exec::run`] (cached, resumable stages) -> result tables.

pub mod assets;
pub mod backend;
pub mod baselines;
pub mod bench;
pub mod civil;
pub mod cli;
pub mod cpuinfo;
pub mod data;
pub mod dropout;
pub mod error;
pub mod eval;
pub mod exec;
pub mod memory;
pub mod merge;
pub mod model;
pub mod plan;
pub mod prompt;
pub mod recipe;
pub mod results;
pub mod rng;
pub mod sasrec;
pub mod slurm;
pub mod table;
pub mod train;

pub use error::Error;
