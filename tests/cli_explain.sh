#!/usr/bin/env bash
# renflow explain from the command line: feature vectors (a CSV made here with awk, a
# class-conditional flow trained on it) and, when ../shared/data/eegmat is there, EEG windows
# (eeg prepare -> tsflow); files and JSON fields; usage errors exit 2, data/model errors exit 1.
set -u
R=${RF_CLI:?RF_CLI must point to the renflow binary}
D=${RF_SHARED_DATA:-../shared/data}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
run() { "$@" > "$T/out" 2> "$T/err"; echo $? > "$T/rc"; }
rc() { cat "$T/rc"; }

# three classes with different 8-feature profiles
awk 'BEGIN{srand(5); print "a,b,c,d,e,f,g,h"; for(i=0;i<900;i++){c=i%3; s="";
  for(j=0;j<8;j++){ u=rand()+rand()+rand()-1.5; s=s (j?",":"") sprintf("%f", 2*sin(0.7*j+2.1*c)+0.8*u) } print s}}' > "$T/x.csv"
awk 'BEGIN{print "y"; for(i=0;i<900;i++) print i%3}' > "$T/y.csv"
awk 'BEGIN{print "a,b,c"; print "1,2,3"; print "4,5,6"}' > "$T/x3.csv"
"$R" train --task classify --data "$T/x.csv" --labels "$T/y.csv" --flow realnvp --blocks 2 --hidden 16 \
  --epochs 4 --batch 64 --out "$T/m.rf" --quiet > /dev/null 2>&1
check "train a class-conditional flow" '[ -f "$T/m.rf" ]'
"$R" train --data "$T/x.csv" --flow realnvp --blocks 2 --hidden 16 --epochs 1 --out "$T/density.rf" --quiet > /dev/null 2>&1

run "$R" explain --help
check "--help exits 0" '[ $(rc) -eq 0 ] && grep -q "counterfactual" "$T/out"'
run "$R" --help
check "explain is listed" 'grep -q "explain" "$T/out"'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --labels "$T/y.csv"
check "missing --out is a usage error (2)" '[ $(rc) -eq 2 ] && grep -q -- "--out" "$T/err"'
run "$R" explain "$T/m.rf" --out "$T/e"
check "missing --data is a usage error (2)" '[ $(rc) -eq 2 ]'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --out "$T/e" --format jpg
check "bad --format is a usage error (2)" '[ $(rc) -eq 2 ] && grep -q "jpg" "$T/err"'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --out "$T/e" --cf-mode sideways
check "bad --cf-mode is a usage error (2)" '[ $(rc) -eq 2 ]'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --labels "$T/y.csv" --out "$T/e" --from 7
check "unknown class is a usage error (2)" '[ $(rc) -eq 2 ] && grep -q "unknown class" "$T/err"'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --labels "$T/y.csv" --out "$T/e" --window 5000
check "--window out of range is a usage error (2)" '[ $(rc) -eq 2 ]'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --labels "$T/y.csv" --out "$T/e" --channels Fz
check "--channels on feature vectors is a usage error (2)" '[ $(rc) -eq 2 ]'
run "$R" explain "$T/m.rf" --data "$T/x.csv" --out "$T/e" --class-names A,B
check "--class-names with the wrong count is a usage error (2)" '[ $(rc) -eq 2 ]'
run "$R" explain "$T/density.rf" --data "$T/x.csv" --out "$T/e"
check "a density model (no classes) exits 1" '[ $(rc) -eq 1 ] && grep -q "class-conditional" "$T/err"'
run "$R" explain "$T/m.rf" --data "$T/x3.csv" --out "$T/e"
check "data of another dimension exits 1" '[ $(rc) -eq 1 ] && grep -q "dimension 8" "$T/err"'
run "$R" explain "$T/m.rf" --data "$T/none.csv" --out "$T/e"
check "a missing data file exits 1" '[ $(rc) -eq 1 ] && grep -q "none.csv" "$T/err"'
check "no output directory after errors" '[ ! -e "$T/e" ]'

run "$R" explain "$T/m.rf" --data "$T/x.csv" --labels "$T/y.csv" --class-names lo,mid,hi --out "$T/e" \
  --from lo --to hi --samples 100 --top 4 --quiet --json
check "explain on features exits 0" '[ $(rc) -eq 0 ]'
for f in prototypes ood counterfactual contributions; do
  check "$f.svg is an SVG" 'grep -q "</svg>" "$T/e/$f.svg"'
done
check "no spectra for feature vectors" '[ ! -e "$T/e/spectra.svg" ]'
check "--json prints the document" 'grep -q "\"least_likely\"" "$T/out" && grep -q "\"counterfactual\"" "$T/out"'
check "explain.json names the classes" 'grep -q "\"mid\"" "$T/e/explain.json"'
check "counterfactual goes from lo to hi" 'grep -q "\"from\":[[:space:]]*\"lo\"" "$T/e/explain.json" && grep -q "\"to\":[[:space:]]*\"hi\"" "$T/e/explain.json"'
check "no temporary files left" '! ls "$T/e" | grep -q tmp'

if [ ! -d "$D/eegmat" ]; then
  if [ "${CI:-}" = "true" ]; then echo "FAIL: $D/eegmat missing in CI"; exit 1; fi
  echo "skip: $D/eegmat not found (EEG windows part)"; exit $fail
fi
D=$(cd "$D" && pwd)
printf 'file,subject,label\n%s/eegmat/Subject00_1.edf,S00,rest\n%s/eegmat/Subject00_2.edf,S00,task\n%s/eegmat/Subject01_1.edf,S01,rest\n%s/eegmat/Subject01_2.edf,S01,task\n' "$D" "$D" "$D" "$D" > "$T/list.csv"
"$R" eeg prepare --recordings "$T/list.csv" --out "$T/prep" --rate 64 --window 2 --channels O1,O2,Fz,Cz --quiet > /dev/null 2>&1
"$R" train --task classify --data "$T/prep" --epochs 2 --batch 32 --out "$T/w.rf" --quiet > /dev/null 2>&1
check "tsflow trained on prepared windows" '[ -f "$T/w.rf" ]'
run "$R" explain "$T/w.rf" --data "$T/prep" --out "$T/w" --channels O1,Fz --format png --samples 20 --max-rows 4 --top 4 --quiet
check "explain on windows exits 0" '[ $(rc) -eq 0 ]'
for f in prototypes spectra ood counterfactual contributions; do
  check "$f.png is a PNG" '[ "$(head -c 4 "$T/w/$f.png" | od -An -c | tr -d " ")" = "211PNG" ]'
done
check "band powers per class in the JSON" 'grep -q "\"alpha\"" "$T/w/explain.json" && grep -q "\"band_power\"" "$T/w/explain.json"'
check "band Shapley values in the JSON" 'grep -q "\"log_posterior_own_class\"" "$T/w/explain.json"'
run "$R" explain "$T/w.rf" --data "$T/prep" --out "$T/w2" --channels O1,Xyz
check "unknown channel is a usage error (2) naming it" '[ $(rc) -eq 2 ] && grep -q "Xyz" "$T/err"'
exit $fail
