#!/usr/bin/env bash
# Users ranked per second with `likelihood` vs `generate` on SmolLM2-135M, 20 candidates:
# reccocktail side by side with PyTorch + transformers on the same token ids, model file, device
# and threads; prints both ratios and each protocol's ratio to the peer.
#
#   bash scripts/bench/eval.sh PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf
# The peer: scripts/bench/peer.sh (pinned, installed on first use; PYTHON=<python> with torch,
# transformers and gguf to use another; never a dependency of the tool).
# BACKEND=tch (default when scripts/libtorch.sh works) or flex; USERS (3), THREADS (2),
# DEVICE (cpu; cuda needs a CUDA libtorch, see BENCHMARKS.md); BIN: a prebuilt binary to use;
# DTYPE (f32, or bf16: ours with bf16 frozen weights, the peer under torch.autocast).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
GGUF="${1:?usage: eval.sh GGUF}"
# After the arguments are checked: the first use installs the peer (~6 GB).
source scripts/bench/peer.sh
peer_python
THREADS="${THREADS:-2}"
USERS="${USERS:-3}"
DEVICE="${DEVICE:-cpu}"
BACKEND="${BACKEND:-tch}"
BIN="${BIN:-}"
DTYPE="${DTYPE:-f32}"
if [ -z "$BIN" ]; then
  if [ "$BACKEND" = tch ]; then
    LIBTORCH="$(bash scripts/libtorch.sh | tail -n1)"
    export LIBTORCH
    cargo build --locked --quiet --features tch --bin reccocktail
  else
    cargo build --locked --quiet --bin reccocktail
  fi
  BIN=target/debug/reccocktail
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" bench eval --model "$GGUF" --users "$USERS" --candidates 20 --history 3 --max-new-tokens 60 \
  --backend "$BACKEND" --device "$DEVICE" --threads "$THREADS" --dtype "$DTYPE" --dump "$tmp/inputs.json" >"$tmp/ours.json"
"$PYTHON" scripts/bench/peer_eval.py "$GGUF" "$tmp/inputs.json" --device "$DEVICE" --threads "$THREADS" --dtype "$DTYPE" 2>/dev/null | tail -n1 >"$tmp/peer.json"
python3 - "$tmp/ours.json" "$tmp/peer.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["eval"]
p = json.load(open(sys.argv[2]))
print(f"users {o['users']}, {o['candidates']} candidates, {o['mean_prompt_tokens']:.0f} prompt tokens, {p['dtype']}; peer torch {p['torch']} on {p['device']}")
print(f"{'':<22}{'ours':>12}{'peer':>12}{'ours/peer':>11}")
rows = [
    ("prompt pass s/user", o["prompt_s_per_user"], p["prompt_s_per_user"], p["prompt_s_per_user"] / o["prompt_s_per_user"]),
    ("likelihood users/s", o["likelihood"]["users_per_s"], p["likelihood_users_per_s"], o["likelihood"]["users_per_s"] / p["likelihood_users_per_s"]),
    ("generate users/s", o["generate"]["users_per_s"], p["generate_users_per_s"], o["generate"]["users_per_s"] / p["generate_users_per_s"]),
]
for name, a, b, r in rows:
    print(f"{name:<22}{a:>12.3f}{b:>12.3f}{r:>10.2f}x")
print(f"{'likelihood/generate':<22}{o['ratio']:>11.2f}x{p['ratio']:>11.2f}x")
print(f"{'candidates add':<22}{100 * o['candidate_share']:>11.0f}%{100 * p['candidate_share']:>11.0f}%")
print(f"{'hr@1 (likelihood)':<22}{o['likelihood']['hr_at_1']:>12.2f}{p['likelihood_hr_at_1']:>12.2f}")
print(f"{'new tokens per list':<22}{o['mean_new_tokens']:>12.1f}{p['mean_new_tokens']:>12.1f}")
PY
