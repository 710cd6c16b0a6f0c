#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit, BPF, integration), then the suite
# again under AddressSanitizer and UndefinedBehaviorSanitizer (tests/run-sanitized.sh: its own build in
# build-asan/, every test but those labelled heavy or timing). As root: the kernel-path tests load BPF
# programs and create network namespaces; without root they skip and say why. Arguments go to both ctest
# runs (e.g. -R integration.l7). SKPROXY_SANITIZE_SUITE=0 leaves the sanitized run out.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
# The image test builds on a local Debian base image (no registry is reachable): made once, from the mirror.
if ! deploy/make-base-image.sh; then
  echo "run.sh: deploy/make-base-image.sh failed: the image test will skip and say why" >&2
fi
build_dir=${SKPROXY_BUILD_DIR:-build}
status=0
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 "$@" || status=$?
# Run even when the ordinary suite failed: both sets of failures in one CI run.
if [ "${SKPROXY_SANITIZE_SUITE:-1}" != 0 ]; then
  bash tests/run-sanitized.sh "$@" || status=$?
fi
exit "$status"
