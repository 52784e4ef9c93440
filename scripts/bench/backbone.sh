#!/usr/bin/env bash
# One backbone at both precisions, side by side with PyTorch + transformers + peft in the same run:
# (forward) fixed-shape forward passes, batch 4 x 128; (train) LoRA r16 on every linear layer,
# fixed shape 4 x 128, loss on every token; (score) likelihood scoring of 20 candidate titles per
# user after a ~360-token prompt (3 users). f32: everything fp32. bf16: ours with the frozen
# weights in bf16 (`[backbone] dtype = "bf16"`; attention's products in ATTENTION, default f32, as
# `[backbone] attention`), the peer under torch.autocast("cpu", bf16).
#
#   bash scripts/bench/backbone.sh [GGUF]
# From a fresh clone this is #21's side-by-side check: it builds the binary users run
# (scripts/run.sh's `quick` profile, libtorch backend), fetches SmolLM2-135M-Instruct's GGUF when
# none is given, and installs the pinned peer (scripts/bench/peer.sh: PYTHON=<python> to use
# another). THREADS (2),
# DTYPES ("f32 bf16"), STEPS (3 timed training steps after a warm-up), ROUNDS (2: each measurement
# that many times per side, alternating which side runs first; this VM drifts by 10-25% within
# minutes, so a single round cannot settle a ratio near a target).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
THREADS="${THREADS:-2}"
STEPS="${STEPS:-3}"
ROUNDS="${ROUNDS:-2}"
DTYPES="${DTYPES:-f32 bf16}"
ATTENTION="${ATTENTION:-f32}"
source scripts/bench/quick_build.sh
source scripts/bench/cores.sh
source scripts/bench/peer.sh
bench_gguf "${1:-}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [d:=d[k] for k in sys.argv[2:]]; print(d)' "$@"; }
# One row: the mean of each side over the rounds, the ratio of the means, and each round's ratio.
row() { python3 -c 'import sys; n=sys.argv[1]; o=[float(x) for x in sys.argv[2].split()]; p=[float(x) for x in sys.argv[3].split()]; mo,mp=sum(o)/len(o),sum(p)/len(p); r=" ".join(f"{a/b:.2f}" for a,b in zip(o,p)); print(f"{n:<28}{mo:>10.2f}{mp:>10.2f}{mo/mp:>9.2f}x   ({r})")' "$@"; }
steps() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); t=t.get("train",t); n=int(sys.argv[2]); print("/".join(f"{t[k]/n:.2f}" for k in ("forward_s","backward_s","update_s")))' "$@"; }
echo "$(basename "$GGUF"), $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ours' bf16 attention products in $ATTENTION, $ROUNDS rounds (odd rounds ours first, even rounds the peer first)"
cores_probe
peer_python
printf '%-28s%10s%10s%10s   %s\n' "" ours peer ours/peer "(each round)"
# One measurement each, appended to its side's list for the dtype `$dt` of the loop below.
forward_ours() { "$BIN" bench forward --model "$GGUF" --batch 4 --seq-len 128 --iters 3 --threads "$THREADS" --backend tch --dtype "$dt" --attention "$ATTENTION" >"$tmp/of.json"; fo+=("$(get "$tmp/of.json" forward tokens_per_s)"); }
forward_peer() { "$PYTHON" scripts/bench/peer_forward.py "$GGUF" --batch 4 --seq-len 128 --iters 3 --threads "$THREADS" --dtype "$dt" 2>/dev/null | tail -n1 >"$tmp/pf.json"; fp+=("$(get "$tmp/pf.json" tokens_per_s)"); }
train_ours() { "$BIN" bench train --model "$GGUF" --batch 4 --seq-len 128 --iters "$STEPS" --threads "$THREADS" --backend tch --dtype "$dt" --attention "$ATTENTION" >"$tmp/ot.json"; to+=("$(get "$tmp/ot.json" train tokens_per_s)"); }
train_peer() { "$PYTHON" scripts/bench/peer_train.py "$GGUF" --batch 4 --seq-len 128 --steps "$STEPS" --threads "$THREADS" --dtype "$dt" 2>/dev/null | tail -n1 >"$tmp/pt.json"; tp+=("$(get "$tmp/pt.json" tokens_per_s)"); }
score_ours() { "$BIN" bench eval --model "$GGUF" --users 3 --candidates 20 --history 3 --max-new-tokens 8 --backend tch --threads "$THREADS" --dtype "$dt" --attention "$ATTENTION" --dump "$tmp/inputs.json" >"$tmp/oe.json" 2>/dev/null; so+=("$(get "$tmp/oe.json" eval likelihood users_per_s)"); }
# The peer scores the token ids ours dumped, so ours runs first in every round.
score_peer() { "$PYTHON" scripts/bench/peer_eval.py "$GGUF" "$tmp/inputs.json" --threads "$THREADS" --dtype "$dt" 2>/dev/null | tail -n1 >"$tmp/pe.json"; sp+=("$(get "$tmp/pe.json" likelihood_users_per_s)"); }
for dt in $DTYPES; do
  fo=() fp=() to=() tp=() so=() sp=()
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then forward_ours; forward_peer; train_ours; train_peer; else forward_peer; forward_ours; train_peer; train_ours; fi
    echo "  round $r, $dt train, s per step fwd/bwd/update: ours $(steps "$tmp/ot.json" "$STEPS"), peer $(steps "$tmp/pt.json" "$STEPS"); ours peak RSS $(printf '%.0f' "$(get "$tmp/ot.json" train peak_rss_mb)") MB"
    score_ours; score_peer
  done
  row "$dt forward tokens/s" "${fo[*]}" "${fp[*]}"
  row "$dt train tokens/s" "${to[*]}" "${tp[*]}"
  row "$dt score users/s (20 cand.)" "${so[*]}" "${sp[*]}"
  echo "${to[*]}|${so[*]}|${tp[*]}|${sp[*]}" >"$tmp/means_$dt"
done
if [ -f "$tmp/means_f32" ] && [ -f "$tmp/means_bf16" ]; then
  python3 - "$tmp/means_f32" "$tmp/means_bf16" <<'PY'
import sys
mean = lambda s: sum(map(float, s.split())) / len(s.split())
f, b = ([mean(x) for x in open(p).read().strip().split("|")] for p in sys.argv[1:])
print(f"bf16 / f32: ours train {b[0] / f[0]:.2f}x, score {b[1] / f[1]:.2f}x; the peer train {b[2] / f[2]:.2f}x, score {b[3] / f[3]:.2f}x")
PY
fi
