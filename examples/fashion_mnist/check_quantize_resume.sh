#!/usr/bin/env bash
# ctest example.fashion_mnist.quantize_resume: a --quantize run interrupted after its layer was
# frozen and resumed ends exactly as the run never interrupted. Under a FLOP budget with a fixed
# number of threads the job is deterministic, so the checkpoint must carry everything the rest
# of the run depends on -- the frozen layer's int8 weights and scales among it.
#   1. the uninterrupted run: --budget FLOPS --epochs EPOCHS --quantize (layer 1 is frozen after
#      the first epoch end: under flops=1.2e11 and 3 epochs, the default, a third of the way in);
#   2. the same run with --checkpoint DIR --resume, SIGTERM once the progress notes say the
#      layer was frozen: exit status 143;
#   3. the same command again: it resumes, exits 0, and its epochs.csv (FLOPs, losses,
#      accuracies, parameters, step FLOPs) and test accuracy equal the uninterrupted run's.
#   check_quantize_resume.sh EXE DATA WORK THREADS [FLOPS EPOCHS]
set -u
exe=$1 data=$2 work=$3 threads=$4 flops=${5:-1.2e11} epochs=${6:-3}
if [ ! -e "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED: Fashion-MNIST not installed in $data (apt-get install dataset-fashion-mnist)"
  exit 0
fi
fail() { echo "example.fashion_mnist.quantize_resume: $*"; echo "--- stdout ---"; cat "$work/stdout" 2>/dev/null; echo "--- stderr ---"; tail -5 "$work/stderr" 2>/dev/null; exit 1; }
rm -rf "$work"; mkdir -p "$work"
common=(--budget "flops=$flops" --epochs "$epochs" --quantize --data "$data" --threads "$threads" --trace-events 0)
# epochs.csv without its wall-time columns (wall_s, fraction_used: the only ones that may differ).
deterministic() { cut -d, -f1,4- "$1"; }

"$exe" "${common[@]}" --out "$work/full" >"$work/stdout" 2>"$work/stderr" || fail "the uninterrupted run failed"
grep -q "froze layer(s) 1-1" "$work/stderr" || fail "the uninterrupted run froze no layer"
full=$(sed -n 's/^test accuracy: //p' "$work/stdout")
[ -n "$full" ] || fail "the uninterrupted run printed no test accuracy"

"$exe" "${common[@]}" --out "$work/a" --checkpoint "$work/ck" --resume >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 3000); do grep -q "froze layer(s)" "$work/stderr" 2>/dev/null && break; sleep 0.01; done
kill -TERM "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 143 ] || fail "exit status $rc after SIGTERM, expected 143 (the run ended before the signal?)"
grep -q "froze layer(s) 1-1" "$work/stderr" || fail "the interrupted run had frozen no layer"
stopped=$(sed -n 's/^after .*(\([0-9]*\) steps.*/\1/p' "$work/stdout")

"$exe" "${common[@]}" --out "$work/b" --checkpoint "$work/ck" --resume >"$work/stdout" 2>"$work/stderr" || fail "the resumed run failed"
grep -q "resumed from " "$work/stderr" || fail "the second run did not resume"
grep -q "^quantized: layer(s) 1-1 frozen as int8" "$work/stdout" || fail "the resumed run's layer 1 is not frozen"
resumed=$(sed -n 's/^test accuracy: //p' "$work/stdout")
[ "$resumed" = "$full" ] || fail "test accuracy $resumed after the resume, $full without the interruption"
diff <(deterministic "$work/full/epochs.csv") <(deterministic "$work/b/epochs.csv") >"$work/diff" ||
  fail "epochs.csv differs from the uninterrupted run's: $(cat "$work/diff")"
echo "example.fashion_mnist.quantize_resume: ok (interrupted at step $stopped after the freezing, resumed: test accuracy $resumed, every evaluation as uninterrupted)"
