#!/usr/bin/env bash
# Real certificates (issue 5, "What it must show"): four models trained on real data, each
# certified on held-out data beside its reference models (Gaussian, GMM by EM, KDE, fitted with
# --train on the model's own training rows), then one comparison page:
#   eye            density flow (nsf) on UCI EEG Eye State, 14 channels; a seeded 80/20 split of
#                  the rows (the eye-state column dropped);
#   sleep-density  density flow (nsf) on the Sleep-EDF per-epoch features (72-D, from
#                  bench/studies/sleep_arrays.py), split by subject: subjects 0-5 train, 6-7 test;
#   sleep-classify class-conditional flow (nsf, --task classify) on the same features and split,
#                  sleep stages W/N1/N2/N3/REM as labels;
#   eegmat         class-conditional glow on log band powers (--features bandpower) of eegmat 4 s
#                  windows (19 channels, 64 Hz, low-pass 30 Hz, standardised per subject), rest vs
#                  mental arithmetic, split by subject: S00-S17 train, S18-S23 test (the test
#                  directory prepared with --like the training manifest). The model records its
#                  input transform (meta "input"); certify re-applies it to the windows.
# Outputs (OUTDIR, default out/certify, git-ignored): data/ (arrays, prepared directories), models/*.rf
# (+ training summaries *.train.json), cert-<name>/ (certificate.json, label.svg/.pdf/.png,
# certify.json: the same certificate as printed), compare/ (index.html, pareto.svg/.png),
# commands.log (every command, as run) and times.log (wall-clock seconds per step).
# Reproducible: fixed seeds for the splits, training and certification; the only
# non-deterministic quantities are timings, energy and the dates.
# Usage: bench/certify/run.sh [OUTDIR]
# Environment: RENFLOW (binary; default build/renflow), SHARED (../shared/data),
#   QUICK=1 (certify --quick: short latency/energy budgets, 500 samples, GMM up to 4 components;
#   for a busy machine), EPOCHS_SCALE (multiplies the training epochs; default 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
R=${RENFLOW:-$root/build/renflow}
out=${1:-$root/out/certify}
shared=${SHARED:-$root/../shared/data}
py=/usr/bin/python3
scale=${EPOCHS_SCALE:-1}
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
mkdir -p "$out/data" "$out/models"
: > "$out/commands.log"
: > "$out/times.log"
ep() { "$py" -c "import sys; print(max(1, round($1 * float(sys.argv[1]))))" "$scale"; }
run() { # run NAME CMD...: logs the command, its time and its stderr (NAME.log)
  local name=$1; shift
  printf '%q ' "$@" >> "$out/commands.log"; echo >> "$out/commands.log"
  local t0; t0=$(date +%s.%N)
  "$@" 2> "$out/$name.log"
  echo "$name $("$py" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)")" >> "$out/times.log"
}

# ---------------------------------------------------------------- data
if [ ! -f "$out/data/eye/test.npy" ]; then
  mkdir -p "$out/data/eye"
  "$py" - "$shared/uci-eeg-eye-state/eeg-eye-state.arff" "$out/data/eye" <<'EOF'
import sys, numpy as np
rows = []
data = False
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith('%'):
        continue
    if line.upper().startswith('@DATA'):
        data = True
        continue
    if data:
        rows.append([float(v) for v in line.split(',')])
a = np.array(rows)
x = a[:, :14].astype(np.float32)          # the 14 channels; column 15 (eye state) dropped
perm = np.random.default_rng(1).permutation(len(x))
k = int(0.8 * len(x))
np.save(sys.argv[2] + '/train.npy', x[perm[:k]])
np.save(sys.argv[2] + '/test.npy', x[perm[k:]])
print(len(x), 'rows:', k, 'train,', len(x) - k, 'test')
EOF
fi
if [ ! -f "$out/data/sleep/test_y.npy" ]; then
  "$py" "$root/bench/studies/sleep_arrays.py" --shared "$shared" --out "$out/data/sleep"
  "$py" - "$out/data/sleep" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
