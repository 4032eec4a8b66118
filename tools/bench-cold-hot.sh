#!/usr/bin/env bash
# Cold beside hot: does a reader of a cold (uncached) file stall the readers of
# a hot (cached) one? ringcast against nginx, on the same core.
#
#   tools/bench-cold-hot.sh [--quick] [--rounds N] [--duration SECS] [--rate R]
#                           [--cold-size SIZE] [--cache-dir DIR] [--out FILE]
#
# Installs nginx (Debian package) if missing, builds ringcast and loadgen
# (release), writes a 64 MiB hot file (read once, so it is in the page cache)
# and a --cold-size (default 4G) file of random bytes on disk. A background loop
# drops the cold file from the page cache (posix_fadvise DONTNEED, every 50 ms)
# while the cold load runs, so its reads really go to the disk.
#
# Servers, all pinned to CPU 0 (started side by side on their own ports, one
# measured at a time):
#   ringcast                  --cpus 0, default (buffered) I/O
#   ringcast --io direct      only if `ringcast --help` lists --io
#   nginx (sendfile, blocking)  tools/nginx-media.conf exactly
#   nginx (aio threads)       the same plus `aio threads;` (thread-pool reads),
#                             only if nginx is built --with-threads
# For each server, each round, two runs on CPU 1 (order of servers flips every round):
#   hot alone   loadgen --rate R (default 2000 req/s, open loop, coordinated
#               omission corrected) of random 64 KiB ranges of the hot file, 32 conns
#   with cold   the same hot load, and at the same time a closed-loop loadgen of
#               random 64 KiB ranges of the cold file, 16 conns
# The server's CPU time (utime+stime of all its threads, /proc/PID/stat) is read
# before and after each run. Prints a markdown table of medians over rounds: hot
# p50/p99/p99.9 alone and with cold, achieved hot rate, cold requests/s, server
# CPU µs per request (all requests of the run), errors.
#
# Default: 3 rounds of 10 s runs, about 5 minutes with four servers (plus writing
# the cold file the first time: 4 GiB, about 10-40 s). --quick: 2 rounds of 4 s,
# about 1.5 minutes.
# --cache-dir DIR keeps the cold file in DIR (on a disk, not tmpfs) and reuses it
# on the next run; without it everything is written to a temp dir under /tmp and
# removed on exit.
# All load goes to 127.0.0.1; every run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=10
rate=2000
cold_size=4G
cache_dir=""
out=""
hot_conns=32
cold_conns=16
range=64KiB
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rounds=2; duration=4 ;;
    --rounds) rounds="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --cold-size) cold_size="$2"; shift ;;
    --cache-dir) cache_dir="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "bench-cold-hot: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$rounds" "$duration" "$rate"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench-cold-hot: --rounds, --duration and --rate take positive whole numbers, not '$v'" >&2; exit 2; }
done
cold_bytes=$(numfmt --from=iec "${cold_size%B}" 2>/dev/null) ||
  { echo "bench-cold-hot: --cold-size '$cold_size' is not a size like 4G or 512M" >&2; exit 2; }
[ "$cold_bytes" -ge $((256 * 1024 * 1024)) ] ||
  { echo "bench-cold-hot: --cold-size must be at least 256M" >&2; exit 2; }

# --- tools -------------------------------------------------------------------
source tools/bench-lib.sh
ensure_packages nginx
# The packaged service, if the install started one, is not ours; we start our own.
mime_types=/etc/nginx/mime.types
[ -f "$mime_types" ] || { echo "bench-cold-hot: $mime_types missing (is nginx installed?)" >&2; exit 1; }
for tool in python3 taskset numfmt; do
  command -v "$tool" >/dev/null || { echo "bench-cold-hot: $tool is needed" >&2; exit 1; }
done

build_binaries
choose_cpus

# --- files -------------------------------------------------------------------
if [ -n "$cache_dir" ]; then
  mkdir -p "$cache_dir"
  cache_dir=$(cd "$cache_dir" && pwd)
  # The run dir lives in the cache dir, so the cold file can be hard-linked into the root.
  dir=$(mktemp -d "$cache_dir/run.XXXXXX")
else
  dir=$(mktemp -d /tmp/ringcast-coldhot.XXXXXX)
