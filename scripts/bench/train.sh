#!/usr/bin/env bash
# LoRA training throughput of SmolLM2-135M on CPU (r16 on every linear layer): reccocktail side by
# side with PyTorch + transformers + peft on the same machine, threads and data; ratios. DTYPE=bf16:
# ours with bf16 frozen weights (`[backbone] dtype = "bf16"`), the peer under torch.autocast.
#
#   [BACKEND=tch] bash scripts/bench/train.sh GGUF [PROMPTS_PARQUET]
# The peer: scripts/bench/peer.sh (pinned, installed on first use; PYTHON=<python> to use another).
# (a) fixed shape: batch 4 x 128 tokens, loss on every token, tokens/s;
# (b) with PROMPTS_PARQUET (a prompts stage's train.parquet, e.g. from `reccocktail run
#     recipes/quickstart.toml --only prompts:drama`): loss on the response only; the peer pads to the
#     longest in each batch with full logits, ours buckets by length and computes response logits
#     only; useful samples/s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
GGUF="${1:?usage: train.sh GGUF [PROMPTS_PARQUET]}"
PROMPTS="${2:-}"
# After the arguments are checked: the first use installs the peer (~6 GB).
source scripts/bench/peer.sh
peer_python
THREADS="${THREADS:-2}"
STEPS="${STEPS:-3}"
DTYPE="${DTYPE:-f32}"
# BACKEND=tch: the libtorch build (as scripts/run.sh makes it); default flex.
BACKEND="${BACKEND:-flex}"
if [ "$BACKEND" = tch ]; then
  LIBTORCH="$(bash scripts/libtorch.sh | tail -n 1)"
  export LIBTORCH
  cargo build --locked --quiet --features tch --bin reccocktail
else
  cargo build --locked --quiet --bin reccocktail
fi
source scripts/bench/cores.sh
cores_probe
ratio() { python3 -c 'import json,sys; o=json.loads(sys.argv[1])["train"]; p=json.loads(sys.argv[2]); k=sys.argv[3]; print(f"{sys.argv[4]:<8} ours {o[k]:.2f} {k}  peer {p[k]:.2f}  ratio {o[k]/p[k]:.2f}x")' "$@"; }
ours=$(target/debug/reccocktail bench train --model "$GGUF" --batch 4 --seq-len 128 --iters "$STEPS" --threads "$THREADS" --backend "$BACKEND" --dtype "$DTYPE")
peer=$("$PYTHON" scripts/bench/peer_train.py "$GGUF" --batch 4 --seq-len 128 --steps "$STEPS" --threads "$THREADS" --dtype "$DTYPE" 2>/dev/null | tail -n1)
ratio "$ours" "$peer" tokens_per_s fixed
if [ -n "$PROMPTS" ]; then
  ours=$(target/debug/reccocktail bench train --model "$GGUF" --prompts "$PROMPTS" --batch 4 --seq-len 512 --iters "$STEPS" --threads "$THREADS" --backend "$BACKEND" --dtype "$DTYPE")
  peer=$("$PYTHON" scripts/bench/peer_train.py "$GGUF" --prompts "$PROMPTS" --batch 4 --seq-len 512 --steps "$STEPS" --threads "$THREADS" --dtype "$DTYPE" 2>/dev/null | tail -n1)
  ratio "$ours" "$peer" samples_per_s prompts
fi
