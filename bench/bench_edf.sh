#!/usr/bin/env bash
# EDF -> windows throughput: `renflow eeg prepare` against a Python reference doing the same steps
# (bench/edf_reference.py: MNE-Python's EDF reader, or a numpy one, + scipy.signal butter /
# sosfiltfilt / resample_poly + robust z-scoring + windowing + artefact rejection + .npy output).
#
# usage: bench/bench_edf.sh [--quick] [--out DIR]
#
# Data sets (../shared/data, read in place):
#   eegmat:   all 48 recordings of PhysioNet's EEG during mental arithmetic (EDF+, 21 signals at
#             500 Hz, 19 EEG channels used), label = rest/task per recording;
#   eegmmidb: the 14 runs of subject S001 of PhysioNet's EEG motor movement/imagery set (EDF+, 64
#             channels at 160 Hz; R01/R02 are truncated files: both implementations use their
#             complete records), label = baseline (R01, R02) / task.
# (The Sleep-EDF hypnograms here are annotation-only files without signals, so they are left out.)
# Settings for both: band-pass 0.5-45 Hz (Butterworth order 4, zero-phase), resampling to 64 Hz,
# robust standardisation per recording and channel, 4 s windows (256 samples) with hop 4 s,
# rejection at |z| > 20.
#
# Runs, interleaved, REPEATS times (default 3, --quick 1); the table shows medians:
#   renflow eeg prepare with OMP_NUM_THREADS = 1 and 2 (its filters run channels in parallel);
#   the Python reference with MNE's reader and with the numpy reader, --jobs 1 and 2 (worker
#   processes over recordings).
# Times are wall-clock seconds of the whole process (Python: interpreter start and imports
# included; the in-process time without imports is shown too). MB/s = bytes of the EDF files /
# seconds; windows/s = windows written / seconds. The 1-minute load average before each run is
# recorded. Environment: REPEATS, SETS ("eegmat eegmmidb"), RENFLOW (default build/renflow),
# PYTHON (/usr/bin/python3; needs numpy, scipy and, for the MNE reader, python3-mne),
# DATA_ROOT (../shared/data), READERS ("mne numpy"), THREADS_LIST ("1 2").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
RENFLOW=${RENFLOW:-$ROOT/build/renflow}
DATA_ROOT=${DATA_ROOT:-$ROOT/../shared/data}
OUT=${OUT:-$ROOT/build/bench-edf}
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_edf.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then REPEATS=${REPEATS:-1}; else REPEATS=${REPEATS:-3}; fi
SETS=${SETS:-"eegmat eegmmidb"}
READERS=${READERS:-"mne numpy"}
THREADS_LIST=${THREADS_LIST:-"1 2"}
SETTINGS=(--rate 64 --window 4 --highpass 0.5 --lowpass 45 --order 4 --reject-z 20)
mkdir -p "$OUT"
RUNS=$OUT/runs
rm -rf "$RUNS"
mkdir -p "$RUNS"

"$PYTHON" -c 'import numpy, scipy' 2>/dev/null ||
    { echo "bench_edf.sh: $PYTHON needs numpy and scipy (Debian: apt-get install python3-scipy)" >&2; exit 1; }
if [[ " $READERS " == *" mne "* ]] && ! "$PYTHON" -c 'import mne' 2>/dev/null; then
    echo "bench_edf.sh: $PYTHON cannot import mne (Debian: apt-get install python3-mne); using the numpy reader only" >&2
    READERS=numpy
fi
if [ ! -x "$RENFLOW" ]; then
    echo "building $RENFLOW ..." >&2
    cmake -S "$ROOT" -B "$(dirname "$RENFLOW")" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$(dirname "$RENFLOW")" -j2 --target renflow >/dev/null
fi

# ---------------------------------------------------------------- recording lists
for set in $SETS; do
    case $set in
    eegmat)
        [ -d "$DATA_ROOT/eegmat" ] || { echo "bench_edf.sh: $DATA_ROOT/eegmat not found" >&2; exit 1; }
        {
            echo file,subject,label
            for f in "$DATA_ROOT"/eegmat/Subject*_[12].edf; do
                b=$(basename "$f" .edf)
                echo "$f,${b%_*},$([ "${b##*_}" = 1 ] && echo rest || echo task)"
            done
        } >"$OUT/$set.csv" ;;
    eegmmidb)
        [ -d "$DATA_ROOT/eegmmidb/S001" ] || { echo "bench_edf.sh: $DATA_ROOT/eegmmidb/S001 not found" >&2; exit 1; }
        {
            echo file,subject,label
            for f in "$DATA_ROOT"/eegmmidb/S001/S001R*.edf; do
                case $(basename "$f") in S001R01* | S001R02*) l=baseline ;; *) l=task ;; esac
                echo "$f,S001,$l"
            done
        } >"$OUT/$set.csv" ;;
    *) echo "bench_edf.sh: unknown set '$set'" >&2; exit 2 ;;
    esac
