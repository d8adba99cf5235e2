#!/usr/bin/env bash
# Budget fidelity: runs fashion_mnist at 25 %, 50 % and 100 % of a reference budget with each
# learning-rate schedule, and prints a Markdown table of test accuracy, budget used and
# overshoot (past the limit, also in steps: the bound is "never more than one step over").
#   bash examples/fashion_mnist/fidelity.sh BINARY [REFERENCE] [extra fashion_mnist args...]
# REFERENCE is one limit: wall=<seconds>s (default wall=20s) or flops=<count> (deterministic).
# Runs write under ${FIDELITY_OUT:-build/fidelity}/<budget>-<schedule>/.
set -euo pipefail
exe="${1:?usage: fidelity.sh BINARY [wall=20s|flops=N] [args...]}"
reference="${2:-wall=20s}"
shift $(( $# >= 2 ? 2 : 1 ))
key="${reference%%=*}"
value="${reference#*=}"
case "$key" in
  wall) [[ "$value" == *s ]] || { echo "fidelity.sh: wall must be in seconds, like wall=20s" >&2; exit 2; }
        base="${value%s}"; suffix=s ;;
  flops) base="$value"; suffix= ;;
  *) echo "fidelity.sh: reference must be wall=<seconds>s or flops=<count>, got '$reference'" >&2; exit 2 ;;
esac
root="${FIDELITY_OUT:-build/fidelity}"

# "<name>":<number> inside the first object that opens with the given JSON text, in the root
# budget (what comes before its "stages"; report.json is one line, keys in a fixed order).
root_number() { sed 's/"stages".*//' "$3" | grep -o "$1[^}]*\"$2\":[-0-9.e+]*" | head -n1 | sed 's/.*://'; }
stage_number() { grep -o "$1[^}]*\"$2\":[-0-9.e+]*" "$3" | head -n1 | sed 's/.*://'; }

echo "| budget | schedule | test accuracy | used | used % | past the limit |"
echo "| --- | --- | --- | --- | --- | --- |"
for percent in 25 50 100; do
  limit=$(awk -v v="$base" -v p="$percent" 'BEGIN { printf "%.6g", v * p / 100 }')
  for schedule in budget-linear constant step; do
    out="$root/$key$percent-$schedule"
    accuracy=$("$exe" --budget "$key=$limit$suffix" --schedule "$schedule" --out "$out" "$@" 2>/dev/null |
               sed -n 's/^test accuracy: //p')
    report="$out/report.json"
    used=$(root_number '"used":{' "$key" "$report")
    max=$(root_number '"limits":{' "$key" "$report")
    step=$(stage_number '{"name":"step",' "$key" "$report")
    calls=$(stage_number '{"name":"step",' calls "$report")
    awk -v b="$key=$limit$suffix ($percent %)" -v s="$schedule" -v a="$accuracy" -v u="$used" -v m="$max" \
        -v st="$step" -v c="$calls" -v k="$key" 'BEGIN {
      over = u - m; per = c > 0 ? st / c : 0
      shown = k == "wall" ? sprintf("%.2f s", u) : sprintf("%.4g", u)
      past = over > 0 ? sprintf("%.3g (%.2f steps)", over, per > 0 ? over / per : 0) : "no"
      printf "| %s | %s | %s | %s | %.1f %% | %s |\n", b, s, a, shown, 100 * u / m, past }'
  done
done
