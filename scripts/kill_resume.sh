#!/usr/bin/env bash
# Resume check: run a recipe killed with SIGKILL at N seeded random moments, then let it finish,
# and compare its tables with an uninterrupted run's. Interrupted stages must resume (training
# from its last checkpoint) and the tables must come out byte-identical.
#
#   bash scripts/kill_resume.sh RECIPE REFERENCE_RUN_DIR [KILLS] [MIN_S] [MAX_S] [SEED]
#
# REFERENCE_RUN_DIR: the run directory of an uninterrupted run of RECIPE with the same binary
# (e.g. results/quickstart/<run-id>). Each attempt is killed after MIN_S..MAX_S seconds
# (defaults 6 kills, 45..135 s: reaching the quickstart's first training checkpoint takes about a
# minute on 2 cores). The binary is target/quick/reccocktail (what scripts/run.sh builds with
# libtorch), or $RECCOCKTAIL_BIN. Results go to a fresh directory under /tmp; the fetched assets
# are copied from the reference run's cache (the fetch is not what is checked).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $# -ge 2 ]] || { echo "usage: bash scripts/kill_resume.sh RECIPE REFERENCE_RUN_DIR [KILLS] [MIN_S] [MAX_S] [SEED]" >&2; exit 2; }
recipe=$1 reference=$2 kills=${3:-6} min_s=${4:-45} max_s=${5:-135} seed=${6:-16}
bin=${RECCOCKTAIL_BIN:-target/quick/reccocktail}
[[ -x "$bin" ]] || { echo "no binary $bin: run scripts/run.sh first" >&2; exit 2; }
[[ -f "$reference/results.csv" ]] || { echo "$reference has no results.csv" >&2; exit 2; }
if [[ -d .cache/libtorch/2.9.0-cpu/lib ]]; then export LD_LIBRARY_PATH=$PWD/.cache/libtorch/2.9.0-cpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; fi

out=$(mktemp -d /tmp/kill-resume.XXXXXX)
mkdir -p "$out/.cache"
ref_cache="$(cd "$reference/../../.cache" && pwd)"
for d in "$ref_cache"/*/; do
  if grep -q '"kind": "fetch"' "$d/stage.json" 2>/dev/null; then cp -r "$d" "$out/.cache/"; fi
done

RANDOM=$seed
for i in $(seq 1 "$kills"); do
  t=$(( min_s + RANDOM % (max_s - min_s + 1) ))
  "$bin" run "$recipe" --results "$out" > "$out/attempt-$i.log" 2>&1 &
  pid=$!
  sleep "$t"
  if kill -9 "$pid" 2>/dev/null; then
    last=$(grep -E '^(start|resume|cached|done)' "$out/attempt-$i.log" | tail -1 | cut -c1-60)
    echo "attempt $i killed after ${t}s: $(grep -c '^done' "$out/attempt-$i.log") stages done, $(grep -c '^resume' "$out/attempt-$i.log") resumed; last: $last"
  else
    echo "attempt $i finished before ${t}s"
  fi
  wait "$pid" 2>/dev/null || true
done
"$bin" run "$recipe" --results "$out" > "$out/final.log" 2>&1
run=$(ls -d "$out"/*/*/ | tail -1)
status=0
for f in results.csv summary.md coefficients.csv; do
  [[ -f "$reference/$f" ]] || continue
  if cmp -s "$reference/$f" "$run/$f"; then echo "$f: byte-identical"; else echo "$f: DIFFERS"; status=1; fi
done
echo "run directory: $run"
exit $status
