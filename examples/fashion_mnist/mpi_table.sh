#!/usr/bin/env bash
# The README's MPI table: the main job data-parallel (fashion_mnist_mpi) at 1, 2 and 4 ranks under
# the same wall budget. One row per run: the ranks and threads per rank, the test accuracy, the
# steps (every rank ends the same number: the job's), the wall time used of the budget, why the
# controller stopped (forecast: the budget; early_stop: the validation loss), the usage
# exchanges (one per step and per epoch end, each with the decision's agreement) and their
# mean cost on rank 0, and the gradients' MPI_Allreduce per step (waiting for the slowest rank
# included). Ranks on one machine share its cores (threads per rank = cores / ranks, at least 1):
# with more ranks than cores they oversubscribe it, and the table says so.
#   examples/fashion_mnist/mpi_table.sh BINARY [BUDGET (default wall=20s)] [RANKS (default "1 2 4")]
# Extra options for the job: FMNIST_ARGS="--hidden 64" examples/fashion_mnist/mpi_table.sh ...
# mpirun: $MPIEXEC (default mpirun); Open MPI gets --oversubscribe, and --allow-run-as-root as root.
set -euo pipefail
bin=${1:?usage: mpi_table.sh BINARY [BUDGET] [RANKS]}
budget=${2:-wall=20s}
ranks=${3:-1 2 4}
mpiexec=${MPIEXEC:-mpirun}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

launcher=("$mpiexec")
if "$mpiexec" --version 2>&1 | grep -q "Open MPI"; then
  launcher+=(--oversubscribe)
  [ "$(id -u)" -eq 0 ] && launcher+=(--allow-run-as-root)
fi
cores=$(nproc)

echo "| ranks | threads per rank | test accuracy | steps | wall used | stopped for | exchanges | exchange (us, mean) | allreduce per step (us, mean) |"
echo "|---|---|---|---|---|---|---|---|---|"
for k in $ranks; do
  # shellcheck disable=SC2086
  "${launcher[@]}" -np "$k" "$bin" --budget "$budget" --trace-events 0 --out "$out/run$k" ${FMNIST_ARGS:-} \
    >"$out/stdout$k" 2>"$out/stderr$k" || { tail -20 "$out/stderr$k" >&2; exit 1; }
  python3 - "$out" "$k" "$cores" <<'PY'
import json, re, sys
d, k, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(f"{d}/run{k}/report.json"))
stdout = open(f"{d}/stdout{k}").read()
b = r["budget"]
acc = re.search(r"^test accuracy: (\S+)", stdout, re.M).group(1)
steps = {x["steps"] for x in r["ranks"]}
threads = re.search(r"^data parallel: .*, (\d+) shard\(s\) each", stdout, re.M).group(1)
allreduce = re.search(r"^  allreduce: \d+ steps, ([0-9.]+) us each", stdout, re.M).group(1)
ex = r["exchanges"]
wall = b["used"]["wall"]
lim = b["limits"]["wall"]
note = " (oversubscribed)" if k > cores else ""
print(f"| {k}{note} | {threads} | {acc} | {'/'.join(map(str, sorted(steps)))} | {wall:.2f} s"
      f"{f' of {lim:g} s' if lim else ''} | {r['controller']['stop']['reason']} | {ex['count']} | {ex['mean_seconds'] * 1e6:.0f} | {float(allreduce):.0f} |")
PY
done
echo
echo "$cores cores; budget \"$budget\"; load average (1, 5, 15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
