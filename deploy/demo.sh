#!/usr/bin/env bash
# Installs what is missing, builds, and runs skproxy on its built-in default config in front of a demo
# upstream (python3's http.server on 127.0.0.1:8080). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh skproxy

demo_root=$(mktemp -d)
trap 'kill "${upstream_pid:-}" "${proxy_pid:-}" 2>/dev/null || true; rm -rf "$demo_root"' EXIT INT TERM
echo "hello from the demo upstream, through skproxy" > "$demo_root/index.html"
python3 -m http.server 8080 --bind 127.0.0.1 --directory "$demo_root" >/dev/null 2>&1 &
upstream_pid=$!

log="$demo_root/skproxy.log"
build/skproxy 2>"$log" &
proxy_pid=$!
for _ in $(seq 100); do
  grep -q "skproxy ready" "$log" && break
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
cat "$log"
echo
echo "skproxy is up (default config: 0.0.0.0:10000 -> 127.0.0.1:8080). Try:"
echo "  curl http://127.0.0.1:10000/"
echo "  curl http://127.0.0.1:9901/metrics"
echo "Ctrl-C stops it."
tail -n0 -f "$log" --pid="$proxy_pid" &
wait "$proxy_pid"