fi
root="$dir/root"
mkdir -p "$root"
pids=()        # servers
keeper_pid=""  # the page-cache dropper, while it runs
cold_pid=""    # the cold loadgen, while it runs
cleanup() {
  local pid
  for pid in "${pids[@]}" ${keeper_pid:+"$keeper_pid"} ${cold_pid:+"$cold_pid"}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fstype=$(stat -f -c %T "$dir")
case "$fstype" in
  tmpfs|ramfs) echo "bench-cold-hot: $dir is on $fstype: a cold file there is never cold; use --cache-dir on a disk" >&2; exit 1 ;;
esac

cold_name="cold-$cold_bytes.bin"
if [ -n "$cache_dir" ] && [ -f "$cache_dir/$cold_name" ] && [ "$(stat -c %s "$cache_dir/$cold_name")" -eq "$cold_bytes" ]; then
  echo "bench-cold-hot: reusing the cold file $cache_dir/$cold_name" >&2
else
  cold_target="${cache_dir:-$root}/$cold_name"
  avail=$(df --output=avail -B1 "$(dirname "$cold_target")" | tail -1)
  [ "$avail" -gt $((cold_bytes + 1024 * 1024 * 1024)) ] ||
    { echo "bench-cold-hot: not enough free space for a $cold_size cold file in $(dirname "$cold_target")" >&2; exit 1; }
  echo "bench-cold-hot: writing a $cold_size cold file of random bytes to $cold_target" >&2
  head -c "$cold_bytes" /dev/urandom > "$cold_target.part"
  sync "$cold_target.part"  # written back, so dropping it from the page cache really drops it
  mv "$cold_target.part" "$cold_target"
fi
if [ -n "$cache_dir" ]; then ln "$cache_dir/$cold_name" "$root/cold.bin"; else mv "$root/$cold_name" "$root/cold.bin"; fi
cold_file="$root/cold.bin"

head -c 64M /dev/urandom > "$root/hot.bin"
sync "$root/hot.bin"
cat "$root/hot.bin" > /dev/null  # into the page cache: every server serves it from there

# Keeps the cold file out of the page cache while it runs; returns once the
# first drop is done (dropping a whole cached 4 GiB file takes a while).
start_keeper() {
  local ready="$dir/keeper.ready"
  rm -f "$ready"
  taskset -c "$load_cpu" python3 - "$cold_file" "$ready" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
open(sys.argv[2], "w").close()
while True:
    time.sleep(0.05)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
PY
  keeper_pid=$!
  for _ in $(seq 300); do
    [ -e "$ready" ] && return 0
    kill -0 "$keeper_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-cold-hot: the page-cache dropper (python3 posix_fadvise) did not start" >&2
  exit 1
}
stop_keeper() {
  [ -n "$keeper_pid" ] || return 0
  kill "$keeper_pid" 2>/dev/null || true
  wait "$keeper_pid" 2>/dev/null || true
  keeper_pid=""
}
# Share of the cold file in the page cache, in percent (fincore, if there is one).
cold_cached() {
  command -v fincore >/dev/null || { echo "?"; return; }
  fincore -b -n -o RES "$cold_file" | awk -v s="$cold_bytes" '{ printf "%.1f", $1 * 100 / s }'
}
start_keeper
echo "bench-cold-hot: cold file in the page cache after dropping: $(cold_cached)%" >&2
stop_keeper

# --- servers -------------------------------------------------------------------
servers=()                # names, in table order
declare -A port_of pid_of
next_port=18180

start_ringcast() {
  local name=$1; shift
  local port log
  port=$(free_port "$next_port"); next_port=$((port + 1))
  log="$dir/$name.log"
  taskset -c "$server_cpu" "$ringcast" --root "$root" --listen "127.0.0.1:$port" \
    --cpus "$server_cpu" "$@" >"$log" 2>&1 &
  pids+=("$!")
  port_of[$name]=$port; pid_of[$name]=$!
  wait_port "$port" "$log"
  servers+=("$name")
}

