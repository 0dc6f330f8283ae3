#!/usr/bin/env bash
# renflow tsflow vs a PyTorch reference of the same architecture (bench/torch_tsflow.py): training
# throughput (training samples per second of optimizer steps, data loading, initialisation and
# validation excluded) on the same EEG windows, the same split, batch, epochs, optimizer (Adam:
# AdamW without weight decay, clipping at 5, warm-up + cosine), for the density task (normal base)
# and the class-conditional task (class base tied over time, loss -log p(x|y) + CE), at 1 and 2
# threads. Prints a side-by-side table with the ratio (renflow / torch) and writes it as Markdown.
#
# usage: bench/bench_tsflow.sh [--quick] [--no-check] [--out DIR] [--steps | --profile | --table-only]
#
# Data (made once, kept in OUT/data):
#   eegmat: PhysioNet EEG during mental arithmetic, all 48 recordings of ../shared/data/eegmat,
#           `renflow eeg prepare --rate 64 --window 4`: 19 channels x 256 samples, rest vs task;
#   sim:    `renflow demo --eeg --subjects 16`'s simulated-eeg: 8 channels x 256 samples.
# Each set is split once by subject (a seeded 10% of the subjects for validation) into
# OUT/data/NAME-train and NAME-val, which both implementations read (--data / --val), so they
# train on exactly the same rows. The architecture is renflow's default for the window shape
# (rf_tsflow_spec_default: 19 x 256 -> 4 scales x 3 blocks, hidden 38, kernel 5; 8 x 256 -> 4 x 4,
# hidden 32, kernel 5; affine coupling, residual ReLU conditioners); the table shows both
# implementations' parameter counts, which must agree.
#
# First, bench/check_tsflow_equivalence.py loads renflow-trained models into the PyTorch
# reference and checks log p(x), z and f^-1(z) (skip with --no-check).
#
#   --quick        1 epoch, REPEATS=1 (default: EPOCHS=3, REPEATS=3; the table reports medians)
#   --no-check     skip the equivalence check
#   --out DIR      work folder (default build/bench-tsflow)
#   --profile      instead of the timings: where the time of a training step goes, at 1 thread, for
#                  the density task on each data set: renflow under `perf record --call-graph dwarf`
#                  (4 epochs; samples outside the training steps are left out; grouped by layer
#                  and by kind of work: GEMM, im2col, col2im, elementwise transform, ...), and
#                  PyTorch's operator table (torch.profiler, 5 steps). Needs perf.
#   --table-only   only print the table of the runs already in OUT/results (same settings)
#   --steps        instead of the training runs: the training step alone on a fixed random batch,
#                  best of 5 windows of 3 steps, REPEATS runs (median): renflow through a small C
#                  program built against build/librenflow.a, PyTorch through torch_tsflow.py
#                  --step-bench. Less sensitive to other processes than whole training runs.
#
# Environment: REPEATS (runs per configuration and implementation, interleaved; the table keeps
# the median), EPOCHS, BATCH (256), LR (1e-3), SEED (1), THREADS_LIST ("1 2"), TASKS
# ("density classify"), DATASETS ("eegmat sim"), RENFLOW (default build/renflow; built when
# missing), PYTHON (/usr/bin/python3 with Debian's python3-torch), DATA_ROOT (../shared/data).
# Thread settings as bench/run_bench.sh: PyTorch gets OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = T
# and OMP_WAIT_POLICY=PASSIVE (torch.set_num_threads(T)); renflow gets --threads T, the OpenMP
# defaults and OPENBLAS_NUM_THREADS=1 (it runs one shard of rows per thread with single-threaded
# BLAS). The 1-minute load average before every run is recorded next to its result.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
RENFLOW=${RENFLOW:-$ROOT/build/renflow}
DATA_ROOT=${DATA_ROOT:-$ROOT/../shared/data}
OUT=${OUT:-$ROOT/build/bench-tsflow}
QUICK=0
DO_CHECK=1
PROFILE=0
TABLE_ONLY=0
STEPS=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --no-check) DO_CHECK=0 ;;
    --profile) PROFILE=1; DO_CHECK=0 ;;
    --table-only) TABLE_ONLY=1 ;;
    --steps) STEPS=1; DO_CHECK=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_tsflow.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    EPOCHS=${EPOCHS:-1}
    REPEATS=${REPEATS:-1}
