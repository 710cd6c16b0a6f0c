#!/usr/bin/env bash
# The suite again under AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer: everything
# built with SKPROXY_SANITIZE=ON into build-asan/ (or $SKPROXY_ASAN_BUILD_DIR), so the integration tests start
# the sanitized skproxy (the path compiled into them is build-asan/skproxy). tests/run.sh runs it after the
# ordinary suite; alone: `tests/run-sanitized.sh [ctest arguments]`, as root like the ordinary suite.
#
# Any report fails: an ASan or UBSan error stops the process at once (halt_on_error, and UBSan is built with
# -fno-sanitize-recover), a leak makes the process exit 1 with its report, and the harness fails a test whose
# proxy or command printed a report even if the exit status was the one it expected
# (tests/integration/sanitizer_report.h). Suppressions, each explained, are in tests/sanitizers/.
#
# Left out: the tests labelled heavy (soaks, loss and slow-receiver runs, the container image build) and
# timing (integration.kernel_path). The heavy ones run minutes on the ordinary build, most of it moving
# gigabytes; both assert throughput or the share of bytes the kernel path carries while user space keeps up,
# which a several times slower sanitized user space misses for reasons of its own (kernel_path measured 43-71%
# against its 97% floor here). The code they reach is the code the rest of the suite reaches.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SKPROXY_ASAN_BUILD_DIR:-build-asan}
SKPROXY_SANITIZE=1 SKPROXY_BUILD_DIR="$build_dir" deploy/build.sh

suppressions="$PWD/tests/sanitizers"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$suppressions/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$suppressions/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -LE "heavy|timing" "$@"
