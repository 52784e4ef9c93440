#!/usr/bin/env bash
# #21 on a CUDA GPU, side by side with PyTorch + transformers + peft on the same GPU, model file and
# data, at f32 and bf16 (ours: `[backbone] dtype`; the peer: torch.autocast("cuda", bf16)):
#   (a) fixed-shape LoRA training, batch 8 x 512 tokens, loss on every token, tokens/s;
#   (b) with PROMPTS (a prompts stage's train.parquet), the real prompts, batch 16, the recipes'
#       dropout 0.05, useful samples/s;
#   (c) likelihood scoring of 20 candidates and greedy generation (scripts/bench/eval.sh), users/s.
#
#   BIN=target/cuda-2.11.0/debug/reccocktail PYTHON=python3 bash scripts/bench/gpu.sh GGUF [PROMPTS]
# BIN: a CUDA build (scripts/cuda.sh) whose libtorch is on LD_LIBRARY_PATH; PYTHON: torch with CUDA,
# transformers, peft, gguf, pyarrow (without it, the pinned peer of scripts/bench/peer.sh). STEPS (10), USERS (20), DTYPES ("f32 bf16"), EVAL (1; 0: training
# only). Prints one JSON line per measurement ("ours"/"peer") and then the table of ratios.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
GGUF="${1:?usage: gpu.sh GGUF [PROMPTS]}"
PROMPTS="${2:-}"
BIN="${BIN:?BIN: a CUDA build of reccocktail}"
# After the arguments are checked: the first use installs the peer (~6 GB).
source scripts/bench/peer.sh
peer_python
STEPS="${STEPS:-10}"
USERS="${USERS:-20}"
DTYPES="${DTYPES:-f32 bf16}"
EVAL="${EVAL:-1}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
row() { # label side json
  python3 -c 'import json,sys; o=json.loads(sys.argv[3]); o=o.get("train", o); print(json.dumps({"label": sys.argv[1], "side": sys.argv[2], **{k: o[k] for k in ("tokens_per_s", "samples_per_s", "forward_s", "backward_s", "update_s") if k in o}}))' "$@" | tee -a "$tmp/rows.jsonl"
}
for dtype in $DTYPES; do
  row "fixed $dtype" ours "$("$BIN" bench train --model "$GGUF" --batch 8 --seq-len 512 --iters "$STEPS" --device cuda --dtype "$dtype")"
  row "fixed $dtype" peer "$("$PYTHON" scripts/bench/peer_train.py "$GGUF" --batch 8 --seq-len 512 --steps "$STEPS" --device cuda --dtype "$dtype" 2>/dev/null | tail -n1)"
  if [ -n "$PROMPTS" ]; then
    row "prompts $dtype" ours "$("$BIN" bench train --model "$GGUF" --prompts "$PROMPTS" --batch 16 --seq-len 512 --iters "$STEPS" --device cuda --dtype "$dtype" --dropout 0.05)"
    row "prompts $dtype" peer "$("$PYTHON" scripts/bench/peer_train.py "$GGUF" --prompts "$PROMPTS" --batch 16 --seq-len 512 --steps "$STEPS" --device cuda --dtype "$dtype" --dropout 0.05 2>/dev/null | tail -n1)"
  fi
  [ "$EVAL" = 0 ] && continue
  echo "== scoring and generation, $dtype"
  DEVICE=cuda BIN="$BIN" DTYPE="$dtype" USERS="$USERS" PYTHON="$PYTHON" bash scripts/bench/eval.sh "$GGUF"
done
python3 - "$tmp/rows.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["label"], r["side"]): r for r in rows}
print(f"{'training':<14}{'ours':>12}{'peer':>12}{'ours/peer':>11}")
for label in dict.fromkeys(r["label"] for r in rows):
    k = "tokens_per_s" if label.startswith("fixed") else "samples_per_s"
    o, p = by[(label, "ours")][k], by[(label, "peer")][k]
    print(f"{label:<14}{o:>12.1f}{p:>12.1f}{o / p:>10.2f}x  ({k})")
for shape in ("fixed", "prompts"):
    if all((f"{shape} {d}", "ours") in by for d in ("f32", "bf16")):
        k = "tokens_per_s" if shape == "fixed" else "samples_per_s"
        o = by[(f"{shape} bf16", "ours")][k] / by[(f"{shape} f32", "ours")][k]
        p = by[(f"{shape} bf16", "peer")][k] / by[(f"{shape} f32", "peer")][k]
        print(f"bf16 / f32, {shape}: ours {o:.2f}x, peer {p:.2f}x")
PY
