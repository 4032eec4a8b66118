#!/usr/bin/env bash
# Soak test: 10,000 concurrent connections against one ringcast core for a
# few minutes: mostly idle keep-alive players plus active 64 KiB range
# readers that verify every byte. Reports the server's RSS and open fds over
# time, and loadgen's p99 and errors at the end. Exits non-zero on any error.
#
# Usage: tools/soak.sh [DURATION]   (default 120s; e.g. tools/soak.sh 30s)
# Env:   IDLE (default 9400), ACTIVE (default 600), FILE_MB (default 256)
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-120s}"
idle="${IDLE:-9400}"
active="${ACTIVE:-600}"
file_mb="${FILE_MB:-256}"

# Each process needs a descriptor per connection: raise the limit here, for
# this script and its children only.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((idle + active + 200)) ]; then
  echo "soak: the hard open-files limit ($(ulimit -Hn)) is below $((idle + active + 200))" >&2
  exit 1
fi

cargo build --release --quiet --bin ringcast --bin loadgen
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/root"
head -c "$((file_mb * 1024 * 1024))" /dev/urandom > "$work/root/video.mp4"

taskset -c 0 target/release/ringcast --root "$work/root" --listen 127.0.0.1:0 --cpus 0 \
  --max-conns $((idle + active + 100)) --idle-timeout 1h --send-timeout 30s \
  --admin 127.0.0.1:0 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do grep -q "http://" "$work/server.log" && break; sleep 0.05; done
addr="$(sed -n 's|.*serving .* on http://\([^ ]*\) .*|\1|p' "$work/server.log" | head -n1)"
[ -n "$addr" ] || { cat "$work/server.log"; exit 1; }

sample() {
  local rss fds
  rss=$(awk '/VmRSS/{print $2}' "/proc/$server/status")
  fds=$(ls "/proc/$server/fd" | wc -l)
  echo "$rss $fds"
}
read -r rss_start _ < <(sample)
echo "soak: ringcast pid $server on $addr (CPU 0); $idle idle + $active active connections for $duration"

(
  while kill -0 "$server" 2>/dev/null; do
    read -r rss fds < <(sample)
    echo "soak: t=$(date +%H:%M:%S) rss=${rss}KiB fds=$fds"
    sleep 10
  done
) &
monitor=$!

status=0
target/release/loadgen "http://$addr/video.mp4" --cpus 1 --connections "$active" --idle "$idle" \
  --range-size 64KiB --verify "$work/root/video.mp4" --duration "$duration" --json > "$work/result.json" || status=$?
read -r rss_end fds_end < <(sample)
kill "$monitor" 2>/dev/null || true

python3 - "$work/result.json" "$rss_start" "$rss_end" "$fds_end" "$((idle + active))" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
rss_start, rss_end, fds, conns = (int(v) for v in sys.argv[2:6])
errors = result["errors"]["total"] + result["bad_responses"]
latency = result["latency_us"]
print(f"soak: {result['requests']} requests, {result['requests_per_sec']:.0f} req/s, {result['mb_per_sec']:.0f} MB/s, "
      f"idle held {result['idle_held']}/{result['idle_connections']}, errors {errors} {result['errors']}")
print(f"soak: latency p50 {latency['p50'] / 1000:.2f} ms, p99 {latency['p99'] / 1000:.2f} ms, "
      f"p99.9 {latency['p99.9'] / 1000:.2f} ms, max {latency['max'] / 1000:.2f} ms")
print(f"soak: server RSS {rss_start} -> {rss_end} KiB "
      f"({(rss_end - rss_start) * 1024 // conns} bytes per connection), open fds {fds}")
sys.exit(1 if errors else 0)
PY
exit $(( status || $? ))
