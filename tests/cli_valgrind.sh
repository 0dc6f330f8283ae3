#!/usr/bin/env bash
# Memcheck (valgrind) over fast unit tests and the CLI's main commands: no invalid reads or
# writes, no use of uninitialised values, no definite leaks. Runs on the release build only
# (valgrind and AddressSanitizer exclude each other); skipped when valgrind is missing unless
# CI=true.
set -u
R=${RF_CLI:?RF_CLI must point at the renflow binary}
if [ -n "${RF_SANITIZED:-}" ]; then echo "skip: sanitizer build (valgrind runs on the release build)"; exit 0; fi
if ! command -v valgrind >/dev/null; then
  if [ "${CI:-}" = true ]; then echo "FAIL: valgrind is not installed (scripts/deps.sh installs it)"; exit 1; fi
  echo "skip: valgrind not installed"; exit 0
fi
B=$(dirname "$R")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite)
pass=0; fail=0
run() { # name, command...
  local name=$1; shift
  "${VG[@]}" "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ $rc = 0 ] && ! grep -q "^==[0-9]*== " "$T/err"; then pass=$((pass+1)); echo "ok   $name"
  else fail=$((fail+1)); echo "FAIL $name (exit $rc)"; grep "^==" "$T/err" | head -40; fi
}
for t in test_model_io test_metrics test_nn test_edf test_dsp; do run "$t" "$B/$t"; done
awk 'BEGIN{srand(5); print "a,b,c"; for(i=0;i<300;i++){u=rand()-0.5; v=rand()-0.5; printf "%f,%f,%f\n", u, u+0.3*v, u*v}}' > "$T/d.csv"
run train "$R" train --data "$T/d.csv" --flow nsf --blocks 2 --hidden 8 --epochs 2 --batch 64 --out "$T/m.rf" --quiet
run eval "$R" eval "$T/m.rf" --data "$T/d.csv" --json
run sample "$R" sample "$T/m.rf" -n 50 --out "$T/s.npy"
run encode "$R" encode "$T/m.rf" --data "$T/s.npy" --out "$T/z.npy"
run info "$R" info "$T/m.rf"
head -c 200 "$T/m.rf" > "$T/cut.rf"
"${VG[@]}" "$R" eval "$T/cut.rf" --data "$T/d.csv" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc = 1 ] && ! grep -q "^==[0-9]*== " "$T/err"; then pass=$((pass+1)); echo "ok   truncated model rejected cleanly"
else fail=$((fail+1)); echo "FAIL truncated model (exit $rc)"; head -20 "$T/err"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
