#!/usr/bin/env bash
# compare_torch.sh BINARY [ROUNDS=3] [BUDGET_SECONDS=20] [FRUGAL_THREADS=]
#
# The fashion_mnist main job (BINARY: build/.../examples/fashion_mnist/fashion_mnist) against
# the same training in PyTorch (benchmarks/torch_fashion_mnist.py: same data split and
# shuffles, same initial weights, loss, SGD, batch, budget-linear schedule and stop rules),
# run alternately -- frugal, torch, frugal, torch, ... ROUNDS times -- so that the machine's
# noise falls on both, each under the same wall budget. Prints a markdown table of every run,
# the medians, and the ratio torch step time / frugal step time.
#
#   FRUGAL_THREADS   --threads for the main job; empty: its default (one per core).
#   TORCH_THREADS    thread counts torch runs at, a row each per round (default "1 2": the
#                    single-threaded OpenBLAS baseline, and 2 threads to match frugal's
#                    default of one per core here; "1" halves the torch time).
#   TORCH_PYTHON     the Python that has torch (default /usr/bin/python3: Debian's python3-torch
#                    is installed for the system Python; a pyenv or venv python3 earlier in PATH
#                    does not see it).
#   DATA             the *-ubyte.gz files (default /usr/share/datasets/fashion-mnist).
#   OUT              where the runs' files go (default a new /tmp/compare_torch.XXXXXX).
#
# What is compared. "step ms" is the mean wall time of one training step as each side
# measures it: frugal's "step" scope (stages.csv: its wall / calls) and the same span in the
# torch script (gather and scale the batch, forward, loss, backward, update, the batch's loss
# and hits); the median comes from frugal's trace.json and from the torch script's own list.
# "wall s" is the budget's wall used (from after the data are loaded and the model made to
# the end of the final test); "CPU s" is the whole process's user + system time (getrusage of
# the child: it includes loading the data and, for torch, importing it); "eval" is the share of
# the wall spent in the validation and test evaluations.
#
# Which BLAS torch uses, and how it is selected. Debian's python3-torch 1.13.1 is built with
# BLAS_INFO=generic: libtorch_cpu.so links libblas.so.3, and Debian's alternatives system
# decides which library that is:
#     update-alternatives --display libblas.so.3-x86_64-linux-gnu
# With libopenblas0-pthread installed (libopenblas0 pulls it in) it points to
# /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 (priority 100, over the reference
# BLAS's 10), OpenBLAS 0.3.21 with its pthreads thread pool, DYNAMIC_ARCH (its Haswell
# kernels on an AVX2 machine). `update-alternatives --config libblas.so.3-x86_64-linux-gnu`
# would switch it (to the reference BLAS, or to BLIS / MKL when installed). The torch script
# does not trust the package names: it asks the dynamic linker which library provides the
# sgemm_ libtorch_cpu calls (dlsym + dladdr) and asks that OpenBLAS its config and thread
# count, and reports both in its "blas" field, printed below. Float32 nn.Linear on the CPU goes
# to that sgemm_ in torch 1.13 (oneDNN, also linked, is used for bf16 matmuls, not float32).
# Single-threaded means: OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1 in the environment
# before torch loads (OpenBLAS's pthreads pool and ATen's OpenMP pool size themselves from
# them), torch.set_num_threads(1), and openblas_set_num_threads(1) on the loaded library; the
# script exports them here too, per run, so the run's environment says so as well. At 2
# threads both pools run a worker, and libgomp's spinning worker starves OpenBLAS's (94 ms a
# step instead of 4.6 ms, measured here): those runs get OMP_WAIT_POLICY=PASSIVE.
#
# Needs bash, python3 (for the JSON; no jq), Debian's python3-torch and libopenblas0, and the
# dataset-fashion-mnist files. A 2-core VM shared with other work is noisy: the table shows
# each run's load average at its start, and alternating the runs spreads the noise over both.
set -euo pipefail

usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 4 ]] || usage
BINARY=$1
ROUNDS=${2:-3}
BUDGET_SECONDS=${3:-20}
FRUGAL_THREADS=${4:-}
TORCH_THREADS=${TORCH_THREADS:-1 2}
TORCH_PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TORCH_SCRIPT=$HERE/torch_fashion_mnist.py

