#!/usr/bin/env bash
# Runs tools/conformance.py (the black-box HTTP conformance and hostility
# suite) against a freshly started ringcast on a temporary root.
# Usage: tools/conformance-run.sh [--tls] [path/to/ringcast] [extra ringcast flags...]
# --tls: the server also gets a TLS listener with a test CA's certificate
# (tools/test-ca.sh), and the suite runs over HTTPS against it, verifying
# the server's chain against that CA.
set -euo pipefail
cd "$(dirname "$0")/.."

tls=""
if [ "${1:-}" = "--tls" ]; then
  tls=1
  shift
fi
bin="${1:-target/debug/ringcast}"
shift || true
[ -x "$bin" ] || cargo build --quiet
root="$(mktemp -d)"
log="$(mktemp)"

certs="$(mktemp -d)"
scheme="http"
tls_flags=()
client_flags=()
if [ -n "$tls" ]; then
  tools/test-ca.sh "$certs"
  scheme="https"
  tls_flags=(--tls-listen 127.0.0.1:0 --tls-cert "$certs/server.pem" --tls-key "$certs/server.key")
  client_flags=(--tls --cacert "$certs/ca.pem")
fi
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$root" "$log" "$certs"
}

"$bin" --root "$root" --listen 127.0.0.1:0 ${tls_flags[@]+"${tls_flags[@]}"} "$@" 2>"$log" &
pid=$!
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q " $scheme://" "$log" && break
  sleep 0.05
done
addr="$(sed -n "s|.* $scheme://\([^ ]*\).*|\1|p" "$log" | head -n1)"
[ -n "$addr" ] || { echo "ringcast did not start:"; cat "$log"; exit 1; }
python3 tools/conformance.py --root "$root" --target "$addr" ${client_flags[@]+"${client_flags[@]}"}
