#!/usr/bin/env bash
# The README's deployment table and plot: the main job trained under a FLOP budget, then deployed
# (--deploy) under each of several limits; one row for the float model, one per limit: what was
# done, the deployed model's bytes (the file as saved), FLOPs per image (counted by frugal while it
# classified the test set), time per image (one thread; this machine's), test accuracy, and
# whether both limits hold. Writes the plot (accuracy against model bytes) with gnuplot.
#   examples/fashion_mnist/deploy_table.sh BINARY [PNG] [LIMITS...]
# The model is trained once, with --checkpoint, and every row deploys it with --deploy-from (no
# training); the script checks that the float model's accuracy and FLOPs are the same in every row.
# A FLOP budget with --threads 2 makes the training deterministic (FLOPs are counted, not timed,
# and the shards reduce in a fixed order): on any machine the rows are the same but for µs/image.
set -euo pipefail
bin=${1:?usage: deploy_table.sh BINARY [PNG] [LIMITS...]}
png=${2:-examples/fashion_mnist/deploy.png}
shift $(( $# >= 2 ? 2 : 1 ))
limits=("$@")
if [ ${#limits[@]} -eq 0 ]; then
  limits=(model_bytes=256KiB model_bytes=128KiB model_bytes=64KiB model_bytes=32KiB model_bytes=16KiB
          inference_flops=2e5 "model_bytes=64KiB,inference_flops=1e5")
fi
budget=${BUDGET:-flops=6e11}
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "deploy_table.sh: gnuplot not found (Debian: sudo apt-get install gnuplot-nox)" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$bin" --budget "$budget" --threads 2 --trace-events 0 --checkpoint "$out/checkpoint" --out "$out/train" \
  >"$out/stdout" 2>"$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
for i in "${!limits[@]}"; do
  "$bin" --deploy-from "$out/checkpoint" --deploy "${limits[$i]}" --out "$out/run$i" \
    >"$out/stdout$i" 2>"$out/stderr$i" || { cat "$out/stderr$i" >&2; exit 1; }
done

python3 - "$out" "$budget" "${limits[@]}" <<'EOF'
import json, sys
out, budget, limits = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = [json.load(open(f"{out}/run{i}/deploy.json")) for i in range(len(limits))]
floats = {(r["float"]["correct"], r["float"]["flops"]) for r in runs}
if len(floats) != 1:
    sys.exit(f"deploy_table.sh: the float model differs between runs: {floats}")
f = runs[0]["float"]
shape = lambda s: "-".join(map(str, s))
us = lambda r: f"{r['seconds_per_sample'] * 1e6:.2f}"
print(f"| limit | done | MLP | bytes | FLOPs/image | µs/image | test accuracy | vs float | fits |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| (float model) | none | {shape(f['sizes'])} | {f['bytes']} | {f['flops_per_sample']:.0f} | {us(f)} | {f['accuracy']:.4f} | | |")
points = [("float", f["bytes"], f["accuracy"])]
for limit, r in zip(limits, runs):
    p, d = r["plan"], r["deployed"]
    if d is None:
        print(f"| {limit} | not deployed: no width fits | {shape(p['sizes'])} (smallest) | {p['predicted_bytes']} | {p['predicted_flops_per_sample']} | | | | no |")
        continue
    done = "int8" + (f", layer 1 {p['units_before']} → {p['units_after']}" if p["units_after"] < p["units_before"] else "")
    lim = r["limits"]
    ok = d["bytes"] <= lim.get("model_bytes", float("inf")) and d["flops_per_sample"] <= lim.get("inference_flops", float("inf"))
    print(f"| {limit} | {done} | {shape(d['sizes'])} | {d['bytes']} | {d['flops_per_sample']:.0f} | {us(d)} | "
          f"{d['accuracy']:.4f} | {(d['accuracy'] - f['accuracy']) * 100:+.2f} | {'yes' if ok else 'NO'} |")
    points.append((limit, d["bytes"], d["accuracy"]))
# The plot's points, in KiB, each with a short label ("64KiB + FLOPs 1e5") placed below or above
# it in turn (by size), so that neighbours' labels do not overlap.
short = lambda l: l.replace("model_bytes=", "").replace("inference_flops=", "FLOPs ").replace(",", " + ")
with open(f"{out}/points.dat", "w") as o:
    for k, (name, b, a) in enumerate(sorted(points[1:], key=lambda p: p[1])):
        o.write(f'{b / 1024} {a} {-0.03 if k % 2 == 0 else 0.03} "{short(name)}"\n')
with open(f"{out}/float.dat", "w") as o:
    o.write(f'{points[0][1] / 1024} {points[0][2]} -0.03 "float {shape(f["sizes"])}"\n')
print(f"\n(training: --budget {budget} --threads 2; the test set, {f['images']} images)")
EOF

terminal=png
if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then terminal=pngcairo; fi
gnuplot - <<GNUPLOT
set terminal $terminal size 900,560 noenhanced
set output '$png'
set title 'fashion_mnist --deploy: test accuracy against model bytes (training: $budget)'
set xlabel 'model size (as saved; log scale)'
set ylabel 'test accuracy'
set logscale x 2
set format x '%g KiB'
set xrange [8:2048]
set yrange [0.3:1]
set grid
set key bottom right
plot '$out/points.dat' using 1:2 with points pointtype 7 pointsize 1.5 title 'deployed (int8 per-channel, pruned to fit)', \
     '' using 1:(\$2+\$3):4 with labels center font ',9' notitle, \
     '$out/float.dat' using 1:2 with points pointtype 5 pointsize 1.5 title 'float model', \
     '' using 1:(\$2+\$3):4 with labels center font ',9' notitle
GNUPLOT
echo "wrote $png" >&2
