#!/usr/bin/env bash
# Run a recipe with the fastest backend this machine can have.
#
#   bash scripts/run.sh recipes/quickstart.toml [reccocktail run options...]
#
# Sets up libtorch from the package index (scripts/libtorch.sh, cached in .cache/) and builds with
# the libtorch backend; if that is impossible here it says so and uses the pure-Rust flex backend.
# RECCOCKTAIL_BACKEND=flex skips libtorch. Builds use the dev profile with optimized dependencies
# (see Cargo.toml), which shares its build with `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[[ $# -ge 1 ]] || { echo "usage: bash scripts/run.sh RECIPE [run options...]" >&2; exit 2; }
command -v cargo >/dev/null || { echo "error: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

features=()
if [[ "${RECCOCKTAIL_BACKEND:-auto}" != flex ]]; then
  if libtorch="$(bash scripts/libtorch.sh | tail -n 1)"; then
    export LIBTORCH="$libtorch"
    features=(--features tch)
  else
    echo "run.sh: libtorch could not be set up; falling back to the flex backend (slower)" >&2
  fi
fi
cargo build --locked --quiet "${features[@]}" --bin reccocktail
exec target/debug/reccocktail run "$@"
