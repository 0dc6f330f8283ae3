#!/usr/bin/env bash
# renflow certify: the certificate validates against docs/certificate.schema.json (python3
# jsonschema, Draft 2020-12), for a density model with references, a classifier with
# class-conditional references, and a model without references; the energy method is reported
# truthfully (a fake RAPL tree: measured; none: estimated with the given watts per core);
# exit codes 0/1/2 and error messages that name the file; the write is atomic.
set -u
R=${RF_CLI:?RF_CLI must point at the renflow binary}
HERE=$(cd "$(dirname "$0")" && pwd)
SCHEMA="$HERE/../docs/certificate.schema.json"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { # name, expected exit code, command...
  local name=$1 want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local got=$?
  if [ "$got" = "$want" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $name: exit $got, want $want"; tail -5 "$T/err"; fi
}
has() { # name, file, pattern
  if grep -q -- "$3" "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: '$3' not in $2"; head -20 "$2"; fi
}
py() { # name, python code (CERT = the parsed certificate at $2)
  local name=$1 file=$2 code=$3
  if python3 - "$file" "$SCHEMA" >"$T/py" 2>&1 <<EOF
import json, sys
CERT = json.load(open(sys.argv[1]))
SCHEMA_PATH = sys.argv[2]
$code
EOF
  then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $name"; cat "$T/py"; fi
}
VALIDATE='
import jsonschema
schema = json.load(open(SCHEMA_PATH))
jsonschema.Draft202012Validator.check_schema(schema)
errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(CERT), key=lambda e: list(e.path))
for e in errors[:10]: print(list(e.path), e.message[:300])
assert not errors, f"{len(errors)} schema errors"
'
# data: a correlated 3-D density (train / test), two labelled classes in 3-D
awk 'BEGIN{srand(3); print "a,b,c"; for(i=0;i<900;i++){u=rand()-0.5; v=rand()-0.5; w=rand()-0.5; printf "%f,%f,%f\n", u, u+0.3*v, u*v+0.1*w}}' > "$T/train.csv"
awk 'BEGIN{srand(4); print "a,b,c"; for(i=0;i<300;i++){u=rand()-0.5; v=rand()-0.5; w=rand()-0.5; printf "%f,%f,%f\n", u, u+0.3*v, u*v+0.1*w}}' > "$T/test.csv"
mk_cls() { # seed rows prefix
  awk -v s="$1" -v n="$2" -v x="$3.csv" -v y="$3-y.csv" 'BEGIN{srand(s); print "a,b,c" > x; print "y" > y;
    for(i=0;i<n;i++){c=i%2; m=c?1.5:-1.5; printf "%f,%f,%f\n", m+(rand()-0.5)*2, (rand()-0.5)*2, (rand()-0.5)*2 > x; print c > y}}'
}
mk_cls 5 600 "$T/ctrain"; mk_cls 6 200 "$T/ctest"
check train 0 "$R" train --data "$T/train.csv" --flow glow --blocks 2 --hidden 16 --epochs 3 --batch 64 --seed 7 --threads 2 --out "$T/m.rf" --quiet
check train-cls 0 "$R" train --task classify --data "$T/ctrain.csv" --labels "$T/ctrain-y.csv" --flow realnvp --blocks 2 --hidden 16 \
  --epochs 3 --batch 64 --seed 7 --threads 2 --out "$T/c.rf" --quiet

# ---- usage and data errors ----
check help 0 "$R" certify --help
has help-text "$T/out" "certificate.json"
check in-main-help 0 "$R" --help
has main-help "$T/out" "certify"
check no-out 2 "$R" certify "$T/m.rf" --data "$T/test.csv"
check no-data 2 "$R" certify "$T/m.rf" --out "$T/x"
check no-model 2 "$R" certify --data "$T/test.csv" --out "$T/x"
check bad-reference 2 "$R" certify "$T/m.rf" --data "$T/test.csv" --out "$T/x" --reference best
check bad-number 2 "$R" certify "$T/m.rf" --data "$T/test.csv" --out "$T/x" --samples many
has bad-number-msg "$T/err" "samples"
check missing-model 1 "$R" certify "$T/none.rf" --data "$T/test.csv" --out "$T/x"
has missing-model-msg "$T/err" "none.rf"
check missing-data 1 "$R" certify "$T/m.rf" --data "$T/none.csv" --out "$T/x"
has missing-data-msg "$T/err" "none.csv"
printf 'a,b\n1,2\n3,4\n' > "$T/two.csv"
check wrong-dim 1 "$R" certify "$T/m.rf" --data "$T/two.csv" --out "$T/x"
has wrong-dim-msg "$T/err" "two.csv has 2 columns"
{ printf 'y\n'; for i in $(seq 1 199); do echo 0; done; echo 5; } > "$T/bad-y.csv"
check bad-label 1 "$R" certify "$T/c.rf" --data "$T/ctest.csv" --labels "$T/bad-y.csv" --out "$T/x" --quick --quiet
has bad-label-msg "$T/err" "label 5"
[ -e "$T/x/certificate.json" ] && { fail=$((fail+1)); echo "FAIL: a certificate was written after an error"; } || pass=$((pass+1))