# $2: a sed script applied to tools/nginx-media.conf (after the substitutions).
start_nginx() {
  local name=$1 extra=$2
  local port ndir
  port=$(free_port "$next_port"); next_port=$((port + 1))
  ndir="$dir/$name"
  mkdir -p "$ndir"
  sed -e "s|@ROOT@|$root|g" -e "s|@PORT@|$port|g" -e "s|@CPUMASK@|$cpumask|g" \
      -e "s|@DIR@|$ndir|g" -e "$extra" tools/nginx-media.conf > "$ndir/nginx.conf"
  # taskset as well: with master_process off nginx never applies worker_cpu_affinity
  # (its single process stays on every CPU), so pin it the way ringcast is pinned.
  # Its thread pool's threads inherit the pinning.
  taskset -c "$server_cpu" nginx -p "$ndir" -e "$ndir/error.log" -c "$ndir/nginx.conf" \
    >"$ndir/stdout.log" 2>&1 &
  pids+=("$!")
  port_of[$name]=$port; pid_of[$name]=$!
  wait_port "$port" "$ndir/error.log"
  servers+=("$name")
}

start_ringcast ringcast
if "$ringcast" --help | grep -q -- '--io'; then
  start_ringcast "ringcast-direct" --io direct
else
  echo "bench-cold-hot: ringcast has no --io flag: no 'ringcast --io direct' row" >&2
fi
start_nginx "nginx-blocking" ""
if nginx -V 2>&1 | grep -q -- --with-threads; then
  start_nginx "nginx-aio" 's|^\( *sendfile on;\)|\1 aio threads;|'
  grep -q 'aio threads;' "$dir/nginx-aio/nginx.conf" ||
    { echo "bench-cold-hot: could not add 'aio threads;' next to 'sendfile on;' in tools/nginx-media.conf" >&2; exit 1; }
else
  echo "bench-cold-hot: this nginx is built without --with-threads: no 'aio threads' row" >&2
fi

label() {
  case "$1" in
    ringcast) echo "ringcast (buffered)" ;;
    ringcast-direct) echo "ringcast (--io direct)" ;;
    nginx-blocking) echo "nginx (sendfile, blocking)" ;;
    nginx-aio) echo "nginx (sendfile, aio threads)" ;;
    *) echo "$1" ;;
  esac
}

# Fields of a loadgen --json report, tab-separated.
fields() {
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
l = r["latency_us"]
print(r["requests"], r["requests_per_sec"], l["p50"], l["p99"], l["p99.9"],
      r["errors"]["total"] + r["bad_responses"], r["missed"], sep="\t")' "$1"
}

results="$dir/results.tsv"
: > "$results"

