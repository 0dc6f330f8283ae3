#!/usr/bin/env bash
# renflow vs PyTorch benchmark: trains the same flows (bench/torch_flows.py mirrors renflow's
# models, schedule and clipping) on the same data with the same batch, epochs, lr and threads,
# then prints one side-by-side table (and writes it as Markdown for BENCHMARKS.md), a GEMM
# efficiency table against OpenBLAS's own SGEMM rate (bench/sgemm_rate.c), and renflow's
# memory-saving benchmark (peak RSS at 4 vs 32 blocks, in two configurations).
#
# usage: bench/run_bench.sh [--quick] [--epochs E] [--threads T] [--out DIR]
#                           [--no-check] [--no-memory] [--memory-only]
#
# First, bench/check_equivalence.py loads small renflow-trained models of every flow type into
# the PyTorch reference and checks that both compute the same log p(x), z = f(x) and f^-1(z)
# (skip with --no-check).
#
#   --quick        a small grid: data sets synth8, eeg (D=14) and sleep (D=72), hidden 64 and 256,
#                  5 blocks, every flow type (30 configurations), 1 epoch, 1024 samples for the
#                  sampling rate, best of 2 runs: about 5 minutes on 2 cores. Without it the full
#                  grid of the issue runs: D in {8, 14, 72} (synthetic
#                  mixtures synth8/synth14/synth72 and the real sets eeg (D=14) and sleep (D=72)),
#                  hidden in {64, 256}, blocks in {5, 10}, every flow type: 100 configurations.
#   --epochs E     training epochs (default 20, or 1 with --quick)
#   --threads T    threads for both implementations (default 2)
#   --out DIR      work folder (default build/bench): data in DIR/data, results in DIR/results
#   --no-check     skip the equivalence check
#   --no-memory    skip the memory benchmark; --memory-only runs nothing else
#
# Environment overrides (space-separated lists): DATASETS, FLOWS, HIDDENS, BLOCKS_LIST, and
# BATCH (256), LR (1e-3), SEED (1), N_SAMPLES (samples drawn to time sampling; 4096, quick 1024),
# REPEATS (runs per configuration and implementation, interleaved; the table keeps the best
# training and sampling rates, which filters out interference from other processes on a shared
# machine; default 1, quick 2), RENFLOW (the CLI, default build/renflow; built with CMake when
# missing), PYTHON (default /usr/bin/python3, which has Debian's python3-torch),
# OMP_WAIT_POLICY (for PyTorch; default PASSIVE, see below; set it to ACTIVE or to an empty string
# for the OpenMP default), RF_OPENBLAS_THREADS (OPENBLAS_NUM_THREADS for renflow, default 1, see
# below), and for the memory benchmark MEM_DATA (synth72), MEM_FLOW (realnvp), MEM_HIDDEN (128),
# MEM_BATCH (8192), MEM_STEPS (2 training steps per run): the activation-dominated configuration;
# MEM2_HIDDEN (256), MEM2_BATCH (1024), MEM2_STEPS (10): a parameter-dominated one for contrast.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
RENFLOW=${RENFLOW:-$ROOT/build/renflow}
QUICK=0
EPOCHS=${EPOCHS:-}
THREADS=${THREADS:-2}
OUT=${OUT:-$ROOT/build/bench}
DO_GRID=1
DO_MEMORY=1
DO_CHECK=1

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --epochs) EPOCHS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-memory) DO_MEMORY=0 ;;
    --memory-only) DO_GRID=0; DO_CHECK=0 ;;
    --no-check) DO_CHECK=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_bench.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    DATASETS=${DATASETS:-"synth8 eeg sleep"}
    FLOWS=${FLOWS:-"realnvp glow maf nsf nsf-ar"}
    HIDDENS=${HIDDENS:-"64 256"}
    BLOCKS_LIST=${BLOCKS_LIST:-"5"}
    EPOCHS=${EPOCHS:-1}
    N_SAMPLES=${N_SAMPLES:-1024}
    REPEATS=${REPEATS:-2}
