#!/usr/bin/env bash
# Installs, idempotently, every Debian package that building, testing and benchmarking skproxy needs.
# Safe to run again: packages already present are skipped, apt is only called when something is missing.
set -euo pipefail

BUILD_PACKAGES=(
  cmake g++ make pkg-config clang llvm bpftool
  libbpf-dev libelf-dev zlib1g-dev liburing-dev libabsl-dev prometheus-cpp-dev libcivetweb-dev libgtest-dev libyaml-cpp-dev libssl-dev libc-ares-dev
  # setcap: the container image gives the binary its capabilities as file capabilities
  libcap2-bin
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  # tests: the loss test drops segments with nftables inside a namespace it creates
  nftables iproute2 curl python3 procps
  # tests: the admin status page is checked in a headless browser
  chromium
  # tests: the container image is built and checked with podman, on a base image made with mmdebstrap
  podman mmdebstrap
  # tests: the systemd unit is checked with systemd-analyze verify
  systemd
  # bench peers and load tools
  haproxy nginx libnginx-mod-stream iperf3 wrk
  # the parser measurement of the http listener (bench/http_head_parse.cc)
  libhttp-parser-dev
)

# --build-only: what building needs, nothing more (the build stage of deploy/Dockerfile).
if [ "${1:-}" = "--build-only" ]; then PACKAGES=("${BUILD_PACKAGES[@]}"); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Debian haproxy and nginx packages start system services on install; the bench starts its own
# instances on loopback ports, so the system ones are stopped to leave the machine as it was.
for svc in haproxy nginx; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