else
    EPOCHS=${EPOCHS:-3}
    REPEATS=${REPEATS:-3}
fi
BATCH=${BATCH:-256}
LR=${LR:-1e-3}
SEED=${SEED:-1}
THREADS_LIST=${THREADS_LIST:-"1 2"}
TASKS=${TASKS:-"density classify"}
DATASETS=${DATASETS:-"eegmat sim"}
DATA=$OUT/data
RESULTS=$OUT/results
mkdir -p "$DATA" "$RESULTS"

if ! "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
    echo "bench_tsflow.sh: $PYTHON cannot import torch and numpy (Debian: apt-get install python3-torch)" >&2
    exit 1
fi
if [ ! -x "$RENFLOW" ]; then
    echo "building $RENFLOW ..." >&2
    cmake -S "$ROOT" -B "$(dirname "$RENFLOW")" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$(dirname "$RENFLOW")" -j2 --target renflow >/dev/null
fi
load1() { cut -d' ' -f1 /proc/loadavg; }

if [ "$TABLE_ONLY" = 0 ]; then
# ---------------------------------------------------------------- data
if [[ " $DATASETS " == *" eegmat "* ]] && [ ! -f "$DATA/eegmat/windows.npy" ]; then
    [ -d "$DATA_ROOT/eegmat" ] || { echo "bench_tsflow.sh: $DATA_ROOT/eegmat not found (set DATA_ROOT)" >&2; exit 1; }
    {
        echo file,subject,label
        for f in "$DATA_ROOT"/eegmat/Subject*_[12].edf; do
            b=$(basename "$f" .edf)
            echo "$f,${b%_*},$([ "${b##*_}" = 1 ] && echo rest || echo task)"
        done
    } >"$DATA/eegmat.csv"
    echo "preparing eegmat ($(($(wc -l <"$DATA/eegmat.csv") - 1)) recordings) -> $DATA/eegmat" >&2
    "$RENFLOW" eeg prepare --recordings "$DATA/eegmat.csv" --out "$DATA/eegmat" --rate 64 --window 4 --quiet
fi
if [[ " $DATASETS " == *" sim "* ]] && [ ! -f "$DATA/sim/windows.npy" ]; then
    echo "simulating EEG (renflow demo --eeg --subjects 16) -> $DATA/sim" >&2
    "$RENFLOW" demo --eeg --subjects 16 --epochs 1 --folds 2 --seed "$SEED" --out-dir "$DATA/sim-demo" --quiet >/dev/null
    rm -rf "$DATA/sim"
    mv "$DATA/sim-demo/simulated-eeg" "$DATA/sim"
    rm -rf "$DATA/sim-demo"
fi
for ds in $DATASETS; do
    [ -f "$DATA/$ds-train-nolabels/windows.npy" ] && [ -f "$DATA/$ds-val/windows.npy" ] && continue
    "$PYTHON" - "$DATA/$ds" "$DATA/$ds-train" "$DATA/$ds-val" "$SEED" <<'EOF'
# seeded subject hold-out: 10% of the subjects (at least 1) -> validation; prepared-directory layout.
# TRAIN-nolabels: the training windows without labels.npy, for the density task (both
# implementations then train the unconditional model on exactly the same rows)
import json, os, shutil, sys
import numpy as np
src, tr, va, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
w = np.load(os.path.join(src, "windows.npy"))
subj = np.load(os.path.join(src, "subjects.npy"))
subjects = np.unique(subj)
rng = np.random.default_rng(seed)
n_val = max(1, int(round(0.1 * len(subjects))))
val_subj = rng.choice(subjects, n_val, replace=False)
is_val = np.isin(subj, val_subj)
for d, sel in ((tr, ~is_val), (va, is_val)):
    os.makedirs(d, exist_ok=True)
    for name in ("windows", "labels", "subjects", "recordings"):
        p = os.path.join(src, name + ".npy")
        if os.path.exists(p):
            np.save(os.path.join(d, name + ".npy"), np.load(p)[sel])
    shutil.copy(os.path.join(src, "manifest.json"), os.path.join(d, "manifest.json"))
nl = tr + "-nolabels"
os.makedirs(nl, exist_ok=True)
for name in ("windows.npy", "subjects.npy", "recordings.npy", "manifest.json"):
    if os.path.exists(os.path.join(tr, name)):
        shutil.copy(os.path.join(tr, name), os.path.join(nl, name))
print("%s: %d windows %s -> %d train / %d validation (%d of %d subjects)" %
      (src, len(w), "x".join(map(str, w.shape[1:])), (~is_val).sum(), is_val.sum(), n_val, len(subjects)), file=sys.stderr)
EOF
done

# ---------------------------------------------------------------- equivalence check
if [ "$DO_CHECK" = 1 ]; then
    args=()
    [[ " $DATASETS " == *" eegmat "* ]] && args+=(--eegmat "$DATA/eegmat")
    [[ " $DATASETS " == *" sim "* ]] && args+=(--sim "$DATA/sim")
    echo "checking that the PyTorch reference computes renflow's tsflow models:" >&2
    "$PYTHON" "$ROOT/bench/check_tsflow_equivalence.py" --renflow "$RENFLOW" "${args[@]}" >&2 ||
        echo "WARNING: the PyTorch reference and renflow disagree; the comparison below is not apples to apples" >&2
    echo >&2
fi

# perf script stacks -> shares of the training-step samples (stacks through rows_loss_grad)
FOLD_PY='
import collections, re, sys
LAYERS = [("coupling forward", ("tc_forward", "tc_condition")), ("coupling backward", ("tc_backward",)),
          ("1x1 forward", ("c1_forward",)), ("1x1 backward", ("c1_backward",)),
          ("actnorm forward", ("tan_forward", "tan_forward._omp_fn.0")),
          ("actnorm backward", ("tan_backward", "tan_backward._omp_fn.0")),
          ("squeeze", ("sq_forward", "sq_backward", "sq_forward._omp_fn.0", "sq_inverse._omp_fn.0")),
          ("base distribution", ("base_loss_grad", "rf_base_backward", "rf_base_backward_classes"))]
KINDS = [("im2col", ("im2col", "im2col.isra.0", "im2col._omp_fn.0")), ("col2im", ("col2im_add", "col2im_add._omp_fn.0")),
         ("GEMM (OpenBLAS)", ("cblas_sgemm", "rf_gemm", "cblas_strmm", "cblas_strsm")),
         ("activation", ("rf_act_forward", "rf_act_backward", "rf_act_forward._omp_fn.0", "rf_act_backward._omp_fn.0")),
         ("copy of the inactive tail", ("rf_ts_copy_tail",)),
         ("transpose of x_a / dx_a", ("tc_condition._omp_fn.0", "tc_backward._omp_fn.1")),
         ("affine transform, elementwise", ("tc_forward._omp_fn.0", "tc_backward._omp_fn.0"))]
cats, total, step, cur = collections.Counter(), 0, 0, []
def flush():
    global total, step
    if not cur:
        return
    total += 1
    s = set(cur)
    if "rows_loss_grad" not in s:
        return
    step += 1
    layer = next((n for n, fs in LAYERS if s & set(fs)), "other")
    kind = next((n for n, fs in KINDS if s & set(fs)), None)
    if kind is None:
        kind = "bias (init / gradient)" if cur[0] in ("affine", "affine_backward", "affine._omp_fn.0") else cur[0]
    cats[(layer, kind)] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); cur = []
    elif line[0] in " \t":
        m = re.match(r"\s+[0-9a-f]+\s+(\S+)", line)
        if m:
            cur.append(m.group(1).split("+")[0])
    else:
        flush(); cur = []
