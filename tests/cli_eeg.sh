#!/usr/bin/env bash
# CLI path of the EEG subsystem on real eegmat recordings: eeg prepare -> train --task classify
# (tsflow chosen for the window shape) -> eval --json with classification metrics; --like gives
# identical windows; a missing channel is a clear error with exit code 1.
set -u
R=${RF_CLI:?RF_CLI must point to the renflow binary}
D=${RF_SHARED_DATA:-../shared/data}
if [ ! -d "$D/eegmat" ]; then
  if [ "${CI:-}" = "true" ]; then echo "FAIL: $D/eegmat missing in CI"; exit 1; fi
  echo "skip: $D/eegmat not found"; exit 0
fi
D=$(cd "$D" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
printf 'file,subject,label\n%s/eegmat/Subject00_1.edf,S00,rest\n%s/eegmat/Subject00_2.edf,S00,task\n%s/eegmat/Subject01_1.edf,S01,rest\n%s/eegmat/Subject01_2.edf,S01,task\n' "$D" "$D" "$D" "$D" > "$T/list.csv"
"$R" eeg prepare --recordings "$T/list.csv" --out "$T/prep" --rate 64 --window 2 --channels O1,O2,Fz,Cz --quiet --json > "$T/prep.json"
check "prepare exits 0" '[ $? -eq 0 ]'
check "prepare JSON counts windows" 'grep -q "\"windows\":" "$T/prep.json"'
check "manifest lists the 4 channels" 'grep -q "\"EEG O1\"" "$T/prep/manifest.json" || grep -q "\"O1\"" "$T/prep/manifest.json"'
"$R" eeg prepare --like "$T/prep/manifest.json" --recordings "$T/list.csv" --out "$T/prep2" --quiet > /dev/null
check "--like reproduces the windows bit for bit" 'cmp -s "$T/prep/windows.npy" "$T/prep2/windows.npy"'
"$R" eeg prepare --like "$T/prep/manifest.json" --rate 100 --recordings "$T/list.csv" --out "$T/prep3" --quiet > /dev/null 2>&1
check "--like with settings is a usage error (2)" '[ $? -eq 2 ]'
"$R" train --task classify --data "$T/prep" --epochs 2 --batch 32 --out "$T/m.rf" --quiet --json > "$T/train.json"
check "train on the directory exits 0" '[ $? -eq 0 ]'
check "a tsflow was chosen for the window shape" 'grep -q "\"flow\":[[:space:]]*\"tsflow\"" "$T/train.json"'
# density training on a labelled directory with a separate validation set (labels unused; this
# crashed before: the labels were copied into a NULL output)
"$R" train --data "$T/prep" --val "$T/prep2" --epochs 1 --batch 32 --out "$T/d.rf" --quiet > /dev/null 2>&1
check "density train with --val on a labelled directory exits 0" '[ $? -eq 0 ]'
"$R" eval "$T/m.rf" --data "$T/prep" --json > "$T/eval.json"
check "eval exits 0" '[ $? -eq 0 ]'
for k in accuracy balanced_accuracy macro_f1 kappa confusion nll_nats; do
  check "eval JSON has $k" "grep -q '\"$k\"' '$T/eval.json'"
done
# subject-adaptive latent normalisation: fitted after training, or in the training loop
"$R" train --task classify --data "$T/prep" --epochs 1 --batch 32 --subject-adapt fit --out "$T/a.rf" --quiet > /dev/null
check "train --subject-adapt fit exits 0" '[ $? -eq 0 ]'
check "the model file records the adaptation" 'grep -aq "\"subject_adapt\"" "$T/a.rf"'
"$R" eval "$T/a.rf" --data "$T/prep" --json > "$T/aeval.json"
check "eval of the adapted model on the directory exits 0" '[ $? -eq 0 ]'
"$R" eval "$T/a.rf" --data "$T/prep/windows.npy" --labels "$T/prep/labels.npy" > /dev/null 2> "$T/aerr.txt"
check "eval of an adapted model without subject ids exits 1" '[ $? -eq 1 ]'
check "the error asks for subject ids" 'grep -q "subject ids" "$T/aerr.txt"'
"$R" eval "$T/a.rf" --data "$T/prep/windows.npy" --labels "$T/prep/labels.npy" --subjects "$T/prep/subjects.npy" --json > "$T/aeval2.json"
check "eval with --subjects gives the directory's result" '[ "$(grep -o "\"balanced_accuracy\":[^,]*" "$T/aeval.json")" = "$(grep -o "\"balanced_accuracy\":[^,]*" "$T/aeval2.json")" ] && grep -q balanced_accuracy "$T/aeval.json"'
"$R" train --task classify --data "$T/prep" --epochs 1 --batch 32 --subject-adapt train --out "$T/t.rf" --quiet > /dev/null
check "train --subject-adapt train exits 0" '[ $? -eq 0 ]'
"$R" eval "$T/t.rf" --data "$T/prep" --json > /dev/null
check "eval of the in-loop adapted model exits 0" '[ $? -eq 0 ]'
"$R" train --data "$T/prep" --epochs 1 --subject-adapt fit --out "$T/x.rf" --quiet 2> /dev/null
check "--subject-adapt on a density model is a usage error (2)" '[ $? -eq 2 ]'
"$R" train --task classify --data "$T/prep" --epochs 1 --subject-adapt sometimes --out "$T/x.rf" --quiet 2> /dev/null
check "an unknown --subject-adapt mode is a usage error (2)" '[ $? -eq 2 ]'
# cross-validation with an ensemble of flows per fold (4 subjects, 2 folds, band-power features)
for s in 02 03; do printf '%s/eegmat/Subject%s_1.edf,S%s,rest\n%s/eegmat/Subject%s_2.edf,S%s,task\n' "$D" $s $s "$D" $s $s; done > "$T/more.csv"
cat "$T/list.csv" "$T/more.csv" > "$T/list4.csv"
"$R" eeg prepare --like "$T/prep/manifest.json" --recordings "$T/list4.csv" --out "$T/prep4" --quiet > /dev/null
check "prepare 4 subjects exits 0" '[ $? -eq 0 ]'
"$R" cv --data "$T/prep4" --features bandpower --flow glow --blocks 2 --hidden 8 --epochs 2 --batch 32 --folds 2 --ensemble 2 --out "$T/cv" --quiet --json > "$T/cv.json"
check "cv --ensemble 2 exits 0" '[ $? -eq 0 ]'
check "cv JSON records the ensemble" 'grep -q "\"ensemble\":[[:space:]]*2" "$T/cv.json" && grep -q "\"ensemble_members\":[[:space:]]*2" "$T/cv.json"'
check "every fold keeps both members" '[ -s "$T/cv-fold0.rf" ] && [ -s "$T/cv-fold0-m1.rf" ] && [ -s "$T/cv-fold1.rf" ] && [ -s "$T/cv-fold1-m1.rf" ] && ! cmp -s "$T/cv-fold0.rf" "$T/cv-fold0-m1.rf"'
"$R" cv --data "$T/prep4" --view "$T/prep4/windows.npy" --features bandpower --flow glow --blocks 2 --hidden 8 --epochs 1 --batch 32 --folds 2 --out "$T/cvv" --quiet --json > "$T/cvv.json"
check "cv --view exits 0" '[ $? -eq 0 ]'
check "members alternate between the data and the view" 'grep -aq "\"cv_view\":[[:space:]]*1" "$T/cvv-fold0-m1.rf" && grep -aq "\"cv_view\":[[:space:]]*0" "$T/cvv-fold0.rf" && grep -q "\"views\"" "$T/cvv.json"'
"$R" cv --data "$T/prep4" --view "$T/prep/windows.npy" --features bandpower --epochs 1 --folds 2 --quiet 2> "$T/verr.txt"
check "a view with other rows exits 1 and names the file" '[ $? -eq 1 ] && grep -q "prep/windows.npy" "$T/verr.txt"'
"$R" cv --data "$T/prep4" --features bandpower --epochs 1 --folds 2 --out "$T/no/such/dir/m" --quiet 2> "$T/derr.txt"
check "cv --out into a missing directory exits 1 before training" '[ $? -eq 1 ] && grep -q "no/such/dir" "$T/derr.txt" && ! grep -q "fold 1" "$T/derr.txt"'
"$R" cv --data "$T/prep4" --folds 2 --ensemble 0 --quiet 2> /dev/null
check "cv --ensemble 0 is a usage error (2)" '[ $? -eq 2 ]'
"$R" train --task classify --data "$T/prep4" --ensemble 2 --out "$T/x.rf" --quiet 2> /dev/null
check "--ensemble on train is a usage error (2)" '[ $? -eq 2 ]'
# a model with temporal context (--context) on arrays: eval and explain need the recording ids;
# a 3-D windows array keeps its window shape (band power needs it)
"$R" train --task classify --data "$T/prep4" --features bandpower --context 1 --flow glow --blocks 2 --hidden 8 --epochs 1 --batch 32 --out "$T/ctx.rf" --quiet > /dev/null
check "train --context 1 exits 0" '[ $? -eq 0 ]'
"$R" eval "$T/ctx.rf" --data "$T/prep4" --json > "$T/ctx_dir.json"
"$R" eval "$T/ctx.rf" --data "$T/prep4/windows.npy" --labels "$T/prep4/labels.npy" > /dev/null 2> "$T/ctxerr.txt"
check "eval of a context model on arrays without --recordings exits 1" '[ $? -eq 1 ] && grep -q "recording ids" "$T/ctxerr.txt"'
"$R" eval "$T/ctx.rf" --data "$T/prep4/windows.npy" --labels "$T/prep4/labels.npy" --recordings "$T/prep4/recordings.npy" --json > "$T/ctx_arr.json"
check "eval with --recordings on the arrays gives the directory's result" '[ "$(grep -o "\"balanced_accuracy\":[^,]*" "$T/ctx_dir.json")" = "$(grep -o "\"balanced_accuracy\":[^,]*" "$T/ctx_arr.json")" ] && grep -q balanced_accuracy "$T/ctx_arr.json"'
"$R" explain "$T/ctx.rf" --data "$T/prep4/windows.npy" --labels "$T/prep4/labels.npy" --recordings "$T/prep4/recordings.npy" --out "$T/ctx_ex" --quiet > /dev/null
check "explain with --recordings exits 0" '[ $? -eq 0 ] && [ -s "$T/ctx_ex/explain.json" ]'
"$R" eeg prepare --recordings "$T/list.csv" --out "$T/bad" --channels O1,Xyz --quiet 2> "$T/err.txt"
check "missing channel exits 1" '[ $? -eq 1 ]'
check "error names the channel and the file" 'grep -q "Xyz" "$T/err.txt" && grep -q "Subject00_1.edf" "$T/err.txt"'
check "no half-written output directory" '[ ! -e "$T/bad" ]'
exit $fail
