#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit, BPF, integration). As root: the
# kernel-path tests load BPF programs and create network namespaces; without root they skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
build_dir=${SKPROXY_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 "$@"
