#!/usr/bin/env bash
# ctest guide.resume: a run stopped by SIGTERM and resumed in a new process, inside one budget.
#   1. run 1 (wall=2s) gets SIGTERM once training has run ~0.5 s: exit status 143, a clean stop
#      "stop (signal)", state.json and weights.bin written;
#   2. one second later run 2 resumes: it starts from run 1's wall used (to the millisecond) and
#      steps, reports at least that second as downtime (not charged), trains on and stops by the
#      budget's forecast, exit 0, with the wall used in both processes at or under 2 s;
#   3. run 3 resumes the finished run: its stop holds (no step, no evaluation) and it stays inside the limit.
# TIMED=0 (a sanitizer build, whose steps are several times slower and less even): run 2 may stop
# at the limit rather than by the forecast, and the wall used is not held to the 2 s.
#   check.sh EXE WORK [TIMED]
set -u
exe=$1 work=$2 timed=${3:-1}
fail() { echo "guide.resume: $*"; for f in "$work"/run*.out; do echo "--- $f ---"; cat "$f"; done; exit 1; }
num() { sed -n "s/$1/\1/p" "$2" | tail -1; }  # the last capture of a sed pattern in a file
rm -rf "$work"; mkdir -p "$work"

"$exe" "$work/state" wall=2s >"$work/run1.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "^training" "$work/run1.out" && break; sleep 0.05; done
grep -q "^SKIPPED: " "$work/run1.out" && { cat "$work/run1.out"; exit 0; }
sleep 0.5
kill -TERM "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 143 ] || fail "run 1: exit status $rc after SIGTERM, expected 143 (128 + 15)"
grep -q "^stopped: stop (signal): SIGTERM received" "$work/run1.out" || fail "run 1: no 'stopped: stop (signal)'"
[ -s "$work/state/state.json" ] && [ -s "$work/state/weights.bin" ] || fail "run 1: state.json or weights.bin missing"
used1=$(num '^wall used: \([0-9.]*\) s in all.*' "$work/run1.out")
steps1=$(num '.* not charged; \([0-9]*\) steps$' "$work/run1.out")
[ -n "$used1" ] && [ -n "$steps1" ] || fail "run 1: no 'wall used' line"

sleep 1
"$exe" "$work/state" wall=2s >"$work/run2.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || fail "run 2: exit status $rc, expected 0"
line=$(grep "^resumed from " "$work/run2.out") || fail "run 2: no 'resumed from' line"
before=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) s of wall used before, \([0-9.]*\) s between.* \([0-9]*\) steps done$/\1 \2 \3/p')
read -r before downtime steps_before <<<"$before"
[ "$before" = "$used1" ] || fail "run 2 resumed from $before s of wall used, run 1 had used $used1 s"
[ "$steps_before" = "$steps1" ] || fail "run 2 resumed after $steps_before steps, run 1 had done $steps1"
awk -v d="$downtime" 'BEGIN { exit !(d >= 1.0) }' || fail "run 2: downtime $downtime s, expected at least the 1 s between the runs"
if [ "$timed" = 1 ]; then
  grep -q "^stopped: stop (forecast): wall: " "$work/run2.out" || fail "run 2: not stopped by the wall budget's forecast"
else
  grep -Eq "^stopped: stop \((forecast|budget_exhausted)\): wall: " "$work/run2.out" || fail "run 2: not stopped by the wall budget"
fi
limit=2.0; [ "$timed" = 1 ] || limit=1e9
used2=$(num '^wall used: \([0-9.]*\) s in all.*' "$work/run2.out")
steps2=$(num '.* not charged; \([0-9]*\) steps$' "$work/run2.out")
awk -v u="$used2" -v a="$used1" -v l="$limit" 'BEGIN { exit !(u <= l && u > a + 0.5) }' ||
  fail "run 2: $used2 s of wall used in both runs: expected more than run 1's $used1 s + 0.5 and at most 2 s"
[ "$steps2" -gt "$steps1" ] || fail "run 2: $steps2 steps in all, not more than run 1's $steps1"

"$exe" "$work/state" wall=2s >"$work/run3.out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || fail "run 3: exit status $rc, expected 0"
grep -q "^epoch " "$work/run3.out" && fail "run 3: the finished run evaluated again"
used3=$(num '^wall used: \([0-9.]*\) s in all.*' "$work/run3.out")
steps3=$(num '.* not charged; \([0-9]*\) steps$' "$work/run3.out")
awk -v u="$used3" -v l="$limit" 'BEGIN { exit !(u <= l) }' || fail "run 3: $used3 s of wall used, past the 2 s limit"
[ "$steps3" = "$steps2" ] || fail "run 3: $steps3 steps in all, run 2 had finished at $steps2: the budget's stop must hold"
echo "guide.resume: ok (run 1 stopped by SIGTERM at $used1 s; run 2 resumed after $downtime s, ended at $used2 s of 2 s)"
