#!/usr/bin/env bash
# The main job: installs what it needs, builds frugal's examples (Release) and runs the
# budgeted training example. Arguments are passed to the example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release \
  -DFRUGAL_BUILD_TESTS=OFF -DFRUGAL_BUILD_BENCHMARKS=OFF -DFRUGAL_BUILD_EXAMPLES=ON >/dev/null
cmake --build build/release --target quickstart --parallel 2 >/dev/null
exec ./build/release/examples/quickstart/quickstart "$@"
