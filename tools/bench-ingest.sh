#!/usr/bin/env bash
# Uploads, ringcast against nginx's dav module on the same core.
#
#   tools/bench-ingest.sh [--rounds N] [--size MIB]
#
# Each round, per server (pinned to CPU 0; curl and wrk on CPU 1):
#   - PUT a SIZE MiB file (from /dev/shm, Content-Length) with curl, and
#     report MB/s and server CPU (utime + stime) per MB;
#   - the same with chunked framing (ringcast decodes and writes; nginx
#     buffers to its client_body_temp_path and renames);
#   - hot-GET p99 (wrk -c4, 64 KiB file) alone, then beside the upload.
# Prints one line per measurement and the medians at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
size=1024
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --size) size="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench-ingest: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

source tools/bench-lib.sh
ensure_packages nginx wrk curl
build_binaries
choose_cpus

work=$(mktemp -d /tmp/bench-ingest.XXXXXX)
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/root/live" "$work/nginx/tmp"
head -c $((64 * 1024)) /dev/urandom > "$work/root/hot.bin"
body=/dev/shm/bench-ingest-body.$$
head -c $((size * 1024 * 1024)) /dev/urandom > "$body"
trap 'cleanup; rm -f "$body"' EXIT
echo "bench-token" > "$work/tokens"
hz=$(getconf CLK_TCK)

start_ringcast() {
  port=$(free_port 18600)
  taskset -c "$server_cpu" "$ringcast" --root "$work/root" --listen "127.0.0.1:$port" \
    --cpus "$server_cpu" --ingest /live/ --ingest-tokens "$work/tokens" \
    --max-upload $((size * 2 * 1024 * 1024)) 2>"$work/ringcast.log" &
  server_pid=$!
  wait_port "$port" "$work/ringcast.log"
}

start_nginx() {
  port=$(free_port 18700)
  sed -e "s#@ROOT@#$work/root#; s#@PORT@#$port#; s#@CPUMASK@#$cpumask#; s#@DIR@#$work/nginx#" \
    tools/nginx-media.conf > "$work/nginx/nginx.conf"
  # dav: PUT/DELETE, bodies buffered to a temp file in the same filesystem
  # and renamed into place, as ringcast does.
  sed -i "s#server { listen 127.0.0.1:$port reuseport backlog=4096; root $work/root; }#server { listen 127.0.0.1:$port reuseport backlog=4096; root $work/root; location /live/ { dav_methods PUT DELETE; create_full_put_path on; client_max_body_size 0; client_body_temp_path $work/root/live/.tmp; } }#" "$work/nginx/nginx.conf"
  mkdir -p "$work/root/live/.tmp"
  taskset -c "$server_cpu" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>"$work/nginx.log" &
  server_pid=$!
  wait_port "$port" "$work/nginx.log" "$work/nginx/error.log"
}

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# upload FRAMING -> "MB/s CPU-ms-per-MB"
upload() {
  local framing=$1 before after t0 t1 extra=()
  [ "$framing" = chunked ] && extra=(-H "Transfer-Encoding: chunked")
  before=$(ticks "$server_pid"); t0=$(date +%s.%N)
  taskset -c "$load_cpu" curl -sS -o /dev/null -f -T "$body" "${extra[@]}" \
    -H "Authorization: Bearer bench-token" "http://127.0.0.1:$port/live/up.bin"
  t1=$(date +%s.%N); after=$(ticks "$server_pid")
  awk -v s="$size" -v a="$t0" -v b="$t1" -v c=$((after - before)) -v hz="$hz" \
    'BEGIN { mb = s * 1.048576; printf "%.0f %.3f\n", mb / (b - a), c * 1000 / hz / mb }'
}

# hot_p99 -> wrk's p99 in ms for 5 s of GETs of the hot file
hot_p99() {
  taskset -c "$load_cpu" wrk -t1 -c4 -d5s --latency "http://127.0.0.1:$port/hot.bin" |
    awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; printf "%.3f\n", v }'
}

results="$work/results"
: > "$results"
for round in $(seq "$rounds"); do
  for server in ringcast nginx; do
    "start_$server"
    read -r mbs cpu < <(upload length)
    echo "$server length $mbs $cpu" >> "$results"
    read -r cmbs ccpu < <(upload chunked)
    echo "$server chunked $cmbs $ccpu" >> "$results"
    alone=$(hot_p99)
    ( while :; do upload length >/dev/null || true; done ) &
    uploader=$!
    sleep 1
    beside=$(hot_p99)
    kill "$uploader" 2>/dev/null || true; wait "$uploader" 2>/dev/null || true
    pkill -f "curl -sS -o /dev/null -f -T $body" 2>/dev/null || true
    echo "$server p99 $alone $beside" >> "$results"
    printf 'round %s %-8s  Content-Length %5s MB/s %6s ms CPU/MB   chunked %5s MB/s %6s ms CPU/MB   hot-GET p99 %s ms alone, %s ms beside an upload\n' \
      "$round" "$server" "$mbs" "$cpu" "$cmbs" "$ccpu" "$alone" "$beside"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
    rm -f "$work/root/live/up.bin"
  done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo "medians over $rounds rounds ($size MiB uploads):"
for server in ringcast nginx; do
  printf '  %-8s Content-Length %s MB/s %s ms CPU/MB; chunked %s MB/s %s ms CPU/MB; hot-GET p99 %s ms alone, %s ms beside\n' "$server" \
    "$(awk -v s=$server '$1 == s && $2 == "length" { print $3 }' "$results" | median)" \
    "$(awk -v s=$server '$1 == s && $2 == "length" { print $4 }' "$results" | median)" \
    "$(awk -v s=$server '$1 == s && $2 == "chunked" { print $3 }' "$results" | median)" \
    "$(awk -v s=$server '$1 == s && $2 == "chunked" { print $4 }' "$results" | median)" \
    "$(awk -v s=$server '$1 == s && $2 == "p99" { print $3 }' "$results" | median)" \
    "$(awk -v s=$server '$1 == s && $2 == "p99" { print $4 }' "$results" | median)"
done