x, y, s = np.load(d + '/Xn.npy'), np.load(d + '/y.npy'), np.load(d + '/subj.npy')
tr = s <= 5                                 # subjects 0-5 train, 6-7 test
np.save(d + '/train_x.npy', x[tr]); np.save(d + '/train_y.npy', y[tr].astype(np.int32))
np.save(d + '/test_x.npy', x[~tr]); np.save(d + '/test_y.npy', y[~tr].astype(np.int32))
print('subjects', sorted(set(s.tolist())), 'train rows', int(tr.sum()), 'test rows', int((~tr).sum()))
EOF
fi
if [ ! -f "$out/data/eegmat-test/manifest.json" ]; then
  for part in train test; do
    { echo "file,subject,label"
      for f in "$shared"/eegmat/Subject*_[12].edf; do
        b=$(basename "$f" .edf); sn=${b#Subject}; sn=${sn%_*}
        if [ "$part" = train ] && [ $((10#$sn)) -gt 17 ]; then continue; fi
        if [ "$part" = test ] && [ $((10#$sn)) -le 17 ]; then continue; fi
        [ "${b##*_}" = 1 ] && l=rest || l=task
        echo "$f,S$sn,$l"
      done | sort; } > "$out/data/eegmat-$part.csv"
  done
  run prepare-train "$R" eeg prepare --recordings "$out/data/eegmat-train.csv" --rate 64 --lowpass 30 --window 4 \
    --standardise subject --out "$out/data/eegmat-train"
  run prepare-test "$R" eeg prepare --like "$out/data/eegmat-train/manifest.json" \
    --recordings "$out/data/eegmat-test.csv" --out "$out/data/eegmat-test"
fi

# ---------------------------------------------------------------- training
D=$out/data M=$out/models
[ -f "$M/eye.rf" ] || run train-eye "$R" train --data "$D/eye/train.npy" --flow nsf --blocks 4 --hidden 64 \
  --standardize robust --epochs "$(ep 60)" --batch 256 --lr 1e-3 --seed 1 --threads 2 --out "$M/eye.rf" --json \
  > "$M/eye.train.json"
[ -f "$M/sleep-density.rf" ] || run train-sleep-density "$R" train --data "$D/sleep/train_x.npy" --flow nsf \
  --blocks 4 --hidden 128 --epochs "$(ep 30)" --batch 256 --lr 1e-3 --seed 1 --threads 2 \
  --out "$M/sleep-density.rf" --json > "$M/sleep-density.train.json"
[ -f "$M/sleep-classify.rf" ] || run train-sleep-classify "$R" train --data "$D/sleep/train_x.npy" \
  --labels "$D/sleep/train_y.npy" --task classify --flow nsf --blocks 4 --hidden 128 --epochs "$(ep 30)" \
  --batch 256 --lr 1e-3 --seed 1 --threads 2 --out "$M/sleep-classify.rf" --json > "$M/sleep-classify.train.json"
[ -f "$M/eegmat.rf" ] || run train-eegmat "$R" train --data "$D/eegmat-train" --task classify --features bandpower \
  --flow glow --blocks 4 --hidden 64 --epochs "$(ep 60)" --batch 64 --lr 1e-3 --seed 1 --threads 2 \
  --out "$M/eegmat.rf" --json > "$M/eegmat.train.json"

# ---------------------------------------------------------------- certificates
cert() { # cert NAME MODEL ARGS...
  local name=$1 model=$2; shift 2
  run "certify-$name" "$R" certify "$model" --out "$out/cert-$name" --seed 1 --threads 2 --json "${quick[@]}" "$@" \
    > "$out/cert-$name.json"
}
cert eye "$M/eye.rf" --data "$D/eye/test.npy" --train "$D/eye/train.npy"
cert sleep-density "$M/sleep-density.rf" --data "$D/sleep/test_x.npy" --train "$D/sleep/train_x.npy"
cert sleep-classify "$M/sleep-classify.rf" --data "$D/sleep/test_x.npy" --labels "$D/sleep/test_y.npy" \
  --train "$D/sleep/train_x.npy" --train-labels "$D/sleep/train_y.npy"
cert eegmat "$M/eegmat.rf" --data "$D/eegmat-test" --train "$D/eegmat-train"
run compare "$R" certify --compare "$out/cert-eye/certificate.json" "$out/cert-sleep-density/certificate.json" \
  "$out/cert-sleep-classify/certificate.json" "$out/cert-eegmat/certificate.json" --out "$out/compare"
# PDF label -> PNG (pdftoppm) and the comparison page in headless Chromium, when available
if command -v pdftoppm > /dev/null; then
  for c in eye sleep-density sleep-classify eegmat; do
    pdftoppm -png -r 80 -singlefile "$out/cert-$c/label.pdf" "$out/cert-$c/label-from-pdf"
  done
fi
for b in chromium chromium-browser; do
  if command -v "$b" > /dev/null; then
    "$b" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2400 \
      --screenshot="$out/compare/screenshot.png" "file://$out/compare/index.html" > /dev/null 2>&1 || true
    break
  fi
done
echo "done: $out (times in $out/times.log)"
