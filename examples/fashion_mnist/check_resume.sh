#!/usr/bin/env bash
# ctest example.fashion_mnist.resume: a run interrupted by SIGTERM and resumed ends inside the
# same total budget, as good as a run that was never interrupted.
#   1. (with TIMED=1) the uninterrupted run: --budget wall=LIMIT, its test accuracy;
#   2. the same run with --checkpoint DIR --resume, SIGTERM a third of the way in (mid-epoch):
#      exit status 143, its reports written, DIR holding state.json and the model file it names;
#   3. the same command again: it resumes (stderr says so), exits 0, report.json says "resumed"
#      with the downtime, and (TIMED=1) the wall used in all is <= LIMIT and the test accuracy is
#      within 1 point of the uninterrupted run's.
# Sanitizer builds (TIMED=0) check the resume, not the timings: their steps and evaluations are
# several times slower and less even (a validation measured at 1.1 s in the first process took
# 1.9 s in the second), so a run may reach its limit, or find at its end that the final test
# evaluation no longer fits (it then says so instead of printing an accuracy).
#   check_resume.sh EXE DATA WORK THREADS LIMIT_S TIMED
set -u
exe=$1 data=$2 work=$3 threads=$4 limit=$5 timed=$6
if [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED: Fashion-MNIST not installed in $data (apt-get install dataset-fashion-mnist)"
  exit 0
fi
fail() { echo "example.fashion_mnist.resume: $*"; echo "--- stdout ---"; cat "$work/stdout" 2>/dev/null; echo "--- stderr ---"; tail -8 "$work/stderr" 2>/dev/null; exit 1; }
rm -rf "$work"; mkdir -p "$work"
common=(--budget "wall=${limit}s" --data "$data" --threads "$threads" --trace-events 0)

accuracy() { sed -n 's/^test accuracy: \([0-9.]*\)$/\1/p' "$1"; }
# The wall used by the whole run, from report.json (one line: no jq or python needed).
wall_used() { grep -o '"used":{"wall":[0-9.e+-]*' "$1" | head -1 | sed 's/.*://'; }

if [ "$timed" = 1 ]; then
  "$exe" "${common[@]}" --out "$work/full" >"$work/stdout" 2>"$work/stderr" || fail "the uninterrupted run failed"
  full=$(accuracy "$work/stdout")
  [ -n "$full" ] || fail "the uninterrupted run printed no test accuracy"
  cp "$work/stdout" "$work/stdout.full"
fi

# The interrupted run. Training has started once the first progress line is out.
"$exe" "${common[@]}" --out "$work/a" --checkpoint "$work/ck" --resume >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 200); do grep -q "MLP" "$work/stderr" 2>/dev/null && break; sleep 0.1; done
sleep "$(awk -v l="$limit" 'BEGIN { printf "%.1f", l / 3 }')"
kill -TERM "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 143 ] || fail "exit status $rc after SIGTERM, expected 143"
grep -q "^stopped: stop (signal): SIGTERM received" "$work/stdout" || fail "no 'stopped: stop (signal): SIGTERM received'"
[ -s "$work/ck/state.json" ] || fail "no checkpoint state.json after the stop"
steps=$(grep -o '"steps": *[0-9]*' "$work/ck/state.json" | head -1 | sed 's/.*: *//')
[ -s "$work/ck/model-$steps.bin" ] || fail "state.json names step $steps, but model-$steps.bin is missing"
[ "$(ls "$work/ck"/model-*.bin | wc -l)" -eq 1 ] || fail "older model files were left: $(ls "$work/ck")"
first_wall=$(wall_used "$work/a/report.json")
cp "$work/stdout" "$work/stdout.interrupted"

# A damaged checkpoint is refused with the file and the field named, exit status 1, and nothing
# in it is overwritten: a model file cut short, then a state document with a field gone bad.
refused() {  # DIR REGEX WHAT
  cp -r "$1" "$1.before"
  "$exe" "${common[@]}" --out "$work/refused" --checkpoint "$1" --resume >"$work/stdout" 2>"$work/stderr"
  local rc=$?
  [ "$rc" -eq 1 ] || fail "$3: exit status $rc, expected 1"
  grep -Eq -e "$2" "$work/stderr" || fail "$3: stderr does not match '$2'"
  diff -r "$1" "$1.before" >/dev/null || fail "$3: the checkpoint was changed by the refused resume"
  rm -rf "$1.before"
}
cp -r "$work/ck" "$work/cut"
model="$work/cut/model-$steps.bin"
head -c $(( $(stat -c %s "$model") / 2 )) "$model" >"$model.half" && mv "$model.half" "$model"
refused "$work/cut" "--resume: checkpoint '$model': .*(cut short|hash)" "a model file cut short"
cp -r "$work/ck" "$work/bad"
sed -i 's/"steps": [0-9]*/"steps": "many"/' "$work/bad/state.json"
refused "$work/bad" "--resume: frugal: state file '$work/bad/state.json': controller.steps: " "a bad state.json"

sleep 1  # the job is down: not charged
"$exe" "${common[@]}" --out "$work/b" --checkpoint "$work/ck" --resume >"$work/stdout" 2>"$work/stderr"
rc=$?
[ "$rc" -eq 0 ] || fail "the resumed run exited with $rc"
grep -q "resumed from $work/ck/state.json" "$work/stderr" || fail "stderr does not say the run resumed"
grep -q '"resumed":{"downtime":' "$work/b/report.json" || fail "report.json: no \"resumed\" with the downtime"
down=$(grep -o '"resumed":{"downtime":[0-9.e+-]*' "$work/b/report.json" | head -1 | sed 's/.*://')
awk -v d="$down" 'BEGIN { exit !(d >= 1) }' || fail "downtime $down s, expected >= 1 s (the sleep between the runs)"
wall=$(wall_used "$work/b/report.json")
if [ "$timed" = 1 ]; then
  awk -v w="$wall" -v l="$limit" 'BEGIN { exit !(w <= l) }' || fail "wall used $wall s in all, over the ${limit} s limit"
fi
awk -v w="$wall" -v f="$first_wall" 'BEGIN { exit !(w > f) }' || fail "wall used $wall s in all, not more than the first process's $first_wall s"
resumed=$(accuracy "$work/stdout")
if [ -z "$resumed" ]; then
  [ "$timed" = 0 ] && grep -q "^test accuracy: not measured (the final test evaluation would not fit: " "$work/stdout" ||
    fail "the resumed run printed no test accuracy"
  resumed="not measured (the final test would not fit)"
fi
if [ "$timed" = 1 ]; then
  awk -v a="$resumed" -v b="$full" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01) }' ||
    fail "test accuracy $resumed after resume, $full uninterrupted: more than 1 point apart"
  echo "example.fashion_mnist.resume: ok (interrupted at ${first_wall} s, resumed after ${down} s down; ${wall} s of ${limit} s used in all; accuracy $resumed, uninterrupted $full)"
else
  echo "example.fashion_mnist.resume: ok (interrupted at ${first_wall} s, resumed after ${down} s down; ${wall} s of ${limit} s used in all; accuracy $resumed)"
fi
