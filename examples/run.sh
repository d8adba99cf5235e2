#!/usr/bin/env bash
# The main job: installs what it needs, builds frugal's examples (Release) and runs the
# budgeted Fashion-MNIST training (default budget: wall=20s), then plots its accuracy against
# the budget used. Arguments are passed to the example (see --help); its files go to
# build/fashion_mnist unless --out says otherwise. The example is compiled for this machine's
# CPU (FRUGAL_NATIVE: -march=native, about twice as fast a step here); FRUGAL_NATIVE=OFF in the
# environment builds the portable x86-64 baseline instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
  -DFRUGAL_BUILD_TESTS=OFF -DFRUGAL_BUILD_BENCHMARKS=OFF -DFRUGAL_BUILD_EXAMPLES=ON \
  -DFRUGAL_NATIVE="${FRUGAL_NATIVE:-ON}" >/dev/null
cmake --build build/release --target fashion_mnist --parallel 2 >/dev/null
out=build/fashion_mnist
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  case "${args[i]}" in
    --help|-h) exec ./build/release/examples/fashion_mnist/fashion_mnist --help ;;
    --out=*) out="${args[i]#--out=}" ;;
    --out) if ((i + 1 < ${#args[@]})); then out="${args[i + 1]}"; fi ;;
  esac
done
./build/release/examples/fashion_mnist/fashion_mnist --out "$out" "$@"
bash examples/fashion_mnist/plot.sh "$out" >&2