flush()
print("perf samples %d, in training steps %d (%.0f%%); shares of the training-step samples:" % (total, step, 100.0 * step / max(total, 1)))
by = collections.Counter()
for (l, k), v in cats.items():
    by[l] += v
for l, v in by.most_common():
    print("  %-26s %5.1f%%" % (l, 100.0 * v / step))
    for (l2, k), v2 in cats.most_common():
        if l2 == l and v2 / step >= 0.003:
            print("      %-34s %5.1f%%" % (k, 100.0 * v2 / step))
kinds = collections.Counter()
for (l, k), v in cats.items():
    kinds[k] += v
print("  by kind of work, all layers:")
for k, v in kinds.most_common(8):
    print("      %-34s %5.1f%%" % (k, 100.0 * v / step))
'

# ---------------------------------------------------------------- step benchmark
# The training step alone (loss + gradient, clipping, Adam update) on a fixed random batch, best of
# 5 windows of 3 steps: the steadiest comparison on a shared machine. renflow: the small C
# program below, built against the renflow library next to RENFLOW (librenflow.a); PyTorch:
# torch_tsflow.py --step-bench. Same architecture (rf_tsflow_spec_default), batch and threads.
if [ "$STEPS" = 1 ]; then
    bdir=$(dirname "$RENFLOW")
    [ -f "$bdir/librenflow.a" ] || { echo "bench_tsflow.sh: $bdir/librenflow.a not found (build renflow with CMake)" >&2; exit 1; }
    cat >"$OUT/ts_step.c" <<'CEOF'
