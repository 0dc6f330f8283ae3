#!/usr/bin/env bash
# renflow search / renflow study: exit codes, the study file (resume without duplicates, kill -9
# loses no completed trial), figures and JSON, bad spaces, the morph strategy, classification.
set -u
R=${RF_CLI:?RF_CLI must point at the renflow binary}
T=$(mktemp -d)
BG=
trap '[ -n "$BG" ] && kill -9 "$BG" 2>/dev/null; rm -rf "$T"' EXIT
pass=0; fail=0
check() { # name, expected exit code, command...
  local name=$1 want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local got=$?
  if [ "$got" = "$want" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $name: exit $got, want $want"; tail -20 "$T/err"; fi
}
has() { # name, file, pattern
  if grep -q -- "$3" "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: '$3' not in $2"; head -c 2000 "$2"; fi
}
ok() { # name, python expression over j (the JSON in file $2)
  if python3 - "$2" "$3" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
  then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: $3"; head -c 3000 "$2"; echo; fi
}
is_png() { if [ "$(head -c 8 "$2" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && [ "$(stat -c %s "$2")" -gt 2000 ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: $2 is not a PNG"; fi; }
is_svg() { if grep -q "<svg" "$2" 2>/dev/null && grep -q "</svg>" "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: $2 is not an SVG"; fi; }

S="$R search --tiny --epochs 2 --quiet"

# ---- usage errors (2) and help (0)
check help 0 "$R" search --help
has help-text "$T/out" "--strategy"
check study-help 0 "$R" study --help
check trials-zero 2 $S --trials 0 --study "$T/u.db"
check trials-word 2 $S --trials many --study "$T/u.db"
check bad-strategy 2 $S --strategy nope --study "$T/u.db"
check darts-bad-flow 2 $S --strategy darts --supernet-flow maf --study "$T/u.db"
has darts-bad-flow-msg "$T/err" "supernet-flow"
check bad-objective 2 $S --objective loss --study "$T/u.db"
has bad-objective-msg "$T/err" "loss"
check f1-density 2 $S --objective f1 --study "$T/u.db"
check bad-task 2 $S --task regress --study "$T/u.db"
check unknown-option 2 $S --frobnicate
check builtin-and-data 2 $S --builtin moons --data "$T/x.csv"
check study-nosub 2 "$R" study
check study-badsub 2 "$R" study frob "$T/u.db"
check study-nofile-arg 2 "$R" study show
[ -e "$T/u.db" ] && { fail=$((fail+1)); echo "FAIL usage errors created the study file"; } || pass=$((pass+1))
check hyperband-1epoch 2 $S --epochs 1 --strategy hyperband --trials 2 --study "$T/u.db"
has hyperband-1epoch-msg "$T/err" "epochs"

# ---- missing / bad files (1)
check study-missing 1 "$R" study show "$T/none.db"
has study-missing-msg "$T/err" "none.db"
echo "not a database" > "$T/junk.db"
check study-junk 1 "$R" study show "$T/junk.db"
cat > "$T/space-unknown.json" <<'EOF'
{"parameters": [{"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": true},
                {"name": "frobnicate", "type": "int", "low": 1, "high": 3}]}
EOF
check space-unknown 1 $S --trials 2 --space "$T/space-unknown.json" --study "$T/b1.db" --out "$T/b1"
has space-unknown-file "$T/err" "space-unknown.json"
has space-unknown-param "$T/err" "frobnicate"
cat > "$T/space-range.json" <<'EOF'
{"parameters": [{"name": "lr", "type": "float", "low": 1e-2, "high": 1e-4}]}
EOF
check space-range 1 $S --trials 2 --space "$T/space-range.json" --study "$T/b2.db" --out "$T/b2"
has space-range-file "$T/err" "space-range.json"
has space-range-param "$T/err" "lr"
cat > "$T/space-choice.json" <<'EOF'
{"parameters": [{"name": "flow", "type": "categorical", "choices": ["nsf", "nope"]}]}
EOF
check space-choice 1 $S --trials 2 --space "$T/space-choice.json" --study "$T/b3.db" --out "$T/b3"
has space-choice-msg "$T/err" "space-choice.json: parameter 'flow'"
has space-choice-value "$T/err" "nope"
printf '{"parameters": [' > "$T/space-trunc.json"
check space-truncated 1 $S --trials 2 --space "$T/space-trunc.json" --study "$T/b4.db" --out "$T/b4"
has space-truncated-msg "$T/err" "space-trunc.json"
[ -e "$T/b1.db" ] || [ -e "$T/b2.db" ] || [ -e "$T/b3.db" ] && { fail=$((fail+1)); echo "FAIL a bad space created a study"; } || pass=$((pass+1))

# ---- a search, then resume: more trials, no duplicates, nothing lost
check search 0 $S --trials 4 --study "$T/s.db" --out "$T/o" --json
ok search-json "$T/out" "j['best']['values']['val_nll'] < 10 and j['counts']['complete'] + j['counts']['failed'] == 4 and j['default']['trial'] == 0"
ok search-test "$T/out" "'best' in j['test'] and j['test']['best']['rows'] == 200"
cp "$T/out" "$T/search1.json"
[ -s "$T/o/best.rf" ] && [ -s "$T/o/trials/trial-0.rf" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL search files"; ls -R "$T/o"; }
check best-model 0 "$R" info "$T/o/best.rf" --json
ok best-meta "$T/out" "j['meta']['search']['trial'] == json.load(open('$T/search1.json'))['best']['trial']"
check show 0 "$R" study show "$T/s.db"
has show-table "$T/out" "val_nll"
check show-json 0 "$R" study show "$T/s.db" --json
cp "$T/out" "$T/show1.json"
ok show-4 "$T/show1.json" "sorted(t['number'] for t in j['trials']) == [0, 1, 2, 3]"
check resume 0 $S --trials 7 --study "$T/s.db" --out "$T/o"
check show-json2 0 "$R" study show "$T/s.db" --json
cp "$T/out" "$T/show2.json"
ok resume-7 "$T/show2.json" "sorted(t['number'] for t in j['trials']) == list(range(7))"
ok resume-kept "$T/show2.json" "all(any(u['number'] == t['number'] and u['status'] == t['status'] and u.get('values') == t.get('values') for u in j['trials']) for t in json.load(open('$T/show1.json'))['trials'])"
check resume-done 0 $S --trials 7 --study "$T/s.db" --out "$T/o" --json
ok resume-nothing "$T/out" "j['trials_run'] == 0"
check other-data 1 "$R" search --tiny --builtin moons --epochs 2 --quiet --trials 8 --study "$T/s.db" --out "$T/o"
has other-data-msg "$T/err" "other data"
check other-objective 1 $S --trials 8 --objective nll,time --study "$T/s.db" --out "$T/o"
has other-objective-msg "$T/err" "objectives"

# ---- figures
check importance 0 "$R" study importance "$T/s.db" --out "$T/imp.svg"
has importance-table "$T/out" "share"
is_svg importance-svg "$T/imp.svg"
check importance-png 0 "$R" study importance "$T/s.db" --out "$T/imp.png" --json
is_png importance-png-file "$T/imp.png"
ok importance-json "$T/out" "len(j['main']) == 14 and abs(sum(m['mean'] for m in j['main']) + sum(p['mean'] for p in j['pairs']) - 1) < 0.35"
check importance-badobj 2 "$R" study importance "$T/s.db" --objective 5
check pareto-single 1 "$R" study pareto "$T/s.db" --out "$T/p.png"
has pareto-single-msg "$T/err" "one objective"
check report 0 "$R" study report "$T/s.db" --out "$T/rep" --model "$T/o/best.rf"
for f in history importance architecture; do is_svg "report-$f-svg" "$T/rep/$f.svg"; is_png "report-$f-png" "$T/rep/$f.png"; done
ok report-json "$T/rep/report.json" "j['best']['trial'] >= 0 and j['counts']['total'] == 7 and len(j['importance']['main']) == 14 and j['architecture']['n_params'] > 0"
check report-noout 2 "$R" study report "$T/s.db"
check search-report 0 test -s "$T/o/report/history.png"

# ---- two objectives: Pareto front
check multi 0 $S --trials 5 --objective nll,params --study "$T/m.db" --out "$T/mo" --json
ok multi-json "$T/out" "j['objectives'] == ['val_nll', 'n_params']"
check pareto 0 "$R" study pareto "$T/m.db" --out "$T/p.png" --json
is_png pareto-png "$T/p.png"
ok pareto-front "$T/out" "len(j['front']) >= 1 and all('n_params' in t for t in j['front'])"
is_png search-pareto "$T/mo/report/pareto.png"

# ---- multi-fidelity: Hyperband and BOHB with the epochs as the budget (rungs 1 and 3)
for st in hyperband bohb; do
  check "$st" 0 "$R" search --tiny --epochs 3 --quiet --trials 8 --strategy $st --study "$T/$st.db" --out "$T/$st" --json
  ok "$st-best" "$T/out" "j['best']['trial'] >= 0 and j['strategy'] == '$st'"
  check "$st-show" 0 "$R" study show "$T/$st.db" --json
  ok "$st-budgets" "$T/out" "len(j['trials']) == 8 and {t['budget'] for t in j['trials']} == {1, 3} and j['trials'][0]['budget'] == 3"
done

# ---- kill -9 during a search, then resume: no completed trial lost or counted twice
"$R" search --tiny --epochs 25 --trials 60 --quiet --study "$T/k.db" --out "$T/ko" >/dev/null 2>"$T/kerr" &
BG=$!
for i in $(seq 1 300); do
  n=$(python3 -c "import sqlite3; c=sqlite3.connect('file:$T/k.db?mode=ro', uri=True); print(c.execute(\"select count(*) from trials where status='complete'\").fetchone()[0])" 2>/dev/null || echo 0)
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.1
done
kill -9 $BG; wait $BG 2>/dev/null; BG=
check killed-show 0 "$R" study show "$T/k.db" --json
cp "$T/out" "$T/kill1.json"
ok killed-some "$T/kill1.json" "sum(t['status'] == 'complete' for t in j['trials']) >= 3"
before=$(python3 -c "import json; j=json.load(open('$T/kill1.json')); print(j['counts']['total'])")
check kill-resume 0 "$R" search --tiny --epochs 25 --trials $((before + 2)) --quiet --study "$T/k.db" --out "$T/ko"
check kill-show 0 "$R" study show "$T/k.db" --json
cp "$T/out" "$T/kill2.json"
ok kill-nothing-lost "$T/kill2.json" "all(any(u['number'] == t['number'] and u['status'] == 'complete' and u['values'] == t['values'] for u in j['trials']) for t in json.load(open('$T/kill1.json'))['trials'] if t['status'] == 'complete')"
ok kill-unique "$T/kill2.json" "len(set(t['number'] for t in j['trials'])) == len(j['trials']) and j['counts']['running'] == 0"
ok kill-lost-requeued "$T/kill2.json" "all(any(u.get('requeued_from') == t['number'] for u in j['trials']) for t in j['trials'] if t.get('lost'))"
ok kill-more "$T/kill2.json" "sum(not t.get('lost') for t in j['trials']) >= $before and sum(t['status'] == 'complete' for t in j['trials']) > sum(t['status'] == 'complete' for t in json.load(open('$T/kill1.json'))['trials'])"
[ -s "$T/ko/best.rf" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL kill-best"; }

# ---- two processes on one study: every trial once, the total shared
"$R" search --tiny --epochs 4 --quiet --trials 2 --study "$T/two.db" --out "$T/two" >/dev/null 2>&1
"$R" search --tiny --epochs 4 --quiet --trials 12 --study "$T/two.db" --out "$T/two" >/dev/null 2>"$T/two1" & P1=$!
"$R" search --tiny --epochs 4 --quiet --trials 12 --study "$T/two.db" --out "$T/two" >/dev/null 2>"$T/two2" & P2=$!
wait $P1; r1=$?; wait $P2; r2=$?
[ $r1 = 0 ] && [ $r2 = 0 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL two-processes: exit $r1 $r2"; cat "$T/two1" "$T/two2"; }
check two-show 0 "$R" study show "$T/two.db" --json
ok two-shared "$T/out" "sorted(t['number'] for t in j['trials']) == list(range(12)) and j['counts']['complete'] + j['counts']['failed'] == 12"

# ---- a long data path: the study's name keeps the data fingerprint, so it resumes
L="$T/$(printf 'd%.0s' $(seq 1 150))"; mkdir -p "$L"
awk 'BEGIN{srand(9); print "a,b"; for(i=0;i<300;i++) printf "%f,%f\n", rand(), rand()*rand()}' > "$L/x.csv"
check long-path 0 "$R" search --data "$L/x.csv" --epochs 1 --quiet --trials 2 --study "$T/long.db" --out "$T/long"
check long-path-resume 0 "$R" search --data "$L/x.csv" --epochs 1 --quiet --trials 3 --study "$T/long.db" --out "$T/long"

# ---- morph: hill climbing by network morphisms, every child a trial; resume
check morph 0 "$R" search --tiny --epochs 2 --quiet --strategy morph --trials 6 --children 2 --study "$T/mm.db" --out "$T/mmo" --json
ok morph-json "$T/out" "j['strategy'] == 'morph' and j['counts']['complete'] + j['counts']['failed'] == 6 and j['best']['config']['params'] > 0"
check morph-resume 0 "$R" search --tiny --epochs 2 --quiet --trials 9 --children 2 --study "$T/mm.db" --out "$T/mmo" --json
ok morph-resume-json "$T/out" "j['strategy'] == 'morph' and j['counts']['complete'] + j['counts']['failed'] == 9"
is_png morph-arch "$T/mmo/report/architecture.png"

# ---- classification: built-in simulated EEG (subject-wise), and a CSV with labels and subjects
check classify 0 "$R" search --tiny --builtin eeg --epochs 2 --quiet --trials 3 --objective f1 --study "$T/c.db" --out "$T/co" --json
ok classify-json "$T/out" "j['task']['by_subject'] and 0 <= j['best']['values']['val_macro_f1'] <= 1 and 0 <= j['test']['best']['macro_f1'] <= 1"
awk 'BEGIN{srand(5); print "a,b,c"; for(i=0;i<240;i++){y=i%2; printf "%f,%f,%f\n", rand()+y, rand()-y, rand()}}' > "$T/x.csv"
awk 'BEGIN{print "y"; for(i=0;i<240;i++) print i%2}' > "$T/y.csv"
awk 'BEGIN{print "s"; for(i=0;i<240;i++) print int(i/24)}' > "$T/s.csv"
cat > "$T/space.json" <<'EOF'
{"parameters": [{"name": "lr", "type": "float", "low": 1e-3, "high": 1e-2, "log": true},
                {"name": "flow", "type": "categorical", "choices": ["realnvp", "nsf"]},
                {"name": "bins", "type": "int", "low": 4, "high": 8, "condition": {"parent": "flow", "values": ["nsf"]}},
                {"name": "blocks", "type": "int", "low": 1, "high": 3}]}
EOF
check data-classify 0 "$R" search --data "$T/x.csv" --labels "$T/y.csv" --subjects "$T/s.csv" --task classify --space "$T/space.json" --epochs 2 --quiet --trials 3 --objective f1,time --study "$T/d.db" --out "$T/do" --json
ok data-json "$T/out" "j['task']['by_subject'] and j['task']['test_rows'] == 48 and j['objectives'] == ['val_macro_f1', 'train_seconds']"
check data-nolabels 1 "$R" search --data "$T/x.csv" --task classify --quiet --trials 2 --study "$T/d2.db" --out "$T/do2"
has data-nolabels-msg "$T/err" "labels"
check data-missing 1 "$R" search --data "$T/none.npy" --quiet --trials 2 --study "$T/d3.db" --out "$T/do3"
has data-missing-msg "$T/err" "none.npy"

# ---- rl (LSTM controller + REINFORCE) and evolution (aging evolution); resume keeps the strategy
check rl 0 $S --strategy rl --trials 12 --reward-a 4 --reward-b -12 --study "$T/rl.db" --out "$T/rlo" --json
ok rl-json "$T/out" "j['strategy'] == 'rl' and j['counts']['complete'] + j['counts']['failed'] == 12"
check rl-resume 0 $S --trials 14 --reward-a 4 --reward-b -12 --study "$T/rl.db" --out "$T/rlo" --json
ok rl-resume-json "$T/out" "j['strategy'] == 'rl' and j['trials_run'] == 2 and j['counts']['complete'] + j['counts']['failed'] == 14"
check rl-bad-a 2 $S --strategy rl --reward-a 0 --study "$T/u.db"
check rl-opt-other 2 $S --strategy tpe --reward-a 2 --study "$T/u.db"
has rl-opt-other-msg "$T/err" "strategy rl"
check evolution 0 $S --strategy evolution --population 4 --sample-size 2 --trials 10 --study "$T/ev.db" --out "$T/evo" --json
ok evolution-json "$T/out" "j['strategy'] == 'evolution' and j['counts']['complete'] + j['counts']['failed'] == 10"
check evolution-bad-s 2 $S --strategy evolution --population 3 --sample-size 4 --study "$T/u.db"
has evolution-bad-s-msg "$T/err" "sample-size"

# ---- darts and enas: each trial is a supernet search, discretised and retrained; resume adds one
DS=(--strategy darts --search-epochs 2 --supernet-blocks 2 --candidates zero,relu-1x16,tanh-1x16)
check darts 0 $S "${DS[@]}" --trials 1 --study "$T/da.db" --out "$T/dao" --json
ok darts-json "$T/out" "j['strategy'] == 'darts' and j['counts']['complete'] == 1 and j['best']['config']['op-1'] in ('zero', 'relu-1x16', 'tanh-1x16')"
[ -s "$T/dao/best.rf" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL darts: no best.rf"; }
check darts-resume 0 $S "${DS[@]}" --trials 2 --study "$T/da.db" --out "$T/dao" --json
ok darts-resume-json "$T/out" "j['trials_run'] == 1 and j['counts']['complete'] == 2"
check enas 0 $S --strategy enas --search-epochs 2 --supernet-blocks 2 --candidates zero,relu-1x16,tanh-1x16 --trials 1 --study "$T/en.db" --out "$T/eno" --json
ok enas-json "$T/out" "j['strategy'] == 'enas' and j['counts']['complete'] == 1"
check darts-bad-cand 2 $S --strategy darts --candidates relu-1,swish-2 --study "$T/u.db"
has darts-bad-cand-msg "$T/err" "swish"
check darts-opt-other 2 $S --strategy tpe --candidates relu-1 --study "$T/u.db"
check darts-space 2 $S --strategy darts --space "$T/none.json" --study "$T/u.db"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
