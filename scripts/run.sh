#!/usr/bin/env bash
# Run a recipe with the fastest backend this machine can have.
#
#   bash scripts/run.sh recipes/quickstart.toml [reccocktail run options...]
#
# Sets up libtorch from the package index (scripts/libtorch.sh, cached in .cache/) and builds with
# the libtorch backend; if that is impossible here it says so and uses the pure-Rust flex backend.
# RECCOCKTAIL_BACKEND=flex skips libtorch. With libtorch the binary is built in the `quick` profile
# (libtorch backend only, Rust dependencies unoptimized: the shortest first build, see Cargo.toml)
# as target/quick/reccocktail; with flex in the dev profile with optimized dependencies, which
# shares its build with `cargo test`, as target/debug/reccocktail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[[ $# -ge 1 ]] || { echo "usage: bash scripts/run.sh RECIPE [run options...]" >&2; exit 2; }
command -v cargo >/dev/null || { echo "error: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

build=(--features flex)
bin=target/debug/reccocktail
if [[ "${RECCOCKTAIL_BACKEND:-auto}" != flex ]]; then
  if libtorch="$(bash scripts/libtorch.sh | tail -n 1)"; then
    export LIBTORCH="$libtorch"
    build=(--profile quick --no-default-features --features tch)
    bin=target/quick/reccocktail
  else
    echo "run.sh: libtorch could not be set up; falling back to the flex backend (slower)" >&2
  fi
fi
[[ -x "$bin" ]] || echo "run.sh: first build of $bin (cargo ${build[*]}); this takes a while" >&2
cargo build --locked --quiet "${build[@]}" --bin reccocktail
exec "$bin" run "$@"
