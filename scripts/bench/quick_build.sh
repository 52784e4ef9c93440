# Sourced by the bench scripts: sets up libtorch (scripts/libtorch.sh, cached in .cache/), builds
# the binary users run (scripts/run.sh's `quick` profile, libtorch backend only) and sets BIN to it.
# Expects the repository root as the working directory.
LIBTORCH="$(bash scripts/libtorch.sh | tail -n 1)"
export LIBTORCH
cargo build --locked --quiet --profile quick --no-default-features --features tch --bin reccocktail
BIN=target/quick/reccocktail
