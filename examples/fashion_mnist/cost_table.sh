#!/usr/bin/env bash
# The README's money table: what a 20 s run of the main job costs at a stated price, then the
# main job with a cost limit equal to that, for three price models (per instance-hour: charged
# from wall time; per core-hour: from CPU time; both). One row per run: the price, the limit, the
# cost used and whether it stayed at or under the limit, the wall and CPU time, the epochs, the
# stop reason's resource and the test accuracy; then what the machine says about energy.
#   examples/fashion_mnist/cost_table.sh BINARY
set -euo pipefail
bin=${1:?usage: cost_table.sh BINARY}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

row() {  # row LABEL ARGS...: runs the job, prints one table row
  local label=$1
  shift
  "$bin" "$@" --threads 2 --trace-events 0 --out "$out/run" >"$out/stdout" 2>"$out/stderr" ||
    { cat "$out/stderr" >&2; exit 1; }
  python3 - "$out" "$label" <<'EOF'
import json, re, sys
d, label = sys.argv[1], sys.argv[2]
b = json.load(open(f"{d}/run/report.json"))["budget"]
stdout = open(f"{d}/stdout").read()
used, lim = b["used"], b["limits"]
price = re.search(r"\(price (\S+)\)", stdout).group(1)
epochs = re.search(r"^after ([0-9.]+) epochs", stdout, re.M).group(1)
stop = re.search(r"^stopped: (.*)$", stdout, re.M).group(1)
why = re.search(r"\): (\w+):", stop)
acc = re.search(r"^test accuracy: (\S+)", stdout, re.M).group(1)
limit = f"{lim['cost']:.4f} {lim['currency'] or ''}" if lim["cost"] is not None else f"wall={lim['wall']:g}s"
inside = "-" if lim["cost"] is None else ("yes" if used["cost"] <= lim["cost"] else "NO")
cpu = f"{used['cpu']:.1f} s" if used["cpu"] is not None else "-"
print(f"| {label} | `{price}` | {limit} | {used['cost']:.5f} | {inside} | {used['wall']:.1f} s | {cpu} | "
      f"{epochs} | {why.group(1) if why else stop} | {acc} |")
EOF
}

echo "| run | price | limit | cost used (USD) | at or under | wall | cpu | epochs | stopped for | test accuracy |"
echo "|---|---|---|---|---|---|---|---|---|---|"
# 3.60 USD an hour is 0.001 USD a second: 20 s cost 0.02 USD. 1.80 USD a core-hour on both of
# this machine's cores costs the same; half of each is the same again.
row "wall=20s, priced" --budget wall=20s --price instance_hour=3.60USD
for price in instance_hour=3.60USD core_hour=1.80USD instance_hour=1.80USD,core_hour=0.90USD; do
  row "cost limit" --budget cost=0.02USD --price "$price"
done
echo
grep -h -m1 '^ *energy:' "$out/stdout" | sed 's/^ *//' || true
