#!/usr/bin/env bash
# Where a LoRA training step spends its time, ours and the peer's side by side: both runs sampled
# with `perf record` (CPU clock, 200 Hz), the second half of each run kept (after loading and the
# warm-up step), samples grouped into kinds of work (scripts/bench/profile_report.py), and each
# kind given as a share of the samples and as seconds per step (share x the run's timed seconds
# per step). Same model, workload, batch, threads and precision for both.
#
#   bash scripts/bench/profile.sh [GGUF [PROMPTS_PARQUET]]
# GGUF: SmolLM2-135M-Instruct's, fetched, when not given (or given as ""); the peer: scripts/bench/peer.sh
# (pinned; PYTHON=<python> to use another).
# DTYPE (bf16), ATTENTION (f32: ours' attention products under bf16 weights), BATCH (8), SEQ_LEN (512), STEPS (4), THREADS (2). Without PROMPTS_PARQUET: fixed
# shape, loss on every token. Needs perf (linux-perf).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PROMPTS="${2:-}"
DTYPE="${DTYPE:-bf16}"
ATTENTION="${ATTENTION:-f32}"
BATCH="${BATCH:-8}"
SEQ_LEN="${SEQ_LEN:-512}"
STEPS="${STEPS:-4}"
THREADS="${THREADS:-2}"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
source scripts/bench/quick_build.sh
source scripts/bench/peer.sh
bench_gguf "${1:-}"
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
work=(--batch "$BATCH" --seq-len "$SEQ_LEN" --threads "$THREADS" --dtype "$DTYPE")
[ -n "$PROMPTS" ] && work+=(--prompts "$PROMPTS")
echo "$(basename "$GGUF"), $DTYPE, batch $BATCH, ${PROMPTS:+prompts $(basename "$(dirname "$PROMPTS")"), }seq-len $SEQ_LEN, $STEPS steps, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
source scripts/bench/cores.sh
cores_probe
peer_python
perf record -q -F 200 -o "$tmp/ours.perf" "$BIN" bench train --model "$GGUF" --iters "$STEPS" --backend tch --attention "$ATTENTION" "${work[@]}" >"$tmp/ours.json" 2>/dev/null
perf record -q -F 200 -o "$tmp/peer.perf" "$PYTHON" scripts/bench/peer_train.py "$GGUF" --steps "$STEPS" "${work[@]}" 2>/dev/null | tail -n1 >"$tmp/peer.json"
python3 scripts/bench/profile_report.py "$tmp/ours.perf" --label ours >"$tmp/ours_p.json"
python3 scripts/bench/profile_report.py "$tmp/peer.perf" --label peer >"$tmp/peer_p.json"
python3 - "$tmp" "$STEPS" <<'PY'
import json, sys
tmp, steps = sys.argv[1], int(sys.argv[2])
ours = json.load(open(f"{tmp}/ours.json"))["train"]
peer = json.load(open(f"{tmp}/peer.json"))
po, pp = json.load(open(f"{tmp}/ours_p.json")), json.load(open(f"{tmp}/peer_p.json"))
so, sp = ours["seconds"] / steps, peer["seconds"] / steps
print(f"seconds per step: ours {so:.2f}, peer {sp:.2f} (ours / peer speed {sp / so:.2f}x); samples {po['samples']} / {pp['samples']}")
print(f"{'kind of work':<36}{'ours %':>8}{'peer %':>8}{'ours s':>8}{'peer s':>8}")
for k in po["shares"]:
    a, b = po["shares"][k], pp["shares"][k]
    if a < 0.005 and b < 0.005:
        continue
    print(f"{k:<36}{a * 100:>8.1f}{b * 100:>8.1f}{a * so:>8.2f}{b * sp:>8.2f}")
PY
