#!/usr/bin/env bash
# Forward throughput of SmolLM2-135M on CPU: reccocktail (flex, and libtorch when available)
# side by side with PyTorch + transformers on the same machine, threads and shapes; prints ratios.
#
#   bash scripts/bench/forward.sh PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
# The peer: scripts/bench/peer.sh (pinned, installed on first use; PYTHON=<python> with torch,
# transformers and gguf to use another; never a dependency of the tool).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
GGUF="${1:?usage: forward.sh GGUF}"
# After the arguments are checked: the first use installs the peer (~6 GB).
source scripts/bench/peer.sh
peer_python
THREADS="${THREADS:-2}"
SHAPE=(--batch 4 --iters 5)
peer=$("$PYTHON" scripts/bench/peer_forward.py "$GGUF" "${SHAPE[@]}" --seq-len 128 --threads "$THREADS" 2>/dev/null | tail -n1)
peer_tps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$peer")
echo "peer  pytorch      ${peer_tps} tokens/s"
run() {
  local backend=$1; shift
  local out
  out=$("$@" bench forward --model "$GGUF" "${SHAPE[@]}" --seq-len 128 --backend "$backend" --threads "$THREADS")
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); t=r["forward"]["tokens_per_s"]; print(f"ours  {sys.argv[2]:<12} {t:.1f} tokens/s   ratio to peer {t/float(sys.argv[3]):.2f}x")' "$out" "$backend" "$peer_tps"
}
# The dev profile (dependencies at opt-level 3, see Cargo.toml) is what scripts/run.sh runs; the
# tensor kernels are the dependencies' either way.
cargo build --locked --quiet --bin reccocktail
run flex target/debug/reccocktail
if LIBTORCH="$(bash scripts/libtorch.sh 2>/dev/null | tail -n1)"; then
  export LIBTORCH
  cargo build --locked --quiet --features tch --bin reccocktail
  run tch target/debug/reccocktail
fi