/* renflow tsflow training step, best of W windows of S steps on random C x T windows.
 * usage: ts_step C T THREADS CLASSIFY BATCH STEPS WINDOWS */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/model.h"
#include "renflow/train.h"
#include "renflow/tsflow.h"

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s C T THREADS CLASSIFY BATCH STEPS WINDOWS\n", argv[0]);
        return 2;
    }
    const int C = atoi(argv[1]), T = atoi(argv[2]), threads = atoi(argv[3]), classify = atoi(argv[4]);
    const int batch = atoi(argv[5]), steps = atoi(argv[6]), windows = atoi(argv[7]);
    rf_err e = {0};
    rf_flow_spec s;
    if (batch < 1 || steps < 1 || windows < 1 || rf_tsflow_spec_default(&s, C, T, &e) != RF_OK) {
        fprintf(stderr, "ts_step: bad arguments %s\n", e.msg);
        return 2;
    }
    if (classify) {
        s.base = RF_BASE_CLASS;
        s.n_classes = 2;
        s.class_tie = 1;
    }
    rf_set_threads(threads);
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    rf_flow *f = rf_flow_create(&s, &rng, &e);
    if (!f) {
        fprintf(stderr, "ts_step: %s\n", e.msg);
        return 1;
    }
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.01f * (float)rf_rng_normal(&rng);
    const size_t D = (size_t)C * T;
    float *x = rf_floats((size_t)batch * D, &e);
    int *y = malloc(sizeof(int) * (size_t)batch);
    rf_flow_ws *w = rf_flow_ws_create(f, batch, 0, &e);
    rf_adam adam;
    if (!x || !y || !w || rf_adam_init(&adam, f->n_params, &e) != RF_OK) {
        fprintf(stderr, "ts_step: %s\n", e.msg);
        return 1;
    }
    for (size_t i = 0; i < (size_t)batch * D; i++) x[i] = (float)rf_rng_normal(&rng);
    for (int i = 0; i < batch; i++) y[i] = i % 2;
    double best = INFINITY, loss = 0;
    for (int wi = 0; wi <= windows; wi++) { /* window 0 warms up */
        const double t0 = rf_now();
        for (int k = 0; k < steps; k++) {
            memset(f->grads, 0, sizeof(float) * f->n_params);
            loss = rf_flow_loss_grad(f, w, batch, x, classify ? y : NULL, 1.0f);
            const double gn = rf_grad_norm(f->grads, f->n_params, w);
            rf_adam_step_scaled(&adam, f->params, f->grads, rf_clip_scale(gn, 5.0), 1e-5f, 0.0f, w);
        }
        const double dt = (rf_now() - t0) / steps;
        if (wi > 0 && dt < best) best = dt;
    }
    printf("{\"impl\": \"renflow\", \"channels\": %d, \"length\": %d, \"classify\": %d, \"threads\": %d, "
           "\"shards\": %d, \"batch\": %d, \"n_params\": %zu, \"best_ms_per_step\": %.2f, "
           "\"samples_per_sec\": %.1f, \"loss\": %.3f}\n",
           C, T, classify, threads, rf_flow_ws_threads(w), batch, f->n_params, 1e3 * best, batch / best, loss);
    rf_adam_free(&adam);
    rf_flow_ws_free(w);
    rf_free(x);
    free(y);
    rf_flow_free(f);
    return 0;
}
CEOF
    # shellcheck disable=SC2046
    cc -O2 -fopenmp -I"$ROOT/include" -o "$OUT/ts_step" "$OUT/ts_step.c" "$bdir/librenflow.a" \
        $(pkg-config --libs openblas libcjson libzip libcrypto cairo lapacke fftw3 sqlite3 gsl) -ledf -lm
    : >"$RESULTS/steps.jsonl"
    for rep in $(seq 1 "$REPEATS"); do
        for ds in $DATASETS; do
            shape=$("$PYTHON" -c 'import numpy as np, sys; s = np.load(sys.argv[1], mmap_mode="r").shape; print(s[1], s[2])' "$DATA/$ds/windows.npy")
            for task in $TASKS; do for T in $THREADS_LIST; do
                cl=0; [ "$task" = classify ] && cl=1
                l=$(load1)
                # shellcheck disable=SC2086
                r=$(OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=1 "$OUT/ts_step" $shape "$T" "$cl" "$BATCH" 3 5)
                echo "{\"data\": \"$ds\", \"task\": \"$task\", \"load1_before\": $l, \"r\": $r}" >>"$RESULTS/steps.jsonl"
                l=$(load1)
                r=$(OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$ROOT/bench/torch_tsflow.py" \
                    --step-bench "${shape/ /,}" --task "$task" --threads "$T" --batch "$BATCH" --json)
                echo "{\"data\": \"$ds\", \"task\": \"$task\", \"load1_before\": $l, \"r\": $r}" >>"$RESULTS/steps.jsonl"
                tail -2 "$RESULTS/steps.jsonl" | "$PYTHON" -c 'import json,sys; [print("%-7s %-8s t%d %-8s %8.1f ms/step  %7.1f samples/s  (load %.2f)" % (j["data"], j["task"], j["r"]["threads"], j["r"]["impl"], j["r"]["best_ms_per_step"], j["r"]["samples_per_sec"], j["load1_before"])) for j in map(json.loads, sys.stdin)]' >&2
            done; done
        done
    done
    "$PYTHON" - "$RESULTS/steps.jsonl" "$RESULTS/steps_table.md" <<'EOF'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    j = json.loads(line)
    r = j["r"]
    runs[(j["data"], j["task"], r["threads"], r["impl"])].append((r, j["load1_before"]))
lines = ["Training step alone (bench_tsflow.sh --steps): random batch of %d windows, best of 5 windows of 3 steps per run, "
         "median over runs." % next(iter(runs.values()))[0][0]["batch"], "",
         "| data (C x T) | task | threads | params | renflow ms/step | torch ms/step | renflow / torch speed | runs | load1 range |",
         "|---|---|---:|---:|---:|---:|---:|---:|---|"]
for (ds, task, t, impl) in sorted(runs):
    if impl != "renflow" or (ds, task, t, "torch") not in runs:
        continue
    a, b = runs[(ds, task, t, "renflow")], runs[(ds, task, t, "torch")]
    ma = statistics.median(r["best_ms_per_step"] for r, _ in a)
    mb = statistics.median(r["best_ms_per_step"] for r, _ in b)
    loads = [l for _, l in a + b]
    r0 = a[0][0]
    lines.append("| %s (%d x %d) | %s | %d | %d%s | %.1f | %.1f | **%.2fx** | %d | %.2f-%.2f |" % (
        ds, r0["channels"], r0["length"], task, t, r0["n_params"],
        "" if r0["n_params"] == b[0][0]["n_params"] else " (torch %d!)" % b[0][0]["n_params"],
        ma, mb, mb / ma, len(a), min(loads), max(loads)))
print("\n".join(lines))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
EOF
    exit 0
fi

# ---------------------------------------------------------------- profile
if [ "$PROFILE" = 1 ]; then
    command -v perf >/dev/null || { echo "bench_tsflow.sh: --profile needs perf" >&2; exit 1; }
    for ds in $DATASETS; do
        pf=$RESULTS/profile_$ds
        echo "== $ds: renflow train (density, 1 thread, 4 epochs) under perf; load $(load1)" | tee "$pf.txt"
        OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 perf record -q -F 199 --call-graph dwarf,16384 -o "$pf.perf" \
            "$RENFLOW" train --data "$DATA/$ds-train-nolabels" --val "$DATA/$ds-val" --epochs 4 --batch "$BATCH" \
            --threads 1 --seed "$SEED" --out "$pf.rf" --json --quiet 2>/dev/null |
            "$PYTHON" -c 'import json,sys; j=json.load(sys.stdin); print("renflow samples/s (under perf): %.1f" % j["samples_per_sec"])' | tee -a "$pf.txt"
        rm -f "$pf.rf" "$pf.rf.ckpt"
        perf script -i "$pf.perf" 2>/dev/null | "$PYTHON" -c "$FOLD_PY" | tee -a "$pf.txt"
        rm -f "$pf.perf"
        echo "== $ds: PyTorch (density, 1 thread), 5 steps under torch.profiler; load $(load1)" | tee -a "$pf.txt"
        OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$ROOT/bench/torch_tsflow.py" \
            --train "$DATA/$ds-train-nolabels" --batch "$BATCH" --threads 1 --seed "$SEED" --profile 5 --json 2>&1 |
            tee -a "$pf.txt"
    done
    exit 0
fi

# ---------------------------------------------------------------- runs
machine=$( (lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1) || true)
machine="${machine:-unknown CPU}, $(nproc) cores"
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
printf '{"epochs": %d, "batch": %d, "lr": "%s", "seed": %d, "repeats": %d, "date": "%s", "machine": "%s", "torch": "%s", "renflow": "%s"}\n' \
    "$EPOCHS" "$BATCH" "$LR" "$SEED" "$REPEATS" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$machine" "$torch_version" "$RENFLOW" \
    >"$RESULTS/settings.json"
RUNS=$RESULTS/runs
rm -rf "$RUNS"
mkdir -p "$RUNS"
echo "training: datasets [$DATASETS], tasks [$TASKS], threads [$THREADS_LIST], $EPOCHS epoch(s), batch $BATCH, $REPEATS repeat(s)" >&2
for rep in $(seq 1 "$REPEATS"); do
    for ds in $DATASETS; do for task in $TASKS; do for T in $THREADS_LIST; do
        tag="${ds}_${task}_t${T}_r${rep}"
        train_dir=$DATA/$ds-train
        [ "$task" = classify ] || train_dir=$DATA/$ds-train-nolabels
        l=$(load1)
        if env -u OMP_WAIT_POLICY OMP_NUM_THREADS="$T" OPENBLAS_NUM_THREADS=1 "$RENFLOW" train \
            --data "$train_dir" --val "$DATA/$ds-val" --task "$task" --epochs "$EPOCHS" --batch "$BATCH" \
            --lr "$LR" --seed "$SEED" --threads "$T" --out "$RUNS/$tag.rf" --json --quiet \
            >"$RUNS/rf_$tag.json" 2>"$RUNS/rf_$tag.log"; then
            echo "{\"load1_before\": $l, \"load1_after\": $(load1)}" >"$RUNS/rf_$tag.load"
        else
            echo "renflow $tag FAILED:" >&2; tail -3 "$RUNS/rf_$tag.log" >&2
        fi
        rm -f "$RUNS/$tag.rf" "$RUNS/$tag.rf.ckpt"
        l=$(load1)
        if OMP_NUM_THREADS="$T" OPENBLAS_NUM_THREADS="$T" OMP_WAIT_POLICY=PASSIVE "$PYTHON" "$ROOT/bench/torch_tsflow.py" \
            --train "$train_dir" --val "$DATA/$ds-val" --task "$task" --epochs "$EPOCHS" --batch "$BATCH" \
            --lr "$LR" --seed "$SEED" --threads "$T" --json >"$RUNS/torch_$tag.json" 2>"$RUNS/torch_$tag.log"; then
            echo "{\"load1_before\": $l, \"load1_after\": $(load1)}" >"$RUNS/torch_$tag.load"
        else
            echo "torch $tag FAILED:" >&2; tail -3 "$RUNS/torch_$tag.log" >&2
        fi
        "$PYTHON" - "$RUNS" "$tag" <<'EOF' >&2
import json, sys
d, t = sys.argv[1:3]
def get(impl):
    try:
        return json.load(open("%s/%s_%s.json" % (d, impl, t)))["samples_per_sec"], json.load(open("%s/%s_%s.load" % (d, impl, t)))["load1_before"]
    except (OSError, ValueError, KeyError):
        return float("nan"), float("nan")
(r, lr), (p, lp) = get("rf"), get("torch")
print("%-26s renflow %8.1f samples/s (load %.2f)   torch %8.1f samples/s (load %.2f)   ratio %.2fx" % (t, r, lr, p, lp, r / p if p else float("nan")))
EOF
    done; done; done
done

fi # TABLE_ONLY

# ---------------------------------------------------------------- table
"$PYTHON" - "$RESULTS" "$DATASETS" "$TASKS" "$THREADS_LIST" "$REPEATS" <<'EOF'
import json, math, statistics, sys
res, datasets, tasks, threads, repeats = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
st = json.load(open(res + "/settings.json"))

def runs(impl, tag):
    out = []
    for r in range(1, repeats + 1):
        try:
            j = json.load(open("%s/runs/%s_%s_r%d.json" % (res, impl, tag, r)))
            l = json.load(open("%s/runs/%s_%s_r%d.load" % (res, impl, tag, r)))
            out.append((j, l["load1_before"]))
        except (OSError, ValueError, KeyError):
            pass
    return out

lines = ["Training throughput, tsflow: samples/s = training examples per second of optimizer steps "
         "(median of %d run(s); data loading, initialisation and per-epoch validation excluded), "
         "%s epoch(s), batch %s, lr %s, Adam (no weight decay), clip 5, warm-up + cosine. "
         "Machine: %s; PyTorch %s; %s." % (repeats, st["epochs"], st["batch"], st["lr"], st["machine"], st["torch"], st["date"]),
         "",
         "| data (C x T) | task | threads | params renflow / torch | steps | renflow samples/s | torch samples/s | renflow / torch | best of runs: renflow / torch (ratio) | load1 range |",
         "|---|---|---:|---|---:|---:|---:|---:|---|---|"]
for ds in datasets:
    for task in tasks:
        for t in threads:
            tag = "%s_%s_t%s" % (ds, task, t)
            a, b = runs("rf", tag), runs("torch", tag)
            if not a or not b:
                lines.append("| %s | %s | %s | failed | | | | | | |" % (ds, task, t))
                continue
            ra = statistics.median(j["samples_per_sec"] for j, _ in a)
            rb = statistics.median(j["samples_per_sec"] for j, _ in b)
            loads = [l for _, l in a + b]
            spec = a[0][0]["spec"]
            pa, pb = a[0][0]["n_params"], b[0][0]["n_params"]
            ba = max(j["samples_per_sec"] for j, _ in a)
            bb = max(j["samples_per_sec"] for j, _ in b)
            lines.append("| %s (%d x %d) | %s | %s | %d / %d%s | %d | %.1f | %.1f | **%.2fx** | %.1f / %.1f (%.2fx) | %.2f-%.2f |" % (
                ds, spec["channels"], spec["length"], task, t, pa, pb, "" if pa == pb else " (DIFFER)",
                a[0][0]["steps"], ra, rb, ra / rb, ba, bb, ba / bb, min(loads), max(loads)))
print("\n".join(lines))
with open(res + "/tsflow_table.md", "w") as fp:
    fp.write("\n".join(lines) + "\n")
EOF
