//! Benchmarks behind `reccocktail bench`: each times one workload of the library on this machine
//! and prints figures that `scripts/bench/*` set side by side with a peer (PyTorch) run. Nothing
//! here is used by a recipe run.

pub mod agreement;
pub mod entropy;
pub mod eval;
pub mod forward;
pub mod merge;
pub mod sasrec;
pub mod train;
