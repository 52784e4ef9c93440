# Sourced by the bench scripts: the peer they time ours against, and the model they time.
#
# peer_python: sets PYTHON to the peer, PyTorch + transformers + peft (+ gguf to read the model,
#   pyarrow to read prompts), and prints its versions. Unless PYTHON is given (a GPU machine's
#   venv, say), that is a venv of its own, PEER_VENV (default .cache/peer), made on first use
#   with pip from scripts/bench/peer.txt: every package at an exact version, installed with
#   --no-deps, so that the peer does not drift between machines or months (a peer venv installed
#   fresh on 2026-12-04 moved a ratio from 1.23x to 0.91x on the same kind of host: BENCHMARKS.md).
#   About 6 GB (PyTorch's CUDA build, which runs on a CPU), a few minutes to install. Remade when
#   peer.txt changes.
# bench_gguf [PATH]: sets GGUF to PATH, or, without one, to SmolLM2-135M-Instruct's GGUF fetched
#   into the artifact cache by `$BIN fetch` (BIN: the binary quick_build.sh builds).
# Expects the repository root as the working directory.

peer_python() {
  if [ -z "${PYTHON:-}" ]; then
    local venv="${PEER_VENV:-$PWD/.cache/peer}"
    local want
    want="pinned $(sha256sum scripts/bench/peer.txt | cut -d' ' -f1)"
    if [ "$(cat "$venv/.complete" 2>/dev/null)" != "$want" ]; then
      echo "peer.sh: installing the pinned peer into $venv (scripts/bench/peer.txt; ~6 GB, minutes)" >&2
      rm -rf "$venv"
      python3 -m venv "$venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r scripts/bench/peer.txt >&2
      echo "$want" >"$venv/.complete"
    fi
    PYTHON="$venv/bin/python"
  fi
  export PYTHON
  "$PYTHON" - <<'PEER' || { echo "peer.sh: $PYTHON cannot import torch" >&2; return 1; }
import importlib, sys
import torch
found = [f"{m} {importlib.import_module(m).__version__}" for m in ("transformers", "peft") if importlib.util.find_spec(m)]
print(", ".join([f"peer: Python {sys.version.split()[0]}", f"PyTorch {torch.__version__}"] + found))
PEER
}

bench_gguf() {
  if [ -n "${1:-}" ]; then
    GGUF="$1"
  else
    local dir
    dir=$("$BIN" fetch smollm2-135m-instruct | sed -n 's/.* -> \([^ ]*\).*/\1/p')
    GGUF=$(ls "$dir"/*.gguf 2>/dev/null | head -n1)
    [ -n "$GGUF" ] || { echo "peer.sh: no GGUF after \`$BIN fetch smollm2-135m-instruct\`" >&2; return 1; }
  fi
  [ -f "$GGUF" ] || { echo "peer.sh: no model file $GGUF" >&2; return 1; }
  export GGUF
}