# One run against one server: mode "alone" or "cold". Appends to $results:
# server mode round hot_rps p50 p99 p99.9 cold_rps cpu_us_per_req errors missed
measure() {
  local server=$1 mode=$2 round=$3
  local port pid before after hot cold_json=""
  port=${port_of[$server]}; pid=${pid_of[$server]}
  [ -d "/proc/$pid" ] || { echo "bench-cold-hot: $server (pid $pid) has exited" >&2; exit 1; }
  if [ "$mode" = cold ]; then start_keeper; fi
  before=$(ticks "$pid")
  if [ "$mode" = cold ]; then
    "$loadgen" "http://127.0.0.1:$port/cold.bin" --range-size "$range" -c "$cold_conns" \
      --duration "${duration}s" --cpus "$load_cpu" --timeout 10s --json --quiet >"$dir/cold.json" &
    cold_pid=$!
  fi
  hot=$("$loadgen" "http://127.0.0.1:$port/hot.bin" --range-size "$range" -c "$hot_conns" \
    --rate "$rate" --duration "${duration}s" --cpus "$load_cpu" --timeout 10s --json --quiet)
  if [ -n "$cold_pid" ]; then
    wait "$cold_pid" || { cold_pid=""; echo "bench-cold-hot: the cold loadgen against $server failed" >&2; exit 1; }
    cold_pid=""
    cold_json=$(cat "$dir/cold.json")
  fi
  after=$(ticks "$pid")
  stop_keeper
  local h_req h_rps h_p50 h_p99 h_p999 h_err h_missed c_req=0 c_rps=0 c_err=0
  IFS=$'\t' read -r h_req h_rps h_p50 h_p99 h_p999 h_err h_missed <<<"$(fields "$hot")"
  if [ -n "$cold_json" ]; then
    IFS=$'\t' read -r c_req c_rps _ _ _ c_err _ <<<"$(fields "$cold_json")"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$round" \
    "$h_rps" "$h_p50" "$h_p99" "$h_p999" "$c_rps" \
    "$(awk -v t=$((after - before)) -v hz="$hz" -v n=$((h_req + c_req)) 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')" \
    $((h_err + c_err)) "$h_missed" >> "$results"
  local f
  IFS=$'\t' read -r -a f <<<"$(tail -1 "$results" | cut -f4-)"
  printf '  round %s  %-16s %-5s hot %7s req/s  p50 %6s  p99 %7s  p99.9 %7s us | cold %6s req/s | %5s cpu_us/req  errors %s  missed %s\n' \
    "$round" "$server" "$mode" "${f[@]}" >&2
}

echo "bench-cold-hot: warming up" >&2
for server in "${servers[@]}"; do
  "$loadgen" "http://127.0.0.1:${port_of[$server]}/hot.bin" --range-size "$range" -c 4 -d 1s \
    --cpus "$load_cpu" --quiet >/dev/null
done

echo "bench-cold-hot: $rounds rounds x ${#servers[@]} servers x (alone, with cold), ${duration}s each" >&2
for round in $(seq "$rounds"); do
  order=("${servers[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[$i]}"); done
  fi
  for server in "${order[@]}"; do
    measure "$server" alone "$round"
    measure "$server" cold "$round"
  done
done
echo "bench-cold-hot: cold file in the page cache after the runs (keeper stopped): $(cold_cached)%" >&2

# --- report --------------------------------------------------------------------
# Median of column $3 for server $1, mode $2.
median() {
  awk -F'\t' -v s="$1" -v m="$2" -v c="$3" '$1 == s && $2 == m { print $c }' "$results" | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
total() { awk -F'\t' -v s="$1" -v c="$2" '$1 == s { n += $c } END { print n + 0 }' "$results"; }
ms() { awk -v v="$1" 'BEGIN { printf "%.3f", v / 1000 }'; }

table() {
  echo "| server | hot p50 (alone) | hot p99 (alone) | hot p99.9 (alone) | hot p50 (with cold) | hot p99 (with cold) | hot p99.9 (with cold) | hot p99 with/alone | hot req/s alone / with cold | cold req/s | server CPU µs/req alone / with cold | errors, missed |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  local s
  for s in "${servers[@]}"; do
    local a50 a99 a999 c50 c99 c999
    a50=$(median "$s" alone 5); a99=$(median "$s" alone 6); a999=$(median "$s" alone 7)
    c50=$(median "$s" cold 5); c99=$(median "$s" cold 6); c999=$(median "$s" cold 7)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f | %.0f | %.1f / %.1f | %s, %s |\n' \
      "$(label "$s")" "$(ms "$a50")" "$(ms "$a99")" "$(ms "$a999")" \
      "$(ms "$c50")" "$(ms "$c99")" "$(ms "$c999")" \
      "$(awk -v a="$a99" -v b="$c99" 'BEGIN { if (a > 0) printf "%.1fx", b / a; else print "-" }')" \
      "$(median "$s" alone 4)" "$(median "$s" cold 4)" "$(median "$s" cold 8)" \
      "$(median "$s" alone 9)" "$(median "$s" cold 9)" "$(total "$s" 10)" "$(total "$s" 11)"
  done
}

report() {
  echo "Cold beside hot: medians of $rounds alternating rounds of ${duration} s per run; servers on CPU $server_cpu, loadgens on CPU $load_cpu."
  echo "Hot: loadgen --rate $rate (open loop, latency from the scheduled send), $hot_conns connections, random $range ranges of a 64 MiB cached file."
  echo "Cold: closed-loop loadgen, $cold_conns connections, random $range ranges of a $cold_size file kept out of the page cache (fadvise DONTNEED every 50 ms), on $fstype."
  echo "Latencies in ms. CPU µs/req counts hot and cold requests. Errors and missed (open-loop requests never sent) summed over all runs."
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p' | head -1), $cpus CPUs, Linux $(uname -r);"
  echo "$(nginx -v 2>&1 | sed 's/.*: //'), ringcast $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo
  table
}
report | tee ${out:+"$out"}