die() { echo "compare_torch.sh: $*" >&2; exit 1; }
[[ -x $BINARY ]] || die "$BINARY: not an executable (the fashion_mnist main job)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $BUDGET_SECONDS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BUDGET_SECONDS must be a number of seconds, got '$BUDGET_SECONDS'"
[[ -z $FRUGAL_THREADS || $FRUGAL_THREADS =~ ^[1-9][0-9]*$ ]] || die "FRUGAL_THREADS must be a positive integer"
for t in $TORCH_THREADS; do [[ $t =~ ^[1-9][0-9]*$ ]] || die "TORCH_THREADS: '$t' is not a thread count"; done
command -v python3 >/dev/null || die "python3 not found (apt-get install python3)"
[[ -x $TORCH_PYTHON ]] || TORCH_PYTHON=$(command -v python3)
"$TORCH_PYTHON" -c 'import torch, numpy' 2>/dev/null ||
  die "$TORCH_PYTHON cannot import torch and numpy (apt-get install python3-torch; or set TORCH_PYTHON)"
BINARY=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
OUT=${OUT:-$(mktemp -d /tmp/compare_torch.XXXXXX)}
mkdir -p "$OUT"

# Runs a command with its stdout and stderr to files and writes what the process used
# (wall, user + system CPU from wait4, exit status, the load average at its start) to a JSON
# file: the same measurement for both sides.
measure() {  # measure JSON STDOUT STDERR COMMAND...
  local json=$1 stdout=$2 stderr=$3; shift 3
  python3 - "$json" "$stdout" "$stderr" "$@" <<'PY'
import json, os, subprocess, sys, time
out, so, se, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
load = float(open("/proc/loadavg").read().split()[0])
t = time.perf_counter()
with open(so, "w") as o, open(se, "w") as e:
    p = subprocess.Popen(cmd, stdout=o, stderr=e)
    _, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
json.dump({"rc": os.waitstatus_to_exitcode(status), "process_wall_s": wall,
           "process_cpu_s": ru.ru_utime + ru.ru_stime, "load1": load, "cmd": cmd}, open(out, "w"))
PY
}

# The environment of a torch run at $1 threads (see the header: the thread pools, and passive
# OpenMP waiting beside OpenBLAS's own pool unless OMP_WAIT_POLICY is set already).
torch_env() {
  local t=$1
  echo "OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t"
  if ((t > 1)); then echo "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}"; fi
}

frugal_cmd=("$BINARY" --budget "wall=${BUDGET_SECONDS}s" --data "$DATA")
if [[ -n $FRUGAL_THREADS ]]; then frugal_cmd+=(--threads "$FRUGAL_THREADS"); fi

{
  echo "# compare_torch.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
  echo "frugal: ${frugal_cmd[*]} --out OUT/frugal-rN"
  for t in $TORCH_THREADS; do
    echo "torch:  $(torch_env "$t" | tr '\n' ' ')$TORCH_PYTHON $TORCH_SCRIPT --budget-seconds $BUDGET_SECONDS --threads $t --data $DATA --json OUT/torch$t-rN.json"
  done
  if command -v update-alternatives >/dev/null; then
    echo "libblas.so.3 alternative: $(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed -n 's/^Value: //p')"
  fi
  torch_cpu=$("$TORCH_PYTHON" -c 'import torch, os, glob; print(next(iter(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so*")) + glob.glob("/usr/lib/*/libtorch_cpu.so*")), ""))')
  if [[ -n $torch_cpu ]]; then
    echo "ldd $(basename "$torch_cpu"): $(ldd "$torch_cpu" | grep -E 'blas|lapack' | awk '{print $1 " => " $3}' | tr '\n' ' ')"
  fi
  echo "OUT: $OUT"
} | tee "$OUT/header.txt" >&2

for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r/$ROUNDS: frugal" >&2
  measure "$OUT/frugal-r$r.proc.json" "$OUT/frugal-r$r.stdout" "$OUT/frugal-r$r.stderr" \
    "${frugal_cmd[@]}" --out "$OUT/frugal-r$r"
  for t in $TORCH_THREADS; do
    echo "round $r/$ROUNDS: torch, $t thread(s)" >&2
    measure "$OUT/torch$t-r$r.proc.json" "$OUT/torch$t-r$r.stdout" "$OUT/torch$t-r$r.stderr" \
      env $(torch_env "$t") "$TORCH_PYTHON" "$TORCH_SCRIPT" --budget-seconds "$BUDGET_SECONDS" --threads "$t" --data "$DATA" \
      --json "$OUT/torch$t-r$r.json"
  done
done

# The table: every run's row, then the medians per side, then the ratios.
python3 - "$OUT" "$ROUNDS" "$TORCH_THREADS" "${FRUGAL_THREADS:-default}" <<'PY'
import json, os, re, statistics, sys
out, rounds, torch_threads, frugal_threads = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
TRAIN = 55000

