#!/usr/bin/env bash
# renflow's samplers against Optuna (Debian python3-optuna) and BOHB against random search on a
# flow-training task. Prints the side-by-side tables and writes them as Markdown, plus a PNG of
# the anytime curves.
#
# usage: bench/bench_samplers.sh [--quick] [--out DIR] [--no-flow] [--flow-only] [--no-optuna]
#
#   1. Branin and Hartmann-6, 100 trials, seeds 0..19: best value (median, IQR) of renflow's
#      random, tpe (default: multivariate, Scott bandwidths), tpe-optuna (Optuna >= 3.5's
#      bandwidth rule) and tpe-sdw (Optuna < 3.5's kernels) against Optuna's RandomSampler,
#      TPESampler() (its default, univariate) and TPESampler(multivariate=True). Histories in
#      memory on both sides.
#   2. Sampler overhead per trial with 1000 completed trials (Hartmann-6), CPU time: renflow's
#      sampler alone and a whole SQLite ask + tell round (also for asha and bohb, whose planner
#      reads the study file on every ask); Optuna's ask + suggest + tell (in memory).
#   3. BOHB vs random search on the built-in "ring" density task (renflow's search objective:
#      train a flow, validation NLL; budget = epochs, min 1, max 27, eta 3): two Hyperband
#      iterations (846 epochs) per seed, random search training 31 flows of 27 epochs; the best
#      validation NLL so far against cumulative epochs, median and IQR over 5 seeds.
#
#   4. (validation) the TPE defaults on seven further functions (Hartmann-3, Styblinski-Tang 5-D,
#      Rosenbrock 4-D, Levy 4-D, Ackley 5-D, six-hump camel, log Goldstein-Price), 100 trials, 40
#      seeds: renflow tpe and tpe-optuna against Optuna's tpe and tpe-mv; a check that renflow's
#      default, chosen on Branin and Hartmann-6, is not fitted to them.
#
#   --quick       5 seeds for 1-2, no validation; flow: 2 seeds, 1 iteration with max 9 (minutes)
#   --out DIR     results folder (default build/bench-samplers): optuna.tsv, renflow.tsv,
#                 *_validation.tsv, flow.tsv, samplers.md (the tables) and anytime.png
#   --no-flow     skip 3 (the long part: about an hour on 2 busy cores); --flow-only runs only 3
#   --no-validation  skip 4 (about 10 minutes, mostly Optuna)
#   --no-optuna   skip Optuna (renflow's side only)
#
# Environment: BUILD (CMake build folder, default build; configured and the sampler_bench target
# built when missing), PYTHON (default /usr/bin/python3, which has python3-optuna), SEEDS (20),
# TRIALS (100), FLOW_SEEDS (5), FLOW_ITERATIONS (2), FLOW_MAX (27), FLOW_TASK (ring),
# RF_SAMPLERS (random,tpe,tpe-optuna,tpe-sdw), OPTUNA_SAMPLERS (random,tpe,tpe-mv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=$ROOT/build/bench-samplers
QUICK=0
DO_SUITE=1
DO_FLOW=1
DO_OPTUNA=1
DO_VAL=1
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    --no-flow) DO_FLOW=0 ;;
    --flow-only) DO_SUITE=0; DO_VAL=0 ;;
    --no-optuna) DO_OPTUNA=0 ;;
    --no-validation) DO_VAL=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_samplers.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    DO_VAL=0
    SEEDS=${SEEDS:-5}
    FLOW_SEEDS=${FLOW_SEEDS:-2}
    FLOW_ITERATIONS=${FLOW_ITERATIONS:-1}
    FLOW_MAX=${FLOW_MAX:-9}
else
    SEEDS=${SEEDS:-20}
    FLOW_SEEDS=${FLOW_SEEDS:-5}
    FLOW_ITERATIONS=${FLOW_ITERATIONS:-2}
    FLOW_MAX=${FLOW_MAX:-27}