else
    DATASETS=${DATASETS:-"synth8 synth14 eeg synth72 sleep"}
    FLOWS=${FLOWS:-"realnvp glow maf nsf nsf-ar"}
    HIDDENS=${HIDDENS:-"64 256"}
    BLOCKS_LIST=${BLOCKS_LIST:-"5 10"}
    EPOCHS=${EPOCHS:-20}
    N_SAMPLES=${N_SAMPLES:-4096}
    REPEATS=${REPEATS:-1}
fi
BATCH=${BATCH:-256}
LR=${LR:-1e-3}
SEED=${SEED:-1}
MEM_DATA=${MEM_DATA:-synth72}
MEM_FLOW=${MEM_FLOW:-realnvp}
MEM_HIDDEN=${MEM_HIDDEN:-128}
MEM_BATCH=${MEM_BATCH:-8192}
MEM_STEPS=${MEM_STEPS:-2}
MEM2_HIDDEN=${MEM2_HIDDEN:-256}
MEM2_BATCH=${MEM2_BATCH:-1024}
MEM2_STEPS=${MEM2_STEPS:-10}
RF_OPENBLAS_THREADS=${RF_OPENBLAS_THREADS:-1}

DATA=$OUT/data
RESULTS=$OUT/results
mkdir -p "$OUT" "$DATA" "$RESULTS"

# Both implementations get the same number of threads (--threads). PyTorch (torch_flows.py) gets
# OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = --threads and, unless OMP_WAIT_POLICY says otherwise,
# passive waiting: it mixes OpenMP loops with OpenBLAS's own pthreads, and with OpenMP's default
# spin-waiting the idle OpenMP threads compete with OpenBLAS's threads for the cores (on 2 cores
# that made it up to 20x slower, and erratic).
# renflow needs no such setting: it splits each batch into one shard of rows per thread on its own
# threads (which sleep after a short spin) and calls OpenBLAS single-threaded (rf_set_threads), so
# it runs with the OpenMP defaults. It gets OPENBLAS_NUM_THREADS=1 (RF_OPENBLAS_THREADS) only
# because OpenBLAS starts its worker threads when it is loaded, before renflow can tell it that it
# will not use them, and they spin for ~0.1 s of CPU first; in a 1-epoch run that is a noticeable
# part of a core. (rf_set_threads sets OpenBLAS to one thread either way.)
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
OMP_WAIT_POLICY=${OMP_WAIT_POLICY-PASSIVE}
if [ -n "$OMP_WAIT_POLICY" ]; then export OMP_WAIT_POLICY; else unset OMP_WAIT_POLICY; fi
rf() { env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS="$RF_OPENBLAS_THREADS" "$RENFLOW" "$@"; }

# ---------------------------------------------------------------- prerequisites
if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time (for peak RSS)..." >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y time >/dev/null 2>&1; } || true
    else
        sudo apt-get install -y time >/dev/null 2>&1 || true
    fi
    [ -x /usr/bin/time ] || { echo "run_bench.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
fi
if ! "$PYTHON" -c 'import torch, numpy' 2>/dev/null; then
    echo "run_bench.sh: $PYTHON cannot import torch and numpy (Debian: apt-get install python3-torch)" >&2
    exit 1
fi
if [ "$DO_GRID" = 1 ] || [ "$DO_MEMORY" = 1 ]; then
    if [ ! -x "$RENFLOW" ]; then
        echo "building $RENFLOW ..." >&2
        cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$ROOT/build" -j"$(nproc)" --target renflow >/dev/null
    fi
    rf train --help >/dev/null || { echo "run_bench.sh: $RENFLOW train does not work" >&2; exit 1; }
fi

need_data() {
    local missing=""
    for ds in "$@"; do
        for s in train val test; do [ -f "$DATA/${ds}_$s.npy" ] || missing="$missing $ds"; done
    done
    missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ',' | sed 's/,$//')
    if [ -n "$missing" ]; then "$PYTHON" "$ROOT/bench/make_data.py" "$DATA" --only "$missing"; fi
}

