#!/usr/bin/env bash
# ctest example.fashion_mnist.signal: SIGTERM to the real main job mid-run is a clean stop.
# The job runs under wall=60s; 3 s in it gets SIGTERM. Expected: exit status 143 (128 +
# SIGTERM), the stop reason "stop (signal): SIGTERM received" on stdout, report.json,
# epochs.csv and stages.csv written whole (report.json parses, its controller section says
# stopped for "signal"), and the run well inside its wall limit. Then a second job gets SIGTERM
# twice: the second one ends it at once, killed by SIGTERM (status 143 from the shell, no
# "test accuracy" line).
#   check_signal.sh EXE DATA WORK THREADS
set -u
exe=$1 data=$2 work=$3 threads=$4
if [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED: Fashion-MNIST not installed in $data (apt-get install dataset-fashion-mnist)"
  exit 0
fi
fail() { echo "example.fashion_mnist.signal: $*"; echo "--- stdout ---"; cat "$work/stdout" 2>/dev/null; echo "--- stderr ---"; tail -5 "$work/stderr" 2>/dev/null; exit 1; }
rm -rf "$work"; mkdir -p "$work"

"$exe" --budget wall=60s --data "$data" --out "$work/out" --threads "$threads" --trace-events 0 \
  >"$work/stdout" 2>"$work/stderr" &
pid=$!
# Training has started once the first progress line is out (the data take ~0.5 s to load).
for _ in $(seq 1 100); do grep -q "MLP" "$work/stderr" 2>/dev/null && break; sleep 0.1; done
sleep 2
kill -TERM "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 143 ] || fail "exit status $rc after SIGTERM, expected 143 (128 + 15)"
grep -q "^stopped: stop (signal): SIGTERM received" "$work/stdout" || fail "no 'stopped: stop (signal): SIGTERM received'"
grep -q "^test accuracy: " "$work/stdout" || fail "no last line 'test accuracy: ...'"
for f in report.json epochs.csv stages.csv; do
  [ -s "$work/out/$f" ] || fail "$f missing or empty"
done
# The controller's section says why it stopped (report.json is one line per document: no jq or
# python needed), and the wall used is well under the limit (whole seconds before the dot).
grep -q '"stop":{"stopped":true,"reason":"signal"' "$work/out/report.json" || fail "report.json: no stop for 'signal'"
wall=$(grep -o '"used":{"wall":[0-9.e+-]*' "$work/out/report.json" | head -1 | sed 's/.*://')
[ -n "$wall" ] && [ "${wall%%.*}" -lt 30 ] 2>/dev/null || fail "report.json: wall used '$wall', expected well under 60 s"

# A second signal does not wait for the checkpoint.
"$exe" --budget wall=60s --data "$data" --out "$work/out2" --threads "$threads" --trace-events 0 \
  >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 100); do grep -q "MLP" "$work/stderr" 2>/dev/null && break; sleep 0.1; done
sleep 1
kill -TERM "$pid"; kill -TERM "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 143 ] || fail "exit status $rc after two SIGTERMs, expected 143"
echo "example.fashion_mnist.signal: ok (a SIGTERM stopped the job cleanly with its reports; a second one ends it)"
