#!/usr/bin/env bash
# The CLI's interface contract: subcommands, JSON fields, exit codes (0 ok, 1 data/runtime, 2 usage).
set -u
R=${RF_CLI:?RF_CLI must point at the renflow binary}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { # name, expected exit code, command...
  local name=$1 want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local got=$?
  if [ "$got" = "$want" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $name: exit $got, want $want"; cat "$T/err"; fi
}
has() { # name, file, pattern
  if grep -q -- "$3" "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: '$3' not in $2"; cat "$2"; fi
}
# a small correlated data set as CSV (header row), made with awk
awk 'BEGIN{srand(3); print "a,b,c"; for(i=0;i<600;i++){u=rand()-0.5; v=rand()-0.5; w=rand()-0.5; printf "%f,%f,%f\n", u, u+0.3*v, u*v+0.1*w}}' > "$T/train.csv"
check help 0 "$R" --help
check train-help 0 "$R" train --help
check no-command 2 "$R"
check unknown-command 2 "$R" frobnicate
check missing-data 2 "$R" train --out "$T/m.rf"
check bad-flow 2 "$R" train --data "$T/train.csv" --out "$T/m.rf" --flow nope
check bad-number 2 "$R" train --data "$T/train.csv" --out "$T/m.rf" --epochs ten
has bad-number-msg "$T/err" "epochs"
check unknown-option 2 "$R" eval --frob
check missing-file 1 "$R" train --data "$T/none.npy" --out "$T/m.rf"
has missing-file-msg "$T/err" "none.npy"
printf 'a,b\n1,2\n3,x\n' > "$T/bad.csv"
check bad-csv 1 "$R" train --data "$T/bad.csv" --out "$T/m.rf"
has bad-csv-msg "$T/err" "bad.csv:3: column .b."
for flow in realnvp glow maf nsf nsf-ar; do
  check "train-$flow" 0 "$R" train --data "$T/train.csv" --flow $flow --blocks 2 --hidden 16 --epochs 2 --batch 64 --lr 1e-3 --seed 7 --threads 2 --out "$T/$flow.rf" --json --quiet
  has "train-json-$flow" "$T/out" '"best_val_nll"'
done
check eval 0 "$R" eval "$T/nsf.rf" --data "$T/train.csv" --json
has eval-nll "$T/out" '"nll_nats"'
has eval-bpd "$T/out" '"bits_per_dim"'
check sample 0 "$R" sample "$T/nsf.rf" -n 100 --out "$T/s.npy" --json
has sample-rate "$T/out" '"samples_per_sec"'
check encode 0 "$R" encode "$T/glow.rf" --data "$T/s.npy" --out "$T/z.npy"
check decode 0 "$R" decode "$T/glow.rf" --data "$T/z.npy" --out "$T/x.npy"
check info 0 "$R" info "$T/nsf.rf" --json
has info-sha "$T/out" '"sha256"'
# decode(encode(x)) == x, compared through eval: identical NLL
"$R" eval "$T/glow.rf" --data "$T/s.npy" --json > "$T/e1"; "$R" eval "$T/glow.rf" --data "$T/x.npy" --json > "$T/e2"
a=$(grep nll_nats "$T/e1"); b=$(grep nll_nats "$T/e2")
python3 -c "import sys; a=float('$a'.split(':')[1].strip(', ')); b=float('$b'.split(':')[1].strip(', ')); sys.exit(0 if abs(a-b) < 1e-4*(1+abs(a)) else 1)" \
  && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL roundtrip: $a vs $b"; }
# block options: an explicit permutation and no ActNorm reach the model; tsflow options need a tsflow
check train-blockopts 0 "$R" train --data "$T/train.csv" --flow glow --permutation random --no-actnorm --blocks 2 --hidden 16 --epochs 1 --out "$T/bo.rf" --quiet
check info-blockopts 0 "$R" info "$T/bo.rf"
has info-blockopts-msg "$T/out" "random permutation, ActNorm off"
check bad-permutation 2 "$R" train --data "$T/train.csv" --permutation shuffle --out "$T/m.rf"
check scales-with-glow 2 "$R" train --data "$T/train.csv" --flow glow --scales 2 --out "$T/m.rf"
has scales-with-glow-msg "$T/err" "tsflow only"
check ts-permutation 2 "$R" train --data "$T/train.csv" --flow tsflow --permutation reverse --out "$T/m.rf"
head -c 300 "$T/nsf.rf" > "$T/cut.rf"
check truncated-model 1 "$R" eval "$T/cut.rf" --data "$T/train.csv"
has truncated-msg "$T/err" "truncated"
check wrong-dim 1 "$R" eval "$T/nsf.rf" --data "$T/bad.csv"
if [ -n "${RF_SHARED_DATA:-}" ] && [ -f "$RF_SHARED_DATA/bad-inputs/miniboone-truncated.npy" ]; then
  check miniboone 1 "$R" train --data "$RF_SHARED_DATA/bad-inputs/miniboone-truncated.npy" --out "$T/m.rf"
  has miniboone-msg "$T/err" "36488"
  [ -e "$T/m.rf" ] && { fail=$((fail+1)); echo "FAIL miniboone: a model file was written"; } || pass=$((pass+1))
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