def frugal_run(r):
    d = os.path.join(out, f"frugal-r{r}")
    proc = json.load(open(d + ".proc.json"))
    if proc["rc"] != 0:
        raise SystemExit(f"frugal run {r} failed (exit {proc['rc']}): see {d}.stderr")
    rep = json.load(open(os.path.join(d, "report.json")))["budget"]
    stages = {s["name"]: s for s in rep["stages"]}
    evals = sum(s["wall"] for c in rep["children"] for s in c["stages"] if c["name"] == "eval")
    steps = stages["step"]["calls"]
    durations = []
    try:  # the per-step times: trace.json's "step" scopes (microseconds), on the training
        # thread only: a worker's share of a scope appears too, marked "continued"
        for e in json.load(open(os.path.join(d, "trace.json")))["traceEvents"]:
            if e.get("name") == "step" and e.get("ph") == "X" and not e.get("args", {}).get("continued"):
                durations.append(e["dur"] / 1e3)
    except (OSError, ValueError, KeyError):
        pass
    m = re.search(r"^test accuracy: ([0-9.]+)", open(d + ".stdout").read(), re.M)
    wall = rep["used"]["wall"]
    stop = json.load(open(os.path.join(d, "report.json")))["controller"]["stop"]
    return {"impl": "frugal", "threads": frugal_threads, "round": r,
            "stop": stop.get("reason") if stop.get("stopped") else "epochs",
            "step_ms_mean": stages["step"]["wall"] / steps * 1e3,
            "step_ms_median": statistics.median(durations) if len(durations) == steps else None,
            "steps": steps, "epochs": rep["used"]["units"]["samples"] / TRAIN,
            "test_accuracy": float(m.group(1)) if m else None, "wall_used_s": wall,
            "cpu_s": proc["process_cpu_s"], "eval_share": evals / wall, "load1": proc["load1"]}

def torch_run(t, r):
    base = os.path.join(out, f"torch{t}-r{r}")
    proc = json.load(open(base + ".proc.json"))
    if proc["rc"] != 0:
        raise SystemExit(f"torch run {r} ({t} threads) failed (exit {proc['rc']}): see {base}.stderr")
    j = json.load(open(base + ".json"))
    return {"impl": "torch", "threads": str(t), "round": r, "stop": j["stop_kind"],
            "step_ms_mean": j["step_ms_mean"],
            "step_ms_median": j["step_ms_median"], "steps": j["steps"], "epochs": j["epochs"],
            "test_accuracy": j["test_accuracy"], "wall_used_s": j["wall_used_s"],
            "cpu_s": proc["process_cpu_s"], "eval_share": j["eval_share"], "load1": proc["load1"],
            "blas": j["blas"]}

rows = []
for r in range(1, rounds + 1):
    rows.append(frugal_run(r))
    rows += [torch_run(t, r) for t in torch_threads]

def f(v, fmt):
    return "n/a" if v is None else format(v, fmt)

cols = [("step ms mean", "step_ms_mean", ".3f"), ("step ms median", "step_ms_median", ".3f"),
        ("steps", "steps", "d"), ("epochs", "epochs", ".2f"), ("test acc", "test_accuracy", ".4f"),
        ("wall used s", "wall_used_s", ".2f"), ("CPU s (process)", "cpu_s", ".2f"),
        ("eval share", "eval_share", ".3f")]
print("| run | impl | threads | " + " | ".join(c[0] for c in cols) + " | stop | load1 at start |")
print("|---|---|---|" + "---|" * len(cols) + "---|---|")
for row in rows:
    print(f"| {row['round']} | {row['impl']} | {row['threads']} | "
          + " | ".join(f(row[k], fmt) for _, k, fmt in cols) + f" | {row['stop']} | {row['load1']:.2f} |")
groups = [("frugal", frugal_threads)] + [("torch", str(t)) for t in torch_threads]
medians = {}
for impl, threads in groups:
    sel = [x for x in rows if x["impl"] == impl and x["threads"] == threads]
    med = {}
    for _, k, _ in cols:
        vals = [x[k] for x in sel if x[k] is not None]
        med[k] = statistics.median(vals) if vals else None
    medians[(impl, threads)] = med
    print(f"| median | {impl} | {threads} | "
          + " | ".join(f(med[k] if k != "steps" or med[k] is None else int(med[k]), fmt) for _, k, fmt in cols)
          + " | | |")
print()
fr = medians[("frugal", frugal_threads)]
for t in torch_threads:
    tm = medians[("torch", str(t))]
    ratio_mean = tm["step_ms_mean"] / fr["step_ms_mean"]
    ratio_median = (tm["step_ms_median"] / fr["step_ms_median"]
                    if tm["step_ms_median"] and fr["step_ms_median"] else None)
    print(f"torch ({t} thread(s)) step / frugal ({frugal_threads} threads) step: "
          f"{ratio_mean:.2f}x on the median of the runs' means, "
          f"{f(ratio_median, '.2f')}x on the median of the runs' medians")
blas = sorted({x["blas"] for x in rows if x["impl"] == "torch"})
print("torch BLAS: " + "; ".join(blas))
PY
