#!/usr/bin/env bash
# Peer benchmark: direct vs skproxy (sockmap, userspace and auto paths) vs HAProxy vs nginx, on loopback.
# Usage: bench/run.sh [--quick] [--reps N] [--rows direct,skproxy-sockmap,skproxy-userspace,skproxy-auto,haproxy,nginx,
#                                              skproxy-http,skproxy-http-splice,haproxy-http,nginx-http]
#                     [--columns memory,iperf,pingpong,connrate,wrk,wrk-close,reqresp,reqresp-bulk]
#                     [--skproxy PATH] [--baseline PATH] [--build DIR] [--idle-conns N] [--json FILE]
# Prints markdown tables on stdout (progress goes to stderr). Builds nothing: it expects the tools in
# BUILD/bench (default build/). Every process it starts is stopped by PID on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build="$repo/build"
reps=1
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --reps) reps=${2:?--reps needs a number}; pass+=("$1" "$2"); shift 2 ;;
    --skproxy|--baseline|--rows|--columns|--idle-conns|--json) pass+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --quick) pass+=("$1"); shift ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$reps" in ''|*[!0-9]*|0) echo "run.sh: --reps wants a positive integer" >&2; exit 2 ;; esac

missing=()
for t in pingpong connrate idleconns; do
  [ -x "$build/bench/skproxy_bench_$t" ] || missing+=("skproxy_bench_$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing in $build/bench: ${missing[*]}" >&2
  echo "build them first:  cmake -S $repo -B $build && cmake --build $build -j2 --target ${missing[*]}" >&2
  exit 2
fi
for c in python3 iperf3; do
  command -v "$c" >/dev/null || { echo "run.sh: $c not found (deploy/install-deps.sh installs it)" >&2; exit 2; }
done

# 10,000 held connections need 20,000+ descriptors in a one-process proxy. Raising the hard limit needs
# CAP_SYS_RESOURCE; without it take the hard limit as it is (bench.py then sizes the idle test to fit).
# Capped at 65536 so no tool sizes per-descriptor tables for a million descriptors.
want_nofile=65536
[ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$want_nofile" ] || ulimit -Hn "$want_nofile" 2>/dev/null || true
if [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$want_nofile" ]; then
  ulimit -n "$want_nofile"
else
  ulimit -n "$(ulimit -Hn)"
fi

tmp=$(mktemp -d /tmp/skproxy-bench.XXXXXX)
pidfile="$tmp/pids"
: > "$pidfile"

cleanup() {
  local rc=$?
  # Only PIDs this run recorded, and only while they still run the program recorded with them.
  local pid comm left=()
  while read -r pid comm; do
    [ -n "$pid" ] || continue
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
      kill -TERM "$pid" 2>/dev/null && left+=("$pid")
    fi
  done < "$pidfile"
  if [ ${#left[@]} -gt 0 ]; then
    for _ in $(seq 30); do
      local alive=0
      for pid in "${left[@]}"; do [ -d "/proc/$pid" ] && alive=1; done
      [ $alive -eq 0 ] && break
      sleep 0.1
    done
    for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  if [ -n "${BENCH_KEEP_TMP:-}" ]; then echo "run.sh: logs and configs kept in $tmp" >&2; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A full row takes about 2 minutes; the bound (3 min per row) only stops a run that hangs.
limit=$(( 300 + reps * 6 * 180 ))
timeout --foreground -s TERM "$limit" \
  python3 "$here/bench.py" --build "$build" --tmp "$tmp" --pidfile "$pidfile" "${pass[@]}"