fi
TRIALS=${TRIALS:-100}
FLOW_TASK=${FLOW_TASK:-ring}
RF_SAMPLERS=${RF_SAMPLERS:-random,tpe,tpe-optuna,tpe-sdw}
OPTUNA_SAMPLERS=${OPTUNA_SAMPLERS:-random,tpe,tpe-mv}

mkdir -p "$OUT"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" --target sampler_bench -j2 >/dev/null
SB=$BUILD/sampler_bench

files=()
if [ "$DO_SUITE" = 1 ]; then
    if [ "$DO_OPTUNA" = 1 ]; then
        if ! "$PYTHON" -c "import optuna" 2>/dev/null; then
            echo "bench_samplers.sh: $PYTHON has no optuna (Debian: apt-get install python3-optuna); use --no-optuna" >&2
            exit 1
        fi
        echo "Optuna: $SEEDS seeds x $TRIALS trials, samplers $OPTUNA_SAMPLERS ..." >&2
        "$PYTHON" "$ROOT/bench/optuna_ref.py" suite --seeds "$SEEDS" --trials "$TRIALS" --samplers "$OPTUNA_SAMPLERS" \
            >"$OUT/optuna.tsv"
        "$PYTHON" "$ROOT/bench/optuna_ref.py" overhead --trials 1000 --asks 20 --samplers "$OPTUNA_SAMPLERS" >>"$OUT/optuna.tsv"
        files+=("$OUT/optuna.tsv")
    fi
    echo "renflow: $SEEDS seeds x $TRIALS trials, samplers $RF_SAMPLERS ..." >&2
    "$SB" suite --seeds "$SEEDS" --trials "$TRIALS" --samplers "$RF_SAMPLERS" >"$OUT/renflow.tsv"
    "$SB" overhead --trials 1000 --asks 50 --samplers "$RF_SAMPLERS,asha,bohb" --work "$OUT" >>"$OUT/renflow.tsv"
    files+=("$OUT/renflow.tsv")
fi
if [ "$DO_VAL" = 1 ]; then
    VAL_FUNCS=hartmann3,styblinski5,rosenbrock4,levy4,ackley5,camel,goldstein
    echo "validation: 7 further functions, 40 seeds ..." >&2
    if [ "$DO_OPTUNA" = 1 ]; then
        "$PYTHON" "$ROOT/bench/optuna_ref.py" suite --seeds 40 --trials "$TRIALS" --samplers tpe,tpe-mv --functions "$VAL_FUNCS" \
            >"$OUT/optuna_validation.tsv"
        files+=("$OUT/optuna_validation.tsv")
    fi
    "$SB" suite --seeds 40 --trials "$TRIALS" --samplers tpe,tpe-optuna --functions "$VAL_FUNCS" >"$OUT/renflow_validation.tsv"
    files+=("$OUT/renflow_validation.tsv")
fi
if [ "$DO_FLOW" = 1 ]; then
    echo "flow training: BOHB vs random, $FLOW_SEEDS seeds, $FLOW_ITERATIONS Hyperband iterations, max $FLOW_MAX epochs ..." >&2
    "$SB" flow --task "$FLOW_TASK" --seeds "$FLOW_SEEDS" --iterations "$FLOW_ITERATIONS" --min 1 --max "$FLOW_MAX" --eta 3 \
        --samplers bohb,random --work "$OUT" >"$OUT/flow.tsv"
    files+=("$OUT/flow.tsv")
fi
if [ ${#files[@]} -eq 0 ]; then
    echo "bench_samplers.sh: nothing to run" >&2
    exit 2
fi
png=()
[ "$DO_FLOW" = 1 ] && png=(--png "$OUT/anytime.png")
"$SB" table "${files[@]}" --md "$OUT/samplers.md" "${png[@]}"
echo >&2
echo "tables: $OUT/samplers.md" >&2
