#!/usr/bin/env bash
# The README's memory table: the main job under --budget "wall=W,peak_bytes=X" for several X
# between "resident + a batch-1 step" and "resident + the full batch", and once with no memory
# limit. One row per run: the batch the memory probe chose, the accumulation, the peaks of the
# training steps, of the evaluations and of the whole run (bytes, as the job prints them),
# whether the run stayed at or under X, the wall used and the test accuracy.
#   examples/fashion_mnist/memory_table.sh BINARY [WALL] [X...]
# X in KiB (whole bytes); the default set suits the default MLP (784-256-128-10) on this data.
set -euo pipefail
bin=${1:?usage: memory_table.sh BINARY [WALL] [X_KiB...]}
wall=${2:-20s}
shift $(( $# >= 2 ? 2 : 1 ))
sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then sizes=(59648 59712 59776 59904 60160 60416); fi
[ "${sizes[0]}" = "--no-unlimited" ] && { sizes=("${sizes[@]:1}"); unlimited=(); } || unlimited=(none)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "| peak_bytes limit | batch x accumulation | training peak | evaluation peak | run peak | at or under | wall used | test accuracy |"
echo "|---|---|---|---|---|---|---|---|"
for x in "${unlimited[@]}" "${sizes[@]}"; do
  budget="wall=$wall"
  [ "$x" != none ] && budget="$budget,peak_bytes=${x}KiB"
  log="$out/stdout"
  # --trace-events 0: the job turns tracing off under a memory limit; the run without one is
  # compared like for like.
  "$bin" --budget "$budget" --trace-events 0 --out "$out/run" >"$log" 2>"$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
  heap=$(grep '^heap: ' "$log")
  peak=$(sed -E 's/^heap: peak ([0-9]+) B.*/\1/' <<<"$heap")
  train=$(sed -E 's/.*training steps ([0-9]+) B.*/\1/' <<<"$heap")
  evals=$(sed -E 's/.*evaluations ([0-9]+) B.*/\1/' <<<"$heap")
  acc=$(sed -nE 's/^test accuracy: (.*)$/\1/p' "$log")
  used=$(sed -nE 's/^  wall +([0-9.]+ [a-z]+) .*/\1/p' "$log" | head -1)
  batch=$(python3 -c "import json,sys; c=json.load(open('$out/run/report.json'))['controller']['batch']; print(f\"{c['size']} x {c['accumulation']}\")")
  mib() { awk -v b="$1" 'BEGIN { printf "%.3f MiB", b / 1048576 }'; }
  if [ "$x" = none ]; then
    limit="none"; ok="-"
  else
    limit="$(mib $((x * 1024))) ($x KiB)"
    if [ "$peak" -le $((x * 1024)) ]; then ok=yes; else ok="NO (+$((peak - x * 1024)) B)"; fi
  fi
  echo "| $limit | $batch | $(mib "$train") | $(mib "$evals") | $(mib "$peak") | $ok | $used | $acc |"
done
