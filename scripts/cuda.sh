#!/usr/bin/env bash
# Build reccocktail with the libtorch backend for a CUDA GPU machine, from the package index's
# CUDA PyTorch wheel. The build needs no GPU; the machine that runs the binary needs an NVIDIA
# driver and the same PyTorch version installed (its libraries are loaded at run time).
#
#   TORCH_VERSION=2.11.0 bash scripts/cuda.sh       # the last stdout line is the binary's path
#
# On the GPU machine:
#   export LD_LIBRARY_PATH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib"
#   reccocktail env                                   # "backend tch: device cuda:0, smoke test ok"
#   reccocktail run recipes/cold_start_movies.toml --device cuda
#
# TORCH_VERSION must equal the GPU machine's `torch.__version__` without its +cuXXX suffix: the
# binary is compiled against that version's C++ headers. tch 0.22 expects 2.9.0; other versions
# build with LIBTORCH_BYPASS_VERSION_CHECK=1 (2.11.0 was built and run this way, see BENCHMARKS.md).
# The CUDA libraries themselves (cudart, cublas, cudnn...) are not needed here: the link allows
# libtorch_cuda.so's own dependencies to stay unresolved until the GPU machine loads them.
#
# Environment: TORCH_VERSION (default 2.11.0); RECCOCKTAIL_WHEEL_DIR (default .cache/wheels);
# RECCOCKTAIL_KEEP_WHEELS=1 keeps the ~530 MB wheel after extraction. Output:
# target/cuda-$TORCH_VERSION/debug/reccocktail (dev profile: the crates on the host path of tensor
# operations and the arithmetic crates optimized, see Cargo.toml's profiles).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VERSION="${TORCH_VERSION:-2.11.0}"
WHEELS="${RECCOCKTAIL_WHEEL_DIR:-$ROOT/.cache/wheels}"
DEST="$ROOT/.cache/libtorch/$VERSION-cuda"
log() { echo "cuda.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
command -v cargo >/dev/null || die "cargo is not installed"
mkdir -p "$WHEELS" "$(dirname "$DEST")"

if [[ ! -f "$DEST/lib/libtorch_cuda.so" ]]; then
  wheel="$(ls "$WHEELS"/torch-"$VERSION"-cp311-cp311-manylinux*_x86_64.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$wheel" ]]; then
    log "downloading torch==$VERSION with pip ..."
    python3 -m pip download --no-deps --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" "torch==$VERSION" >&2 || die "pip download of torch==$VERSION failed"
    wheel="$(ls "$WHEELS"/torch-"$VERSION"-cp311-cp311-manylinux*_x86_64.whl | head -n1)"
  fi
  python3 - "$wheel" <<'PY' || die "$wheel holds no libtorch_cuda.so: not a CUDA build of PyTorch"
import sys, zipfile
sys.exit(0 if "torch/lib/libtorch_cuda.so" in zipfile.ZipFile(sys.argv[1]).namelist() else 1)
PY
  stage="$(mktemp -d "$DEST.partial.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  log "extracting headers and libraries from $(basename "$wheel") ..."
  python3 - "$wheel" "$stage" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for name in z.namelist():
    if name.startswith(("torch/include/", "torch/lib/", "torch/share/")):
        z.extract(name, sys.argv[2])
PY
  rm -rf "$DEST"
  mv "$stage/torch" "$DEST"
  printf '%s\n' "$VERSION" >"$DEST/build-version"
  [[ "${RECCOCKTAIL_KEEP_WHEELS:-0}" == 1 ]] || rm -f "$wheel"
fi

export LIBTORCH="$DEST" LIBTORCH_CXX11_ABI=1
[[ "$VERSION" == 2.9.0 ]] || export LIBTORCH_BYPASS_VERSION_CHECK=1
export CARGO_TARGET_DIR="$ROOT/target/cuda-$VERSION"
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,--allow-shlib-undefined"
log "building with LIBTORCH=$LIBTORCH into $CARGO_TARGET_DIR (a first build takes tens of minutes here)"
cargo build --locked --features tch --bin reccocktail >&2
echo "$CARGO_TARGET_DIR/debug/reccocktail"
