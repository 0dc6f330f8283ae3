#!/usr/bin/env bash
# eegmat cross-subject decoding (issue 3): rest vs mental arithmetic, 24 subjects, 6 subject-wise
# folds (fold assignment from --seed 1, the same for every row; SEED=2 for the second
# assignment), 4 s windows.
#
#   RENFLOW=build/renflow OUT=/tmp/eegmat-cv bash bench/eegmat_cv.sh [ROWS]
#   SEED=2 RENFLOW=build/renflow OUT=/tmp/eegmat-cv-s2 bash bench/eegmat_cv.sh [ROWS]
#
# ROWS: a comma list of row names (default: all); see run lines below. Each row writes
# OUT/<row>.json (renflow cv --json); the table is printed at the end (bench/cv_table.py).
# About 1 minute per band-power row, 6-12 minutes per tsflow row and 15 minutes for the
# 3-member ensemble on 2 cores.
set -euo pipefail
R=${RENFLOW:-build/renflow}
OUT=${OUT:-/tmp/eegmat-cv}
DATA=${DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
ROWS=${1:-all}
mkdir -p "$OUT"
if [ ! -f "$OUT/list.csv" ]; then
  echo "file,subject,label" > "$OUT/list.csv.tmp"
  for i in $(seq -w 0 23); do
    echo "$DATA/eegmat/Subject${i}_1.edf,S$i,rest" >> "$OUT/list.csv.tmp"
    echo "$DATA/eegmat/Subject${i}_2.edf,S$i,task" >> "$OUT/list.csv.tmp"
  done
  mv "$OUT/list.csv.tmp" "$OUT/list.csv"
fi
# physical units (the issue's band-power baseline) and the tsflow input: 64 Hz, 0.5-30 Hz, each
# subject's recordings standardised together (median, MAD; no labels)
[ -d "$OUT/prep_raw" ] || "$R" eeg prepare --recordings "$OUT/list.csv" --out "$OUT/prep_raw" --rate 128 --lowpass 45 --no-robust --quiet
[ -d "$OUT/prep64" ] || "$R" eeg prepare --recordings "$OUT/list.csv" --out "$OUT/prep64" --rate 64 --lowpass 30 --standardise subject --quiet

DISC="--lr 3e-3 --epochs 100 --patience 0 --weight-decay 1e-4 --class-balanced"
BPG="--features bandpower --flow glow --blocks 2 --hidden 32 --epochs 60 --batch 64 --class-init data"
run() {
  local name=$1 data=$2; shift 2
  case ",$ROWS," in *",all,"*|*",$name,"*) ;; *) return 0 ;; esac
  local t0=$SECONDS
  "$R" cv --data "$OUT/$data" --folds 6 --seed "${SEED:-1}" --quiet --json "$@" > "$OUT/$name.json.tmp"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  echo "$name: $((SECONDS - t0)) s" >&2
}
run lr_physical     prep_raw --features bandpower --model logreg $DISC
run lr_subject      prep64   --features bandpower --model logreg $DISC
run lr_subject_feat prep64   --features bandpower --subject-standardise-features --model logreg $DISC
run mlp_subject     prep64   --features bandpower --model mlp $DISC
run mlp_subject_feat prep64  --features bandpower --subject-standardise-features --model mlp $DISC
run bpglow          prep64   $BPG
run bpglow_fit      prep64   $BPG --subject-adapt fit
run bpglow_train    prep64   $BPG --subject-adapt train
run tsflow          prep64   --epochs 30 --batch 64
run tsflow_fit      prep64   --epochs 30 --batch 64 --subject-adapt fit
run tsflow_train    prep64   --epochs 30 --batch 64 --subject-adapt train
run tsflow_train_ens3 prep64 --epochs 30 --batch 64 --subject-adapt train --ensemble 3
/usr/bin/python3 "$(dirname "$0")/cv_table.py" "$OUT"/*.json