dim_of() { "$PYTHON" -c "import numpy as np, sys; print(np.load(sys.argv[1], mmap_mode='r').shape[1])" "$1"; }

machine=$( (lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1) || true)
machine="${machine:-unknown CPU}, $(nproc) cores"

# ---------------------------------------------------------------- equivalence check
if [ "$DO_CHECK" = 1 ]; then
    need_data eeg
    echo "checking that the PyTorch reference computes renflow's models (renflow .rf files loaded into torch):" >&2
    "$PYTHON" "$ROOT/bench/check_equivalence.py" --renflow "$RENFLOW" --data "$DATA" --set eeg >&2 ||
        echo "WARNING: the PyTorch reference and renflow disagree; the comparison below is not apples to apples" >&2
    echo >&2
fi

# ---------------------------------------------------------------- grid
# One configuration: renflow train/eval/sample and the PyTorch reference, REPEATS times
# (interleaved). Repeat r > 1 writes its files with the suffix .r; bench_table.py takes the best
# training and sampling rates over the repeats and the NLL and RSS of the first.
run_one() {
    local ds=$1 D=$2 flow=$3 H=$4 NB=$5
    local name="${ds}_${flow}_h${H}_b${NB}"
    local dir="$RESULTS/runs/$name"
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '{"dataset": "%s", "dim": %d, "flow": "%s", "hidden": %d, "blocks": %d, "batch": %d, "threads": %d, "epochs": %d, "load1": %s}\n' \
        "$ds" "$D" "$flow" "$H" "$NB" "$BATCH" "$THREADS" "$EPOCHS" "$(cut -d' ' -f1 /proc/loadavg)" >"$dir/meta.json"
    local tr="$DATA/${ds}_train.npy" va="$DATA/${ds}_val.npy" te="$DATA/${ds}_test.npy"
    local rf_ok=1 t_ok=1 rf_s=0 t_s=0 rep sfx t0
    for rep in $(seq 1 "$REPEATS"); do
        sfx=""
        [ "$rep" = 1 ] || sfx=".$rep"
        t0=$SECONDS
        if /usr/bin/time -f %M -o "$dir/rf_train$sfx.rss" env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS="$RF_OPENBLAS_THREADS" "$RENFLOW" train --data "$tr" --val "$va" --flow "$flow" \
            --blocks "$NB" --hidden "$H" --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --seed "$SEED" \
            --threads "$THREADS" --out "$dir/model.rf" --json --quiet >"$dir/rf_train$sfx.json" 2>"$dir/rf_train$sfx.log"; then
            if [ "$rep" = 1 ]; then
                rf eval --data "$te" --threads "$THREADS" --json "$dir/model.rf" >"$dir/rf_eval.json" \
                    2>"$dir/rf_eval.log" || rf_ok=0
            fi
            rf sample -n "$N_SAMPLES" --out "$dir/samples.npy" --seed "$SEED" --threads "$THREADS" --json \
                "$dir/model.rf" >"$dir/rf_sample$sfx.json" 2>"$dir/rf_sample$sfx.log" || rf_ok=0
        else
            rf_ok=0
        fi
        rm -f "$dir/samples.npy" "$dir/model.rf.ckpt"
        rf_s=$((rf_s + SECONDS - t0))
        t0=$SECONDS
        /usr/bin/time -f %M -o "$dir/torch$sfx.rss" "$PYTHON" "$ROOT/bench/torch_flows.py" --flow "$flow" \
            --train "$tr" --val "$va" --test "$te" --blocks "$NB" --hidden "$H" --epochs "$EPOCHS" --batch "$BATCH" \
            --lr "$LR" --threads "$THREADS" --seed "$SEED" --n-samples "$N_SAMPLES" --json \
            >"$dir/torch$sfx.json" 2>"$dir/torch$sfx.log" || t_ok=0
        t_s=$((t_s + SECONDS - t0))
    done
    rm -f "$dir/model.rf"
    printf '%-24s renflow %s (%3ds)   torch %s (%3ds)\n' "$name" "$([ $rf_ok = 1 ] && echo ok || echo FAILED)" \
        "$rf_s" "$([ $t_ok = 1 ] && echo ok || echo FAILED)" "$t_s" >&2
    [ $rf_ok = 1 ] || tail -n 3 "$dir"/rf_*.log | sed 's/^/    renflow: /' >&2
    [ $t_ok = 1 ] || tail -n 3 "$dir"/torch*.log | sed 's/^/    torch: /' >&2
    return 0
}

