#!/usr/bin/env bash
# Hunts for a frozen core: runs many short saturating bursts (random 1 KiB
# ranges over 64 connections) against one ringcast core, and watches the
# server's CPU time while each burst runs. A second with requests pending and
# no CPU spent is a freeze: the script prints what the core was waiting in,
# the sockets' queues and its io_uring rings' fdinfo (which polls are armed),
# then pokes the core with a new connection. It exits non-zero if any burst
# froze or lost a request.
#
# This found the lost wake-up in vendor/glommio/PATCHES.md (change 4): about
# one burst in 30 froze before the fix.
#
# Usage: tools/freeze-hunt.sh [BURSTS] [ringcast flags...]   (default 100 bursts)
# Env:   RINGCAST=path hunts in that binary instead of a fresh release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/bench-lib.sh

bursts="${1:-100}"
shift || true
build_binaries
ringcast="${RINGCAST:-$ringcast}"
choose_cpus
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/root"
head -c $((512 * 1024 * 1024)) /dev/urandom > "$work/root/media.mp4"
# One MiB in eight leaves the page cache, so some ranges take the cold path
# (reads completed by other threads, which wake the core through an eventfd).
python3 - "$work/root/media.mp4" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
for mib in range(0, 512, 8):
    os.posix_fadvise(fd, mib << 20, 1 << 20, os.POSIX_FADV_DONTNEED)
PY
port=$(free_port 19400)
taskset -c "$server_cpu" "$ringcast" --root "$work/root" --listen "127.0.0.1:$port" \
  --cpus "$server_cpu" "$@" 2> "$work/server.log" &
server=$!
wait_port "$port" "$work/server.log"
url="http://127.0.0.1:$port/media.mp4"

# What a frozen core is doing, from outside.
diagnose() {
  echo "burst $1: the server spent no CPU for 1 s while load was running"
  for task in /proc/"$server"/task/*; do
    echo "  thread $(cat "$task/comm"): $(cat "$task/wchan")"
  done
  ss -tn "( sport = :$port )" | awk 'NR > 1 { n++; if ($2 > 0) waiting++ }
    END { printf "  server sockets: %d, with unread requests: %d\n", n, waiting }'
  for fd in /proc/"$server"/fd/*; do
    [[ "$(readlink "$fd")" == *io_uring* ]] || continue
    echo "  ring fd ${fd##*/}: $(grep -cE '^ +op=' "/proc/$server/fdinfo/${fd##*/}") ops armed" \
      "($(grep -E '^ +op=' "/proc/$server/fdinfo/${fd##*/}" | awk '{print $1}' | sort | uniq -c | xargs))"
  done
  curl -s -o /dev/null -m 2 -w "  a new connection got %{http_code} in %{time_total} s\n" "$url" ||
    echo "  a new connection got no answer"
}

failed=0
for burst in $(seq "$bursts"); do
  "$loadgen" "$url" --range-size 1KiB -c 64 -d 3s --cpus "$load_cpu" --timeout 20s \
    --json --quiet > "$work/report.json" &
  load=$!
  before=$(ticks "$server")
  still=0
  froze=0
  while kill -0 "$load" 2>/dev/null; do
    sleep 0.25
    now=$(ticks "$server")
    if [ "$now" = "$before" ]; then still=$((still + 1)); else still=0; fi
    before=$now
    if [ "$still" -eq 4 ]; then
      diagnose "$burst"
      froze=1
    fi
  done
  wait "$load" || true
  report="$(cat "$work/report.json")"
  errors=$(json_field total "$report")
  if [ "$froze" = 1 ] || [ "${errors:-1}" != 0 ]; then
    failed=$((failed + 1))
    echo "burst $burst: $(json_field requests_per_sec "$report") requests/s," \
      "$errors errors, slowest $(json_field max "$report") us"
  fi
done
echo "freeze-hunt: $failed of $bursts bursts froze or failed"
[ "$failed" -eq 0 ]