done

now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# record NAME LOAD T0 T1 [JSON-FILE]: one run's wall time and load
record() {
    "$PYTHON" - "$@" <<'EOF'
import json, sys
name, load, t0, t1 = sys.argv[1:5]
j = {}
if len(sys.argv) > 5:
    try:
        j = json.loads(open(sys.argv[5]).read())  # renflow --json (one object, indented)
    except (OSError, ValueError):
        j = {}
j.update(wall_seconds=float(t1) - float(t0), load1_before=float(load))
with open(name, "w") as fp:
    json.dump(j, fp)
EOF
}

# ---------------------------------------------------------------- runs
echo "EDF -> windows: sets [$SETS], $REPEATS repeat(s)" >&2
for rep in $(seq 1 "$REPEATS"); do
    for set in $SETS; do
        for T in $THREADS_LIST; do
            tag=${set}_renflow_t${T}_r$rep
            l=$(load1); t0=$(now)
            if OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=1 "$RENFLOW" eeg prepare --recordings "$OUT/$set.csv" \
                --out "$OUT/out_renflow_$set" "${SETTINGS[@]}" --json --quiet >"$RUNS/$tag.out" 2>"$RUNS/$tag.log"; then
                t1=$(now)
                record "$RUNS/$tag.json" "$l" "$t0" "$t1" "$RUNS/$tag.out"
            else
                echo "renflow $tag FAILED:" >&2; tail -3 "$RUNS/$tag.log" >&2
            fi
            for rd in $READERS; do
                tag=${set}_python-${rd}_t${T}_r$rep
                cmp=()
                [ -f "$OUT/out_renflow_$set/windows.npy" ] && cmp=(--compare "$OUT/out_renflow_$set")
                l=$(load1); t0=$(now)
                if "$PYTHON" "$ROOT/bench/edf_reference.py" --recordings "$OUT/$set.csv" --out "$OUT/out_py_$set" \
                    "${SETTINGS[@]}" --reader "$rd" --jobs "$T" "${cmp[@]}" --json >"$RUNS/$tag.out" 2>"$RUNS/$tag.log"; then
                    t1=$(now)
                    record "$RUNS/$tag.json" "$l" "$t0" "$t1" "$RUNS/$tag.out"
                else
                    echo "python $tag FAILED:" >&2; tail -3 "$RUNS/$tag.log" >&2
                fi
            done
        done
    done
    echo "repeat $rep done (load $(load1))" >&2
done

# ---------------------------------------------------------------- table
"$PYTHON" - "$OUT" "$SETS" "$READERS" "$THREADS_LIST" "$REPEATS" <<'EOF'
import glob, json, os, statistics, sys
out, sets, readers, threads, repeats = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
lines = ["EDF -> windows (band-pass 0.5-45 Hz order 4 zero-phase, resample to 64 Hz, robust z per recording, "
         "4 s windows, |z| > 20 rejected, .npy output); wall-clock seconds of the whole process, median of %d run(s)."
         % repeats, "",
         "| set | implementation | threads / jobs | windows | input MB | seconds | MB/s | windows/s | renflow speed-up | "
         "python s without imports | load1 range |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
notes = []
for s in sets:
    mb = sum(os.path.getsize(r.split(",")[0]) for r in open("%s/%s.csv" % (out, s)).read().split("\n")[1:] if r) / 1e6
    base = {}
    for impl in ["renflow"] + ["python-" + r for r in readers]:
        for t in threads:
            runs = [json.load(open(p)) for p in sorted(glob.glob("%s/runs/%s_%s_t%s_r*.json" % (out, s, impl, t)))]
            if not runs:
                continue
            sec = statistics.median(r["wall_seconds"] for r in runs)
            win = runs[0].get("windows", 0)
            if impl == "renflow":
                base[t] = sec
            inproc = statistics.median(r["seconds"] for r in runs) if "seconds" in runs[0] else None
            loads = [r["load1_before"] for r in runs]
            lines.append("| %s | %s | %s | %d | %.1f | %.2f | %.1f | %.0f | %s | %s | %.2f-%.2f |" % (
                s, impl, t, win, mb, sec, mb / sec, win / sec,
                "%.2fx" % (sec / base[t]) if impl != "renflow" and t in base else "",
                "%.2f" % inproc if inproc is not None else "", min(loads), max(loads)))
            c = runs[0].get("compare")
            if impl.startswith("python") and t == threads[0] and c is not None:
                notes.append("%s, %s vs renflow: %s" % (s, impl, json.dumps(c)))
print("\n".join(lines))
print("\n" + "\n".join(notes))
with open(out + "/edf_table.md", "w") as fp:
    fp.write("\n".join(lines) + "\n\n" + "\n".join("- " + n for n in notes) + "\n")
EOF
