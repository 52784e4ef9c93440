#!/usr/bin/env bash
# One backbone at both precisions, side by side with PyTorch + transformers + peft in the same run:
# (forward) fixed-shape forward passes, batch 4 x 128; (train) LoRA r16 on every linear layer,
# fixed shape 4 x 128, loss on every token; (score) likelihood scoring of 20 candidate titles per
# user after a ~360-token prompt (3 users). f32: everything fp32. bf16: ours with the frozen
# weights in bf16 (`[backbone] dtype = "bf16"`), the peer under torch.autocast("cpu", bf16).
#
#   PYTHON=/path/to/venv/bin/python bash scripts/bench/backbone.sh GGUF
# Builds the binary users run (scripts/run.sh's `quick` profile, libtorch backend). THREADS (2),
# DTYPES ("f32 bf16"), STEPS (3 timed training steps after a warm-up).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
GGUF="${1:?usage: backbone.sh GGUF}"
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-2}"
STEPS="${STEPS:-3}"
DTYPES="${DTYPES:-f32 bf16}"
source scripts/bench/quick_build.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
row() { python3 -c 'import sys; n,o,p=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]); print(f"{n:<28}{o:>10.2f}{p:>10.2f}{o/p:>9.2f}x")' "$@"; }
get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [d:=d[k] for k in sys.argv[2:]]; print(d)' "$@"; }
echo "$(basename "$GGUF"), $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-28s%10s%10s%10s\n' "" ours peer ours/peer
for dt in $DTYPES; do
  "$BIN" bench forward --model "$GGUF" --batch 4 --seq-len 128 --iters 3 --threads "$THREADS" --backend tch --dtype "$dt" >"$tmp/of.json"
  "$PYTHON" scripts/bench/peer_forward.py "$GGUF" --batch 4 --seq-len 128 --iters 3 --threads "$THREADS" --dtype "$dt" 2>/dev/null | tail -n1 >"$tmp/pf.json"
  row "$dt forward tokens/s" "$(get "$tmp/of.json" forward tokens_per_s)" "$(get "$tmp/pf.json" tokens_per_s)"
  "$BIN" bench train --model "$GGUF" --batch 4 --seq-len 128 --iters "$STEPS" --threads "$THREADS" --backend tch --dtype "$dt" >"$tmp/ot.json"
  "$PYTHON" scripts/bench/peer_train.py "$GGUF" --batch 4 --seq-len 128 --steps "$STEPS" --threads "$THREADS" --dtype "$dt" 2>/dev/null | tail -n1 >"$tmp/pt.json"
  row "$dt train tokens/s" "$(get "$tmp/ot.json" train tokens_per_s)" "$(get "$tmp/pt.json" tokens_per_s)"
  echo "  ours peak RSS $(printf '%.0f' "$(get "$tmp/ot.json" train peak_rss_mb)") MB; s per step fwd/bwd/update: ours $(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["train"]; n=int(sys.argv[2]); print("/".join(f"{t[k]/n:.2f}" for k in ("forward_s","backward_s","update_s")))' "$tmp/ot.json" "$STEPS"), peer $(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); n=int(sys.argv[2]); print("/".join(f"{t[k]/n:.2f}" for k in ("forward_s","backward_s","update_s")))' "$tmp/pt.json" "$STEPS")"
  "$BIN" bench eval --model "$GGUF" --users 3 --candidates 20 --history 3 --max-new-tokens 8 --backend tch --threads "$THREADS" --dtype "$dt" --dump "$tmp/inputs.json" >"$tmp/oe.json" 2>/dev/null
  "$PYTHON" scripts/bench/peer_eval.py "$GGUF" "$tmp/inputs.json" --threads "$THREADS" --dtype "$dt" 2>/dev/null | tail -n1 >"$tmp/pe.json"
  row "$dt score users/s (20 cand.)" "$(get "$tmp/oe.json" eval likelihood users_per_s)" "$(get "$tmp/pe.json" likelihood_users_per_s)"
done
