#!/usr/bin/env bash
# Overshoot under load: runs fashion_mnist RUNS times at one budget with two busy loops beside
# it, and measures how far each run lands from its wall limit (in ms and in mean steps).
# The acceptance it checks by eye: "20 runs at wall=10s with two busy loops, at least 19
# inside the limit and none past by more than one step". It measures; it never asserts
# (exit 0 always).
#   bash examples/fashion_mnist/overshoot.sh BINARY [RUNS=20] [BUDGET=wall=10s]
# Prints one line per run (used wall, past(+)/under(-) the limit in ms, mean step time,
# past in steps, stop message, test accuracy) and a summary, plus /proc/loadavg before and
# after. Runs write under a temporary directory (kept: its path is printed; OVERSHOOT_OUT
# overrides it). Needs python3 (json module only).
set -u
exe="${1:?usage: overshoot.sh BINARY [RUNS=20] [BUDGET=wall=10s]}"
runs="${2:-20}"
budget="${3:-wall=10s}"
root="${OVERSHOOT_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/overshoot.XXXXXX")}"
mkdir -p "$root"

busy=()
cleanup() { for p in "${busy[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "binary: $exe"
echo "budget: $budget  runs: $runs  nproc: $(nproc)  out: $root"
echo "loadavg before (no busy loops yet): $(cat /proc/loadavg)"
for _ in 1 2; do bash -c 'while :; do :; done' & busy+=($!); done
echo "busy loops: ${busy[*]}"

for ((i = 1; i <= runs; i++)); do
  out="$root/run$i"
  "$exe" --budget "$budget" --out "$out" >"$root/run$i.stdout" 2>"$root/run$i.stderr"
  echo "$?" >"$root/run$i.rc"
  printf '.' >&2
done
echo >&2
echo "loadavg after (busy loops still on): $(cat /proc/loadavg)"
cleanup; busy=()

python3 - "$root" "$runs" <<'EOF'
import json, os, re, statistics, sys
root, runs = sys.argv[1], int(sys.argv[2])
rows = []
print(f"{'run':>3} {'rc':>2} {'used s':>7} {'limit s':>7} {'past ms':>8} {'step ms':>7} "
      f"{'past st':>7} {'steps':>5} {'acc':>6}  stop")
for i in range(1, runs + 1):
    out = os.path.join(root, f"run{i}")
    rc = open(os.path.join(root, f"run{i}.rc")).read().strip()
    stdout = open(os.path.join(root, f"run{i}.stdout"), errors="replace").read()
    m = re.search(r"^test accuracy: ([0-9.eE+-]+)", stdout, re.M)
    acc = float(m.group(1)) if m else None
    try:
        rep = json.load(open(os.path.join(out, "report.json")))
    except (OSError, ValueError) as e:
        print(f"{i:>3} {rc:>2} no report.json ({e.__class__.__name__})")
        continue
    b, c = rep["budget"], rep.get("controller", {})
    used, limit = b["used"]["wall"], b["limits"]["wall"]
    step = next((s for s in b.get("stages", []) if s["name"] == "step"), None)
    mean = step["wall"] / step["calls"] if step and step["calls"] else None
    past = used - limit
    past_steps = past / mean if mean else None
    msg = ((c.get("stop") or {}).get("message") or "").replace("\n", " ")
    rows.append(dict(i=i, used=used, limit=limit, past=past, mean=mean, past_steps=past_steps,
                     acc=acc, msg=msg, decisions=c.get("decisions", []),
                     headroom=c.get("headroom"), steps=c.get("steps")))
    f = lambda v, fmt: format(v, fmt) if v is not None else "-"
    print(f"{i:>3} {rc:>2} {used:7.3f} {limit:7.3f} {past * 1e3:+8.1f} {f(mean and mean * 1e3, '7.2f')} "
          f"{f(past_steps, '+7.2f')} {f(c.get('steps'), '5d')} {f(acc, '6.4f')}  {msg[:70]}")

print()
n = len(rows)
if n:
    inside = [r for r in rows if r["used"] <= r["limit"]]
    past = [r for r in rows if r["used"] > r["limit"]]
    worst = max(rows, key=lambda r: r["past"])
    worst_st = max((r for r in rows if r["past_steps"] is not None),
                   key=lambda r: r["past_steps"], default=None)
    util = [r["used"] / r["limit"] for r in rows]
    accs = [r["acc"] for r in rows if r["acc"] is not None]
    over_one = [r for r in rows if r["past_steps"] is not None and r["past_steps"] > 1]
    print(f"summary: {n} reports of {runs} runs; inside the limit (used <= limit): {len(inside)}; "
          f"past: {len(past)}")
    print(f"largest overshoot: {worst['past'] * 1e3:+.1f} ms (run {worst['i']}); in steps: "
          + (f"{worst_st['past_steps']:+.2f} (run {worst_st['i']})" if worst_st else "-"))
    print(f"past by more than one step: {len(over_one)}"
          + (f" (runs {', '.join(str(r['i']) for r in over_one)})" if over_one else ""))
    print(f"utilisation used/limit: median {statistics.median(util) * 100:.1f} %, "
          f"min {min(util) * 100:.1f} %, max {max(util) * 100:.1f} %")
    print(f"test accuracy: median {statistics.median(accs):.4f}, min {min(accs):.4f}, "
          f"max {max(accs):.4f}" if accs else "test accuracy: none parsed")
    print(f"acceptance (>= {runs - 1} inside, none past by > 1 step): "
          f"{'met' if len(inside) >= runs - 1 and not over_one and n == runs else 'NOT met'}")
    for r in over_one:
        print(f"\nrun {r['i']} past by {r['past_steps']:.2f} steps: {r['msg']}")
        print(f"  headroom: {json.dumps(r['headroom'])}")
        for d in r["decisions"]:
            print(f"  decision: {json.dumps(d)}")
else:
    print("summary: no report.json was read")
EOF
exit 0
