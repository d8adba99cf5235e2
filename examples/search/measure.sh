#!/usr/bin/env bash
# The README's search table: Hyperband and random search on Fashion-MNIST over the 81
# configurations of examples/search (lr x batch x width x momentum) inside samples budgets B, 2B,
# 4B (SEEDS seeds each), and the best of the full grid trained without a budget (every
# configuration GRID_SAMPLES samples), with its total cost. One oneTBB thread per run.
#
#   bash examples/search/measure.sh BINARY [B] [GRID_SAMPLES]
#   bash examples/search/measure.sh build/search/examples/search/search 300000 110000
#
# Env: SEEDS (default "1 2"), OUT (default /tmp/frugal-search-measure), DATA.
# ~10 min of CPU with the defaults on the reference VM.
set -euo pipefail

bin=${1:?usage: measure.sh BINARY [B] [GRID_SAMPLES]}
B=${2:-300000}
grid_samples=${3:-110000}
seeds=${SEEDS:-1 2}
out=${OUT:-/tmp/frugal-search-measure}
data=${DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$out"

run() {  # name, then the example's options; prints its RESULT line
  local name=$1
  shift
  "$bin" --data "$data" --out "$out/$name" --threads 1 "$@" 2>"$out/$name.log" | grep '^RESULT' | tee -a "$out/results.txt"
}

: >"$out/results.txt"
for seed in $seeds; do
  for k in 1 2 4; do
    for method in hyperband random; do
      run "$method-${k}B-s$seed" --method "$method" --budget "samples=$((k * B))" --seed "$seed" >/dev/null
    done
  done
done
run grid --method grid --grid-samples "$grid_samples" --seed 1 >/dev/null

# The table: per method and budget, the best validation accuracy found (and the best model's
# test accuracy), per seed and their mean.
python3 - "$out/results.txt" "$B" "$grid_samples" <<'EOF'
import re, sys, statistics
path, B, grid_samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for line in open(path):
    kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    rows.append(kv)
def f(kv, k): return float(kv[k])
print(f"B = {B} samples (~{B/55000:.1f} epochs of the 55,000 training images); seeds per cell: "
      f"{len([r for r in rows if r['method']=='hyperband' and r['budget']==f'samples={B}'])}\n")
print("| search | budget | best val accuracy (per seed) | mean | test accuracy of the best model (mean) | trials (mean) | samples used / limit | inside |")
print("|---|---|---|---|---|---|---|---|")
for method in ("hyperband", "random"):
    for k in (1, 2, 4):
        rs = [r for r in rows if r["method"] == method and r["budget"] == f"samples={k*B}"]
        if not rs: continue
        vals = [f(r, "best_val") for r in rs]
        tests = [f(r, "test") for r in rs]
        used = max(f(r, "used") for r in rs)
        inside = all(r["inside"] == "1" for r in rs)
        print(f"| {method} | {k}B = {k*B:,} | {' / '.join(f'{v:.4f}' for v in vals)} | **{statistics.mean(vals):.4f}** | "
              f"{statistics.mean(tests):.4f} | {statistics.mean(int(r['trials']) for r in rs):.0f} | "
              f"≤ {used:,.0f} / {k*B:,} | {'yes' if inside else 'NO'} |")
g = [r for r in rows if r["method"] == "grid"]
if g:
    r = g[0]
    print(f"| full grid, no budget | {int(f(r,'used')):,} samples ({grid_samples:,} per configuration, 81 configurations; "
          f"{f(r,'flops'):.3g} FLOPs, {f(r,'wall_s'):.0f} s wall) | {f(r,'best_val'):.4f} | {f(r,'best_val'):.4f} | "
          f"{f(r,'test'):.4f} | 81 | - | - |")
    print(f"\ngrid best: {r['best']}")
EOF
