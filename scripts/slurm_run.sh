#!/usr/bin/env bash
# Submit a recipe as Slurm jobs and wait for them: prints each stage's state as it changes, then
# the run directory (last line). Exit 0 when every job is done, 1 when one failed.
#
#   bash scripts/slurm_run.sh BINARY RECIPE RESULTS_DIR [submit options...]
# BINARY is the reccocktail the jobs run (e.g. target/quick/reccocktail, as scripts/run.sh builds).
set -euo pipefail
bin="${1:?usage: slurm_run.sh BINARY RECIPE RESULTS_DIR [submit options...]}"
recipe="${2:?recipe}"
results="${3:?results directory}"
shift 3
err="$(mktemp)"
"$bin" submit "$recipe" --results "$results" "$@" 2>"$err" >&2 || { cat "$err" >&2; exit 1; }
run_dir="$(sed -n 's/.*run directory: //p' "$err" | tail -n 1)"
cat "$err" >&2
[[ -n "$run_dir" ]] || { echo "slurm_run: submit printed no run directory" >&2; exit 1; }
last=""
while :; do
  now="$("$bin" status "$run_dir")"
  [[ "$now" != "$last" ]] && { echo "$now" | tail -n 1 >&2; last="$now"; }
  if ! grep -qE ' (pending|running|unknown) ' <<<"$now"; then break; fi
  sleep 5
done
echo "$now" >&2
echo "$run_dir"
grep -q ' failed ' <<<"$now" && exit 1
exit 0
