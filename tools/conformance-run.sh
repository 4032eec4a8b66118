#!/usr/bin/env bash
# Runs tools/conformance.py (the black-box HTTP conformance and hostility
# suite) against a freshly started ringcast on a temporary root.
# Usage: tools/conformance-run.sh [path/to/ringcast] [extra ringcast flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/debug/ringcast}"
shift || true
[ -x "$bin" ] || cargo build --quiet
root="$(mktemp -d)"
log="$(mktemp)"
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$root" "$log"; }

"$bin" --root "$root" --listen 127.0.0.1:0 "$@" 2>"$log" &
pid=$!
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q "http://" "$log" && break
  sleep 0.05
done
addr="$(sed -n 's|.*http://\([^ ]*\).*|\1|p' "$log" | head -n1)"
[ -n "$addr" ] || { echo "ringcast did not start:"; cat "$log"; exit 1; }
python3 tools/conformance.py --root "$root" --target "$addr"
