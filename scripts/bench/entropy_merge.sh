#!/usr/bin/env bash
# One entropy merge of the flagship's shape, timed as the plan runs it: the quickstart's data with
# the flagship's prompts (histories of up to 10 titles, 20 candidates), its two adapters, and the
# flagship's entropy arm (token entropy at the first 3 tokens of each title of a 48-token greedy
# answer, one coefficient per module and adapter, softmax) adapting at one learning rate on 50
# unlabeled prompts of the target domain. Prints the merge's lines of the run log (initial
# objective, steps, objective after) and its wall time, per precision and answer_titles.
#
#   bash scripts/bench/entropy_merge.sh            # DTYPES ("f32 bf16"), TITLES ("all 3"), THREADS (2)
# Builds the binary users run (scripts/run.sh's `quick` profile, libtorch backend). The adapters
# are trained first (cached under results/.cache, so a rerun times the merge alone).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
THREADS="${THREADS:-2}"
DTYPES="${DTYPES:-f32 bf16}"
TITLES="${TITLES:-all 3}"
source scripts/bench/quick_build.sh
# The variant sits beside the shipped recipes (its template path is relative to them).
recipe=recipes/.entropy_merge_bench.toml
trap 'rm -f "$recipe"' EXIT
echo "entropy merge, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for dt in $DTYPES; do
  for titles in $TITLES; do
    extra=""
    [ "$titles" != all ] && extra="answer_titles = $titles, "
    python3 - "$dt" "$extra" >"$recipe" <<'PY'
import re, sys
dtype, extra = sys.argv[1], sys.argv[2]
text = open("recipes/quickstart.toml").read()
text = text.replace('name = "quickstart"', 'name = "entropy_merge_bench"', 1)
text = text.replace('[backbone]\n', f'[backbone]\ndtype = "{dtype}"\n', 1)
text = re.sub(r"max_history = \d+", "max_history = 10", text, count=1)
text = re.sub(r"candidates = \d+", "candidates = 20", text, count=1)
arm = ('merge = { method = "entropy", granularity = "module", parameterization = "softmax", lr = 0.05, '
       f'objective = "token_entropy", first_k_tokens = 3, {extra}adaptation = {{ source = "domain", size = 50 }} }}')
text, n = re.subn(r'merge = \{ method = "entropy".*\}\n', arm + "\n", text)
assert n == 1, "the quickstart's entropy arm"
print(text, end="")
PY
    echo "== dtype $dt, answer_titles $titles"
    start=$(date +%s)
    "$BIN" run "$recipe" --only merge:entropy --threads "$THREADS" --backend tch >/dev/null
    log=$(ls -td results/entropy_merge_bench/*/ | head -n1)run.log
    grep -E "(merge:entropy:|done +merge:entropy)" "$log" | sed 's/^/  /'
    echo "  wall $(( $(date +%s) - start )) s (the command, adapters cached after the first run)"
  done
done
