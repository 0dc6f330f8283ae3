#!/usr/bin/env bash
# Sleep staging (issue 3): the generative flow classifier on the Sleep-EDF per-epoch features
# (72-D, 16 nights of 8 subjects), leave-two-subjects-out (4 subject-wise folds, seed 1), each
# epoch with its 2 neighbours on either side (--context 2), predictions smoothed by a Markov
# chain over the stages fitted on the training folds (--hmm). Arrays: bench/sleep_arrays.py
# (X = features in their own units, Xn = each night robustly standardised; no labels).
#
#   RENFLOW=build/renflow OUT=/tmp/sleep-cv bash bench/sleep_cv.sh [ROWS]
#
# ROWS: a comma list of row names (default: all). About 1 minute per LR row and 5-10 minutes
# per flow row on 2 cores. The table is printed at the end (bench/cv_table.py --key=macro_f1).
set -euo pipefail
R=${RENFLOW:-build/renflow}
OUT=${OUT:-/tmp/sleep-cv}
ROWS=${1:-all}
DATA=${DATA:-$(dirname "$0")/../../shared/data/sleep-edf/features}
mkdir -p "$OUT"
[ -f "$OUT/Xn.npy" ] || /usr/bin/python3 "$(dirname "$0")/sleep_arrays.py" "$DATA" "$OUT"
COMMON="--labels $OUT/y.npy --subjects $OUT/subj.npy --recordings $OUT/rec.npy --folds 4 --seed 1 --context 2 --hmm"
LR="--model logreg --lr 3e-3 --epochs 100 --patience 0 --weight-decay 1e-4"
GLOW="--flow glow --blocks 4 --hidden 64 --epochs 15"
run() {
  local name=$1; shift
  case ",$ROWS," in *",all,"*|*",$name,"*) ;; *) return 0 ;; esac
  local t0=$SECONDS
  "$R" cv $COMMON --quiet --json "$@" > "$OUT/$name.json.tmp"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  echo "$name: $((SECONDS - t0)) s" >&2
}
run lr_night        --data "$OUT/Xn.npy" $LR
run lr_units        --data "$OUT/X.npy" $LR
run lr_both_log     --data "$OUT/Xn.npy" --view "$OUT/X.npy" --pool log $LR
run glow_night      --data "$OUT/Xn.npy" $GLOW
run glow_night_ens2 --data "$OUT/Xn.npy" --ensemble 2 --pool log $GLOW
run glow_both_log   --data "$OUT/Xn.npy" --view "$OUT/X.npy" --pool log $GLOW
/usr/bin/python3 "$(dirname "$0")/cv_table.py" --key=macro_f1 "$OUT"/*.json
