#!/usr/bin/env bash
# The issue-4 real studies: TPE over the default training + architecture space on
#   1. Sleep-EDF per-epoch features (72-D, 8 subjects): density (validation NLL),
#   2. the same features: sleep-stage classification (validation macro-F1),
#   3. eegmat 4 s windows (19 channels at 64 Hz, 24 subjects): rest vs arithmetic, tsflow
#      classifier (validation macro-F1).
# Validation and test parts hold out whole subjects; the test subjects score the best and the
# default configuration once each study is over (report/report.json, "search").
# Spaces: sleep-density the default space (training + architecture); sleep-classify
# bench/studies/space_features.json and eegmat bench/studies/space_windows.json (the same
# parameters with the epochs bounded to 30 / 20, so that a study fits in BUDGET on 2 cores).
# Usage: bench/studies/run_studies.sh [OUTDIR] [which: sleep-density,sleep-classify,eegmat]
# Environment: RENFLOW (binary; default build/renflow), TRIALS (40), BUDGET (seconds per study, 2700).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
R=${RENFLOW:-$root/build/renflow}
out=${1:-$root/bench/studies/out}
which=${2:-sleep-density,sleep-classify,eegmat}
shared=${SHARED:-$root/../shared/data}
trials=${TRIALS:-40}
budget=${BUDGET:-2700}
py=/usr/bin/python3
mkdir -p "$out"
[ -f "$out/sleep/Xn.npy" ] || $py "$here/sleep_arrays.py" --shared "$shared" --out "$out/sleep"
common=(--trials "$trials" --time-budget "$budget" --threads 2 --seed 1 --json)
if [[ $which == *sleep-density* ]]; then
  $R search --data "$out/sleep/Xn.npy" --subjects "$out/sleep/subj.npy" --task density \
    --test-frac 0.25 --val-frac 0.34 --study "$out/sleep-density.db" --out "$out/sleep-density" \
    "${common[@]}" > "$out/sleep-density.json" 2> "$out/sleep-density.log"
fi
if [[ $which == *sleep-classify* ]]; then
  $R search --data "$out/sleep/Xn.npy" --labels "$out/sleep/y.npy" --subjects "$out/sleep/subj.npy" \
    --task classify --objective f1 --test-frac 0.25 --val-frac 0.34 --space "$here/space_features.json" \
    --study "$out/sleep-classify.db" --out "$out/sleep-classify" \
    "${common[@]}" > "$out/sleep-classify.json" 2> "$out/sleep-classify.log"
fi
if [[ $which == *eegmat* ]]; then
  if [ ! -f "$out/eegmat/manifest.json" ]; then
    for f in "$shared"/eegmat/Subject*_[12].edf; do
      b=$(basename "$f" .edf); s=${b#Subject}; s=${s%_*}
      [ "${b##*_}" = 1 ] && l=rest || l=task
      echo "$f,S$s,$l"
    done | sort > "$out/eegmat-list.body"
    { echo "file,subject,label"; cat "$out/eegmat-list.body"; } > "$out/eegmat-list.csv"
    $R eeg prepare --recordings "$out/eegmat-list.csv" --rate 64 --lowpass 30 --window 4 \
      --standardise subject --out "$out/eegmat"
  fi
  $R search --data "$out/eegmat" --task classify --objective f1 --test-frac 0.25 --val-frac 0.25 \
    --space "$here/space_windows.json" \
    --study "$out/eegmat.db" --out "$out/eegmat-search" \
    "${common[@]}" > "$out/eegmat.json" 2> "$out/eegmat.log"
fi
