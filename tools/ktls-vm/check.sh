#!/usr/bin/env bash
# The kTLS acceptance check: proves that ringcast's HTTPS responses are
# encrypted by the kernel (kTLS), in a qemu VM that boots Debian's stock cloud
# kernel with tls.ko, since this host's kernel has no CONFIG_TLS.
# See docs/testing-ktls.md.
#
# Usage:
#   tools/ktls-vm/check.sh RINGCAST_BINARY   the real check (--ktls require, then auto)
#   tools/ktls-vm/check.sh --standin         the harness itself, against
#                                            `openssl s_server -WWW -sendfile`
#                                            with kTLS on (whole files only)
#   tools/ktls-vm/check.sh --standin-plain   the negative control: the same
#                                            s_server without kTLS, which
#                                            must FAIL the tls_stat check
# Options: --ktls-modes "require auto"  the --ktls values to run, one server run each
#          --kernel META                the guest kernel's Debian meta package
#                                       (default linux-image-cloud-amd64, 6.1;
#                                       linux-image-6.12-cloud-amd64 is 6.12);
#                                       also RINGCAST_VM_KERNEL
#          --timeout SECS               qemu's hard limit (default 150)
#
# It runs tools/ktls-vm/setup.sh (packages and the kernel, cached), makes the
# test CA with tools/test-ca.sh and three random files (8 MiB, 3 MiB, 10 KiB),
# then boots the VM (tools/ktls-vm/run.sh) with the server, the host's curl and
# their libraries, the certificates and the files. In the guest,
# tools/ktls-vm/guest-check.sh starts the server on 127.0.0.1:8443, fetches the
# whole 8 MiB file, 1 MiB and past-the-end ranges, a short range of the small
# file three times and four transfers on one keep-alive connection, every body
# compared byte for byte; it requires /proc/net/tls_stat's TlsTxSw or
# TlsCurrTxSw to move, and ringcast's /metrics to count kTLS connections
# (ringcast_ktls_connections_total > 0) and no user-space encryption
# (ringcast_tls_encrypted_bytes_total = 0). Exits 0 only when all of it passed.
# On Linux 6.5+ (cachestat, which the sendfile path needs) it also requires
# body bytes sent zero-copy. Takes 20-40 s with a warm cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

server=""
binary=""
modes="require auto"
timeout="${RINGCAST_VM_TIMEOUT:-150}"
while [ $# -gt 0 ]; do
  case "$1" in
    --standin) server=standin; shift ;;
    --standin-plain) server=standin-plain; shift ;;
    --ktls-modes) modes="${2:?}"; shift 2 ;;
    --timeout) timeout="${2:?}"; shift 2 ;;
    --kernel) export RINGCAST_VM_KERNEL="${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    *) binary="$1"; server=ringcast; shift ;;
  esac
done
if [ -z "$server" ]; then
  echo "usage: tools/ktls-vm/check.sh RINGCAST_BINARY | --standin" >&2
  exit 2
fi

"$here/setup.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/ktls-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$repo/tools/test-ca.sh" "$work/ca"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$work/big.bin"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$work/mid.bin"
head -c $((10 * 1024)) /dev/urandom >"$work/small.bin"
printf 'SERVER=%s\nKTLS_MODES="%s"\n' "$server" "$modes" >"$work/check.conf"

args=(
  --bin "$(command -v curl)"
  --file "$work/ca/ca.pem:/certs/ca.pem"
  --file "$work/ca/server.pem:/certs/server.pem"
  --file "$work/ca/server.key:/certs/server.key"
  --file "$work/big.bin:/srv/big.bin"
  --file "$work/mid.bin:/srv/mid.bin"
  --file "$work/small.bin:/srv/small.bin"
  --file "$work/check.conf:/check.conf"
  --script "$here/guest-check.sh"
  --timeout "$timeout"
)
if [ "$server" != ringcast ]; then
  args+=(--bin "$(command -v openssl)")
else
  [ -x "$binary" ] || { echo "check.sh: $binary is not an executable" >&2; exit 2; }
  args+=(--bin "$binary:/bin/ringcast")
fi

start=$SECONDS
status=0
"$here/run.sh" "${args[@]}" || status=$?
took=$((SECONDS - start))
case "$status" in
  0) echo "ktls-vm/check: PASS ($server, ${RINGCAST_VM_KERNEL:-linux-image-cloud-amd64}, ${took}s in the VM)" ;;
  124) echo "ktls-vm/check: FAIL: the VM did not finish in ${timeout}s" ;;
  125) echo "ktls-vm/check: FAIL: the VM ended without the check's result" ;;
  *) echo "ktls-vm/check: FAIL ($server, status $status, ${took}s in the VM; the failures are listed above)" ;;
esac
exit "$status"
