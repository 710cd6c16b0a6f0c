#!/usr/bin/env bash
# Configures and builds into build/ (or $SKPROXY_BUILD_DIR): the targets named as arguments, or everything
# (skproxy, tests, bench tools).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SKPROXY_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j"$(nproc)" "${targets[@]}"