if [ "$DO_GRID" = 1 ]; then
    # shellcheck disable=SC2086
    need_data $DATASETS
    rm -rf "$RESULTS/runs"
    mkdir -p "$RESULTS/runs"
    torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
    printf '{"threads": %d, "batch": %d, "epochs": %d, "lr": "%s", "seed": %d, "date": "%s", "machine": "%s", "torch": "%s", "quick": %d, "omp_wait_policy": "%s", "rf_openblas_threads": %d, "n_samples": %d, "repeats": %d}\n' \
        "$THREADS" "$BATCH" "$EPOCHS" "$LR" "$SEED" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$machine" "$torch_version" "$QUICK" \
        "${OMP_WAIT_POLICY:-default}" "$RF_OPENBLAS_THREADS" "$N_SAMPLES" "$REPEATS" >"$RESULTS/settings.json"

    # OpenBLAS's own SGEMM rate at batch x hidden x hidden
    # (the better of OpenBLAS's threaded rate and THREADS concurrent single-threaded SGEMMs)
    if cc -O2 -pthread -o "$OUT/sgemm_rate" "$ROOT/bench/sgemm_rate.c" -lopenblas 2>"$OUT/sgemm_build.log"; then
        "$OUT/sgemm_rate" --threads "$THREADS" --batch "$BATCH" --hidden "$(echo $HIDDENS | tr ' ' ',')" \
            --seconds 3 >"$RESULTS/sgemm.jsonl"
    else
        echo "sgemm_rate did not build (see $OUT/sgemm_build.log); skipping the GEMM table" >&2
        rm -f "$RESULTS/sgemm.jsonl"
    fi

    n_runs=0
    for ds in $DATASETS; do for H in $HIDDENS; do for NB in $BLOCKS_LIST; do for flow in $FLOWS; do
        n_runs=$((n_runs + 1))
    done; done; done; done
    echo "grid: $n_runs configurations x 2 implementations x $REPEATS run(s), $EPOCHS epoch(s), batch $BATCH, $THREADS threads" >&2
    start=$SECONDS
    for ds in $DATASETS; do
        D=$(dim_of "$DATA/${ds}_train.npy")
        for H in $HIDDENS; do for NB in $BLOCKS_LIST; do for flow in $FLOWS; do
            run_one "$ds" "$D" "$flow" "$H" "$NB"
        done; done; done
    done
    echo "grid done in $((SECONDS - start)) s" >&2
    echo
    "$PYTHON" "$ROOT/bench/bench_table.py" "$RESULTS" --markdown "$RESULTS/bench_table.md"
fi

