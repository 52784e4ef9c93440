#!/usr/bin/env bash
# SASRec training throughput (the paper's MovieLens-1M shapes: 3416 items, batch 128, length 200,
# hidden 50, 2 blocks, 1 head, dropout 0.2): reccocktail's burn SASRec side by side with the same
# network in PyTorch, same threads, same shapes; training sequences per second and the ratio.
#
#   [BACKEND=tch|flex] [THREADS=2] [STEPS=10] bash scripts/bench/sasrec.sh
# The peer: scripts/bench/peer.sh (pinned, installed on first use; PYTHON=<python> with torch to use
# another; never a dependency of the tool). BACKEND=tch (default)
# uses the binary scripts/run.sh builds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/bench/peer.sh
peer_python
THREADS="${THREADS:-2}"
STEPS="${STEPS:-10}"
BACKEND="${BACKEND:-tch}"
if [ "$BACKEND" = tch ]; then
  source scripts/bench/quick_build.sh
  bin="$BIN"
else
  cargo build --locked --quiet --bin reccocktail
  bin=target/debug/reccocktail
fi
ours=$("$bin" bench sasrec --steps "$STEPS" --threads "$THREADS" --backend "$BACKEND")
peer=$("$PYTHON" scripts/bench/peer_sasrec.py --steps "$STEPS" --threads "$THREADS" | tail -n1)
python3 - "$ours" "$peer" "$BACKEND" <<'PY'
import json, sys
o, p, backend = json.loads(sys.argv[1])["sasrec"], json.loads(sys.argv[2]), sys.argv[3]
print(f"sasrec {backend:<5} ours {o['sequences_per_s']:.1f} seq/s ({o['step_s']:.3f} s/step)  "
      f"peer torch {p['torch']} {p['sequences_per_s']:.1f} seq/s ({p['step_s']:.3f} s/step)  "
      f"ratio {o['sequences_per_s'] / p['sequences_per_s']:.2f}x")
PY