# ---- a density model with references, no RAPL (estimated, 3 W per core) ----
check density 0 env RF_PERF_POWER_ROOT=/nonexistent "$R" certify "$T/m.rf" --data "$T/test.csv" --train "$T/train.csv" --out "$T/cd" \
  --quick --quiet --rapl-root "$T/no-rapl" --watts-per-core 3
has density-summary "$T/out" "compound"
py density-schema "$T/cd/certificate.json" "$VALIDATE"
py density-content "$T/cd/certificate.json" '
m = CERT["metrics"]
assert CERT["schema"] == "renflow-certificate/1"
assert [r["name"] for r in CERT["references"]] == ["gaussian", "gmm", "kde"], CERT["references"]
for r in CERT["references"]: assert "metrics" in r, r.get("error")
for k in ("nll", "perplexity_per_dim", "latency_sample", "energy_log_density"):
    assert set(m[k]["references"]) == {"gaussian", "gmm", "kde"}, k
    assert m[k]["method"]
assert m["perplexity_per_dim"]["rating"] in "ABCDE" and m["perplexity_per_dim"]["rated"]
assert CERT["rating"]["references"]["gaussian"]["compound_rating"] == "C"
e = CERT["energy"]
assert e["method"] == "estimated-cpu-time" and e["measured"] is False and e["watts_per_core"] == 3, e
assert "estimated" in e["source"] and "3 W per core" in e["source"], e["source"]
el = m["energy_log_density"]
assert el["estimated"] is True and abs(el["joules"] - 3 * el["cpu_s"]) < 1e-9 * max(1, el["joules"]), el
g = CERT["guarantees"]
assert g["pass"] is True and g["complete"] is True, [c for c in g["checks"] if c["status"] != "pass"]
assert {c["id"] for c in g["checks"]} == {"invertibility_test", "invertibility_samples", "invertibility_box", "finite_log_density", "logdet_agreement", "lipschitz_condition"}
assert len(g["lipschitz"]["blocks"]) == 1 + CERT["model"]["n_layers"]
assert len(CERT["data"]["test"]["file"]["sha256"]) == 64
'
# the SHA-256 in the certificate is the file's
sha=$(sha256sum "$T/m.rf" | cut -d" " -f1)
has model-sha "$T/cd/certificate.json" "$sha"
sha=$(sha256sum "$T/test.csv" | cut -d" " -f1)
has data-sha "$T/cd/certificate.json" "$sha"
# atomic writes: the certificate and its label, no temporary files left
got=$(ls -A "$T/cd" | tr '\n' ' ')
[ "$got" = "certificate.json label.pdf label.png label.svg " ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL atomic: $got"; }

# ---- energy through a (fake) RAPL powercap tree: measured, and said so ----
mkdir -p "$T/rapl/intel-rapl:0"
echo 123456789 > "$T/rapl/intel-rapl:0/energy_uj"
echo 262143328850 > "$T/rapl/intel-rapl:0/max_energy_range_uj"
check rapl 0 "$R" certify "$T/m.rf" --data "$T/test.csv" --out "$T/cr" --quick --quiet --rapl-root "$T/rapl" --json
py rapl-json-stdout "$T/out" 'assert CERT["schema"] == "renflow-certificate/1"'
py rapl-method "$T/cr/certificate.json" '
e = CERT["energy"]
assert e["method"] == "rapl-powercap" and e["measured"] is True, e
assert "intel-rapl:0" in e["source"]
assert CERT["metrics"]["energy_log_density"]["estimated"] is False
# the fake counter does not move: 0 J measured, not an estimate in disguise
assert CERT["metrics"]["energy_log_density"]["joules"] == 0
'
py rapl-schema "$T/cr/certificate.json" "$VALIDATE"
py no-references "$T/cr/certificate.json" '
assert CERT["references"] == [] and CERT["data"]["train"] is None
assert CERT["rating"]["reference_available"] is False
assert CERT["metrics"]["perplexity_per_dim"]["rating"] is None
assert "train" in CERT["metrics"]["perplexity_per_dim"]["unrated_reason"]
'

# ---- a classifier with class-conditional references ----
check classifier 0 "$R" certify "$T/c.rf" --data "$T/ctest.csv" --labels "$T/ctest-y.csv" --train "$T/ctrain.csv" \
  --train-labels "$T/ctrain-y.csv" --out "$T/cc" --quick --quiet
py classifier-schema "$T/cc/certificate.json" "$VALIDATE"
py classifier-content "$T/cc/certificate.json" '
m = CERT["metrics"]
for k in ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "ece"): assert k in m, k
assert m["nll"]["conditional_on_label"] is True
assert 0 <= m["ece"]["value"] <= 1
r = CERT["references"][0]
assert r["description"]["class_conditional"] is True and r["description"]["n_classes"] == 2
assert r["metrics"]["accuracy"]["value"] > 0.9, r["metrics"]["accuracy"]["value"]
assert m["accuracy"]["rating"] in "ABCDE"
'
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
