#!/usr/bin/env bash
# The README's pruning and quantizing table: the main job with a plan (--epochs E) that does not
# fit its FLOP budget, without compression, with --prune, with --quantize and with both, for
# several budgets. FLOPs are counted, not timed,
# so every number here is the same on any machine (with the same --threads: each shard adds its
# reduction). One row per run: epochs completed (samples trained / training images), the FLOPs
# of a step of --batch samples at the start and at the end, the hidden layers at the end, the
# FLOPs used and whether they stayed at or under the limit, and the test accuracy.
#   examples/fashion_mnist/prune_table.sh BINARY [EPOCHS] [FLOPS...]
set -euo pipefail
bin=${1:?usage: prune_table.sh BINARY [EPOCHS] [FLOPS...]}
epochs=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
budgets=("$@")
if [ ${#budgets[@]} -eq 0 ]; then budgets=(1.2e11 9e10 6e10); fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "| flops limit | compression | epochs completed (of $epochs) | step FLOPs at the start | at the end | MLP at the end | layer 1 frozen as int8 at step | FLOPs used | at or under | test accuracy |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for budget in "${budgets[@]}"; do
  for compression in none --prune --quantize "--prune --quantize"; do
    args=(--budget "flops=$budget" --epochs "$epochs" --threads 2 --trace-events 0 --out "$out/run")
    [ "$compression" != none ] && read -r -a more <<<"$compression" && args+=("${more[@]}")
    "$bin" "${args[@]}" >"$out/stdout" 2>"$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
    read -r done used limit first last mlp frozen acc < <(python3 - "$out" <<'EOF'
import csv, json, re, sys
d = sys.argv[1]
report = json.load(open(f"{d}/run/report.json"))
rows = list(csv.DictReader(open(f"{d}/run/epochs.csv")))
stdout = open(f"{d}/stdout").read()
stderr = open(f"{d}/stderr").read()
epochs = float(re.search(r"^after ([0-9.]+) epochs", stdout, re.M).group(1))
mlp = re.search(r"MLP ([0-9-]+)", stderr).group(1)
first = last = rows[-1]["step_flops"]
m = re.search(r"^pruned: MLP \S+ -> (\S+) .* samples ([0-9]+) -> ([0-9]+) FLOPs$", stdout, re.M)
if m: mlp, first, last = m.groups()
m = re.search(r"^quantized: .* samples ([0-9]+) -> ([0-9]+) FLOPs$", stdout, re.M)
if m: first, last = m.groups()
m = re.search(r"step ([0-9]+): froze layer", stderr)
frozen = m.group(1) if m else "-"
acc = re.search(r"^test accuracy: (\S+)", stdout, re.M).group(1)
print(f"{epochs:.2f}", report["budget"]["used"]["flops"], report["budget"]["limits"]["flops"], first, last, mlp, frozen, acc)
EOF
)
    ok=$(awk -v u="$used" -v l="$limit" 'BEGIN { print (u <= l ? "yes" : "NO") }')
    fmt() { awk -v x="$1" 'BEGIN { printf "%.3g", x }'; }
    echo "| $budget | $compression | $done | $(fmt "$first") | $(fmt "$last") | $mlp | $frozen | $(fmt "$used") | $ok | $acc |"
  done
done