# ---------------------------------------------------------------- memory benchmark
# Peak RSS of `renflow train` at 4 and 32 blocks, with memory-saving backprop and with stored
# activations, in two configurations: MEM_* (a large batch: activations are what matters) and
# MEM2_* (a small batch and wide conditioners: the per-parameter state is what grows).
if [ "$DO_MEMORY" = 1 ]; then
    need_data "$MEM_DATA"
    mdir="$RESULTS/memory"
    rm -rf "$mdir"
    mkdir -p "$mdir"
    for cfg in "a $MEM_HIDDEN $MEM_BATCH $MEM_STEPS" "b $MEM2_HIDDEN $MEM2_BATCH $MEM2_STEPS"; do
        # shellcheck disable=SC2086
        set -- $cfg
        for mode in saving store; do
            for NB in 4 32; do
                flag=""
                [ "$mode" = saving ] && flag="--memory-saving"
                tag="$1-$mode-$NB"
                # shellcheck disable=SC2086
                /usr/bin/time -f %M -o "$mdir/$tag.rss" env -u OMP_WAIT_POLICY OPENBLAS_NUM_THREADS="$RF_OPENBLAS_THREADS" \
                    "$RENFLOW" train --data "$DATA/${MEM_DATA}_train.npy" \
                    --val "$DATA/${MEM_DATA}_val.npy" --flow "$MEM_FLOW" --blocks "$NB" --hidden "$2" \
                    --batch "$3" --epochs 1 --max-steps "$4" --seed "$SEED" --threads "$THREADS" \
                    $flag --out "$mdir/$tag.rf" --json --quiet >"$mdir/$tag.json" 2>"$mdir/$tag.log" ||
                    { echo "memory benchmark: renflow train $flag --blocks $NB --hidden $2 --batch $3 failed:" >&2; tail -3 "$mdir/$tag.log" >&2; }
                rm -f "$mdir/$tag.rf" "$mdir/$tag.rf.ckpt"
            done
        done
    done
    "$PYTHON" - "$mdir" "$MEM_DATA" "$MEM_FLOW" "$THREADS" "$MEM_HIDDEN" "$MEM_BATCH" "$MEM_STEPS" "$MEM2_HIDDEN" "$MEM2_BATCH" "$MEM2_STEPS" <<'EOF'
import json, math, sys
d, data, flow, threads = sys.argv[1:5]
cfgs = {"a": sys.argv[5:8], "b": sys.argv[8:11]}

def rss(name):  # MB from /usr/bin/time %M (KB), NaN when the run failed
    try:
        return float(open("%s/%s.rss" % (d, name)).read().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        return math.nan

def params(name):
    try:
        return json.load(open("%s/%s.json" % (d, name)))["n_params"]
    except (OSError, ValueError, KeyError):
        return math.nan

lines = ["renflow peak RSS of the whole `renflow train` process (/usr/bin/time), %s flow on %s, %s threads, "
         "stopped after a few training steps with `--max-steps` (which writes the checkpoint, as every epoch end does)."
         % (flow, data, threads), "",
         "| configuration | backprop | params at 4 / 32 blocks | 4 blocks | 32 blocks | 32 / 4 |",
         "|---|---|---|---:|---:|---:|"]
ratio = {}
for c, (hidden, batch, steps) in cfgs.items():
    kind = "activation-dominated" if c == "a" else "parameter-dominated"
    for mode, label in (("saving", "memory-saving (`--memory-saving`)"), ("store", "stored activations (default)")):
        r4, r32 = rss("%s-%s-4" % (c, mode)), rss("%s-%s-32" % (c, mode))
        p4, p32 = params("%s-%s-4" % (c, mode)), params("%s-%s-32" % (c, mode))
        ratio[(c, mode)] = r32 / r4
        lines.append("| %s: hidden %s, batch %s, %s steps | %s | %.2f M / %.2f M | %.0f MB | %.0f MB | %.2fx |"
                     % (kind, hidden, batch, steps, label, p4 / 1e6, p32 / 1e6, r4, r32, r32 / r4))
lines += ["", "Per parameter, training keeps the parameters, their gradient, one more gradient buffer per extra "
          "thread (the shards' partial sums), the two AdamW moments and the best-model copy: 6 floats at 2 threads, "
          "24 bytes; checkpoints are streamed from those buffers and add nothing."]
print("\n" + "\n".join(lines))
with open(d + "/memory.md", "w") as fp:
    fp.write("\n".join(lines) + "\n")
print("\nmemory ratio (memory-saving, 32 vs 4 blocks): %.2f (%s), %.2f (%s)" %
      (ratio[("a", "saving")], "activation-dominated", ratio[("b", "saving")], "parameter-dominated"))
EOF
fi
