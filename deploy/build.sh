#!/usr/bin/env bash
# Configures and builds into build/ (or $SKPROXY_BUILD_DIR): the targets named as arguments, or everything
# (skproxy, tests, bench tools). SKPROXY_SANITIZE=1 builds with ASan and UBSan instead, into build-asan/ by
# default (tests/run-sanitized.sh runs the suite there).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${SKPROXY_SANITIZE:-0}" = 1 ]; then
  build_dir=${SKPROXY_BUILD_DIR:-build-asan}
  cmake_args+=(-DSKPROXY_SANITIZE=ON)
else
  build_dir=${SKPROXY_BUILD_DIR:-build}
  cmake_args+=(-DSKPROXY_SANITIZE=OFF)
fi
cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j"$(nproc)" "${targets[@]}"
