#!/usr/bin/env bash
# ringcast against nginx, on the same core, with the same loadgen workloads.
#
#   tools/bench-vs-nginx.sh [--quick] [--rounds N] [--duration SECS] [--out FILE] [--no-wrk] [--control] [--together] [--tls]
#
# Installs nginx and wrk (Debian packages) if missing, builds ringcast and
# loadgen (release), writes a 512 MiB file of random bytes, and starts ringcast
# and nginx (configured exactly as /work/shared/reference/nginx-media.conf, copied
# to tools/nginx-media.conf) pinned to the same CPU. loadgen runs on another CPU.
# Each workload runs against both servers in alternation, --rounds times (the
# order flips every round); for each run the server's CPU time (utime+stime
# from /proc/PID/stat) is read before and after. Prints a markdown table of
# medians: requests/s, MB/s, p99 and server CPU microseconds per request, with
# the ratios nginx/ringcast, and the spread of that CPU ratio over the rounds
# (each round's nginx run over the same round's ringcast run). Then (unless
# --no-wrk) checks that loadgen and wrk agree on requests/s, on 1 KiB GETs and
# on random 64 KiB ranges, against both.
#
# --control adds a second, identical nginx ("nginx-b") to every round: its
# CPU ratio against the first is what the machine's noise alone produces, the
# band a ringcast ratio must clear to mean anything (a third more run time).
#
# --together loads the servers at the same time instead of in turn: in each
# round every server gets its own loadgen, all of them started together on
# the load CPU, while the servers share the server CPU. A shared VM's speed
# drifts by tens of percent between runs seconds apart; run together, the
# servers meet the same drift, so each round's CPU ratio holds still even
# when the absolute numbers move. Requests/s then reflect a share of a CPU and
# are not comparable with the alternating table; the CPU ratios are. The
# fixed-rate row, which needs a core that idles, is left out.
#
# --tls serves and loads over HTTPS instead: both servers get the test CA's
# ECDSA P-256 certificate (tools/test-ca.sh), TLS 1.2 and 1.3, and session
# resumption (nginx: tickets and a shared session cache; ringcast: its own,
# --ktls off so both encrypt in user space). The rows are the same but for
# the fixed-rate one, plus full and resumed handshakes (loadgen --new-conn,
# --new-conn --resume, 1 KiB ranges). A second table gives each server's
# unit cost: CPU µs per MB for whole files, handshakes per CPU-second, and
# what the handshakes negotiated (version, suite, group). If the servers
# negotiated differently the run fails, after printing the tables.
#
# Default: 3 rounds of 5 s runs, about 6 minutes in all (3 without the wrk check).
# --quick: 3 rounds of 2 s runs, about 3 minutes.
# All load goes to 127.0.0.1; every run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
duration=5
out=""
wrk_check=1
control=0
together=0
tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=2 ;;
    --rounds) rounds="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-wrk) wrk_check=0 ;;
    --control) control=1 ;;
    --together) together=1 ;;
    --tls) tls=1 ;;
    -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
    *) echo "bench-vs-nginx: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# --- tools -------------------------------------------------------------------
source tools/bench-lib.sh
ensure_packages nginx wrk
# The packaged service, if the install started one, is not ours; we start our own.
mime_types=/etc/nginx/mime.types
[ -f "$mime_types" ] || { echo "bench-vs-nginx: $mime_types missing (is nginx installed?)" >&2; exit 1; }

build_binaries
choose_cpus

# --- files and servers ---------------------------------------------------------
dir=$(mktemp -d /tmp/ringcast-bench.XXXXXX)
root="$dir/root"
mkdir -p "$root" "$dir/nginx"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

echo "bench-vs-nginx: writing a 512 MiB file in $root" >&2
head -c 512M /dev/urandom > "$root/media.mp4"
head -c 1024 /dev/urandom > "$root/small.bin"
# Into the page cache the way an origin's files get there, by reading them
# from disk: written back, dropped, then read. Readahead caches large folios;
# the writes above leave 4 KiB pages, which cost a server that maps the file
# a TLB miss per short range (about 1% of ringcast's CPU at 1 KiB ranges,
# docs/benchmarks.md). Both servers serve from this page cache.
sync "$root/media.mp4"
dd if="$root/media.mp4" iflag=nocache count=0 status=none
cat "$root/media.mp4" > /dev/null

rc_port=$(free_port 18080)
ng_port=$(free_port $((rc_port + 1)))

# --tls: the test CA and its certificate for 127.0.0.1, the URL scheme, the
# flags loadgen needs to trust it, and nginx's ssl directives (one line).
scheme=http
load_tls=()
if [ "$tls" -eq 1 ]; then
  tools/test-ca.sh "$dir/ca"
  scheme=https
  load_tls=(--cacert "$dir/ca/ca.pem")
fi
nginx_ssl="ssl_certificate $dir/ca/server.pem; ssl_certificate_key $dir/ca/server.key;\
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on; ssl_session_cache shared:SSL:10m; ssl_session_timeout 1h;"

# One nginx, configured exactly as the reference, in its own directory:
# start_nginx DIR PORT; sets $started_pid.
start_nginx() {
  mkdir -p "$1"
  local tls_edits=()
  # --tls: the listener gets ssl, the http block the certificate and session settings.
  [ "$tls" -eq 0 ] || tls_edits=(-e "s|listen 127.0.0.1:@PORT@ |listen 127.0.0.1:@PORT@ ssl |"
                                  -e "/^http {/a\\  $nginx_ssl")
  sed "${tls_edits[@]}" -e "s|@ROOT@|$root|g" -e "s|@PORT@|$2|g" -e "s|@CPUMASK@|$cpumask|g" \
      -e "s|@DIR@|$1|g" tools/nginx-media.conf > "$1/nginx.conf"
  # taskset as well: with master_process off nginx never applies worker_cpu_affinity
  # (its single process stays on every CPU), so pin it the way ringcast is pinned.
  taskset -c "$server_cpu" nginx -p "$1" -e "$1/error.log" -c "$1/nginx.conf" >"$1/stdout.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}
start_nginx "$dir/nginx" "$ng_port"
ng_pid=$started_pid
servers="ringcast nginx"
if [ "$control" -eq 1 ]; then
  nb_port=$(free_port $((ng_port + 1)))
  start_nginx "$dir/nginx-b" "$nb_port"
  nb_pid=$started_pid
  servers="ringcast nginx nginx-b"
fi
if [ "$tls" -eq 1 ]; then
  rc_listen=(--listen off --tls-listen "127.0.0.1:$rc_port" --tls-cert "$dir/ca/server.pem"
             --tls-key "$dir/ca/server.key" --ktls off)
else
  rc_listen=(--listen "127.0.0.1:$rc_port")
fi
taskset -c "$server_cpu" "$ringcast" --root "$root" "${rc_listen[@]}" \
  --cpus "$server_cpu" >"$dir/ringcast.log" 2>&1 &
rc_pid=$!
pids+=("$rc_pid")

logs=("$dir/nginx/error.log" "$dir/ringcast.log")
wait_port "$rc_port" "${logs[@]}"
wait_port "$ng_port" "${logs[@]}"
[ "$control" -eq 0 ] || wait_port "$nb_port" "${logs[@]}" "$dir/nginx-b/error.log"

port_of() { case "$1" in ringcast) echo "$rc_port" ;; nginx) echo "$ng_port" ;; *) echo "$nb_port" ;; esac; }
pid_of() { case "$1" in ringcast) echo "$rc_pid" ;; nginx) echo "$ng_pid" ;; *) echo "$nb_pid" ;; esac; }

workloads=(
  "64 KiB ranges, 64 conns|media.mp4|--range-size 64KiB -c 64"
  "1 KiB ranges, 64 conns|media.mp4|--range-size 1KiB -c 64"
  "whole 512 MiB, 4 conns|media.mp4|-c 4"
  # Below saturation, where most origins run: the server's idle and wake-up
  # path is then part of every request's cost.
  "1 KiB ranges at 20,000/s, 64 conns|media.mp4|--range-size 1KiB -c 64 --rate 20000"
)
if [ "$tls" -eq 1 ]; then
  # The fixed-rate row is left out (20,000/s of TLS may be past a server's
  # capacity, and it measures the idle path, not TLS); the handshake rows join.
  workloads=(
    "${workloads[@]:0:3}"
    "full handshakes, 16 conns|media.mp4|--range-size 1KiB -c 16 --new-conn"
    "resumed handshakes, 16 conns|media.mp4|--range-size 1KiB -c 16 --new-conn --resume"
  )
fi
if [ "$together" -eq 1 ]; then
  # The fixed-rate row measures a core that idles between requests; servers
  # sharing the core never let it idle, so --together leaves that row out.
  closed_loop=()
  for w in "${workloads[@]}"; do [[ $w == *--rate* ]] || closed_loop+=("$w"); done
  workloads=("${closed_loop[@]}")
fi
results="$dir/results.tsv"
: > "$results"

# One loadgen run against one server; appends a line to $results.
measure() {
  local name=$1 path=$2 args=$3 server=$4 round=$5
  local pid before after report requests
  pid=$(pid_of "$server")
  before=$(ticks "$pid")
  # shellcheck disable=SC2086
  report=$("$loadgen" "$scheme://127.0.0.1:$(port_of "$server")/$path" $args "${load_tls[@]}" \
    --duration "${duration}s" --cpus "$load_cpu" --timeout 10s --json --quiet)
  after=$(ticks "$pid")
  requests=$(json_field requests "$report")
  # Columns 9-12 (read only by the --tls table): CPU µs per MB of body,
  # handshakes per CPU-second, resumed handshakes in %, what they negotiated.
  local t=$((after - before)) body handshakes resumed
  body=$(json_field body_bytes "$report")
  handshakes=$(json_field handshakes "$report"); handshakes=${handshakes:-0}
  resumed=$(json_field resumed "$report"); resumed=${resumed:-0}
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$name" "$server" "$round" \
    "$(json_field requests_per_sec "$report")" "$(json_field mb_per_sec "$report")" \
    "$(json_field p99 "$report")" \
    "$(awk -v t=$t -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')" \
    "$(json_field total "$report")" \
    "$(awk -v t=$t -v hz="$hz" -v b="$body" 'BEGIN { printf "%.1f", b ? t * 1e6 / hz / (b / 1e6) : 0 }')" \
    "$(awk -v t=$t -v hz="$hz" -v n="$handshakes" 'BEGIN { printf "%.0f", t ? n * hz / t : 0 }')" \
    "$(awk -v r="$resumed" -v n="$handshakes" 'BEGIN { printf "%.1f", n ? 100 * r / n : 0 }')" \
    "$(sed -n 's/.*"negotiated":"\([^"]*\)".*/\1/p' <<<"$report")")
  # One short append per run: concurrent runs (--together) never interleave.
  echo "$line" >> "$results"
  printf '  round %s  %-24s %-8s %s\n' "$round" "$name" "$server" "$(cut -f4-8 <<<"$line")" >&2
}

echo "bench-vs-nginx: warming up" >&2
for server in $servers; do
  "$loadgen" "$scheme://127.0.0.1:$(port_of "$server")/media.mp4" "${load_tls[@]}" -c 4 -d 1s --cpus "$load_cpu" --quiet >/dev/null
done

echo "bench-vs-nginx: $rounds rounds x ${#workloads[@]} workloads x $(wc -w <<<"$servers") servers, ${duration}s each (columns: req/s MB/s p99_us cpu_us/req errors)" >&2
for round in $(seq "$rounds"); do
  # The order flips every round, so neither server always runs first.
  if [ $((round % 2)) -eq 1 ]; then order=$servers; else order=$(tr ' ' '\n' <<<"$servers" | tac | xargs); fi
  for w in "${workloads[@]}"; do
    IFS='|' read -r name path args <<<"$w"
    if [ "$together" -eq 1 ]; then
      # Only these runs: a bare `wait` would also wait for the servers.
      runs=()
      for server in $order; do measure "$name" "$path" "$args" "$server" "$round" & runs+=($!); done
      wait "${runs[@]}"
    else
      for server in $order; do measure "$name" "$path" "$args" "$server" "$round"; done
    fi
  done
done

# Median of column $3 for workload $1 and server $2.
median() {
  awk -F'\t' -v w="$1" -v s="$2" -v c="$3" '$1 == w && $2 == s { print $c }' "$results" | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
total_errors() { awk -F'\t' -v w="$1" -v s="$2" '$1 == w && $2 == s { n += $8 } END { print n + 0 }' "$results"; }
# Requests/s: whole numbers, but two decimals for the few-per-second downloads.
rate() { awk -v r="$1" 'BEGIN { if (r < 100) printf "%.2f", r; else printf "%.0f", r }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# Each round's CPU-per-request ratio $2/$3 for workload $1, as "min-max"
# (rounds where either run is missing are skipped).
round_spread() {
  awk -F'\t' -v w="$1" -v a="$2" -v b="$3" '
    $1 == w && $2 == a { x[$3] = $7 }
    $1 == w && $2 == b { y[$3] = $7 }
    END {
      for (r in x) if ((r in y) && y[r] > 0) { v = x[r] / y[r]; if (n++ == 0 || v < lo) lo = v; if (n == 1 || v > hi) hi = v }
      if (n) printf "%.2f-%.2f", lo, hi; else print "-"
    }' "$results"
}

# One server's row of medians: server_row WORKLOAD SERVER LABEL.
server_row() {
  printf '| %s | %s | %s | %.1f | %.2f | %.1f | %s |\n' "$3" "$2" "$(rate "$(median "$1" "$2" 4)")" \
    "$(median "$1" "$2" 5)" "$(awk -v v="$(median "$1" "$2" 6)" 'BEGIN { print v / 1000 }')" \
    "$(median "$1" "$2" 7)" "$(total_errors "$1" "$2")"
}

# The ratios of two servers' medians: ratio_row WORKLOAD A B LABEL.
ratio_row() {
  local column cells=""
  for column in 4 5 6 7; do cells="$cells | $(ratio "$(median "$1" "$2" $column)" "$(median "$1" "$3" $column)")"; done
  printf '| | %s%s | %s |\n' "$4" "$cells" "$(round_spread "$1" "$2" "$3")"
}

table() {
  echo "| workload | server | requests/s | MB/s | p99 (ms) | server CPU µs/request | errors / CPU ratio per round |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  for w in "${workloads[@]}"; do
    IFS='|' read -r name _ _ <<<"$w"
    server_row "$name" ringcast "$name"
    server_row "$name" nginx ""
    ratio_row "$name" nginx ringcast "**nginx/ringcast**"
    if [ "$control" -eq 1 ]; then
      server_row "$name" nginx-b ""
      ratio_row "$name" nginx nginx-b "nginx/nginx-b (noise)"
    fi
  done
}


# loadgen against wrk on the same workloads, one load CPU, 64 connections,
# alternating, medians of requests/s: GETs of a 1 KiB file, and random aligned
# 64 KiB ranges of the 512 MiB file (wrk draws them in a Lua script).
cat > "$dir/ranges.lua" <<'LUA'
local size = 65536
local blocks = 512 * 1024 * 1024 / size
math.randomseed(os.time())
request = function()
  local first = math.random(0, blocks - 1) * size
  return wrk.format("GET", nil, { ["Range"] = "bytes=" .. first .. "-" .. (first + size - 1) })
end
LUA
wrk_checks=(
  "1 KiB GETs|small.bin||"
  "64 KiB ranges|media.mp4|--range-size 64KiB|-s $dir/ranges.lua"
)
wrk_table() {
  local agree="$dir/agree.tsv"
  : > "$agree"
  for round in $(seq "$rounds"); do
    for c in "${wrk_checks[@]}"; do
      IFS='|' read -r name path largs wargs <<<"$c"
      for server in ringcast nginx; do
        local url rps
        url="$scheme://127.0.0.1:$(port_of "$server")/$path"
        # shellcheck disable=SC2086
        rps=$(taskset -c "$load_cpu" wrk -t1 -c64 -d"${duration}s" $wargs "$url" | awk '/Requests\/sec/ { print $2 }')
        printf '%s\t%s\twrk\t%s\n' "$name" "$server" "$rps" >> "$agree"
        # shellcheck disable=SC2086
        rps=$(json_field requests_per_sec "$("$loadgen" "$url" $largs "${load_tls[@]}" -c 64 -d "${duration}s" --cpus "$load_cpu" --json --quiet)")
        printf '%s\t%s\tloadgen\t%s\n' "$name" "$server" "$rps" >> "$agree"
        printf '  round %s  %-14s %-8s wrk %s loadgen %s\n' "$round" "$name" "$server" \
          "$(tail -2 "$agree" | head -1 | cut -f4)" "$rps" >&2
      done
    done
  done
  echo "| workload | server | wrk requests/s | loadgen requests/s | loadgen/wrk |"
  echo "| --- | --- | ---: | ---: | ---: |"
  for c in "${wrk_checks[@]}"; do
    IFS='|' read -r name _ _ _ <<<"$c"
    for server in ringcast nginx; do
      local w l
      w=$(awk -F'\t' -v n="$name" -v s="$server" '$1 == n && $2 == s && $3 == "wrk" { print $4 }' "$agree" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
      l=$(awk -F'\t' -v n="$name" -v s="$server" '$1 == n && $2 == s && $3 == "loadgen" { print $4 }' "$agree" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
      printf '| %s | %s | %.0f | %.0f | %s |\n' "$name" "$server" "$w" "$l" "$(ratio "$l" "$w")"
    done
  done
}

if [ "$wrk_check" -eq 1 ]; then
  echo "bench-vs-nginx: loadgen against wrk on the same workloads" >&2
  agreement=$(wrk_table)
fi

# --tls: each server's unit cost, from the medians of columns 9-11, and
# what its handshakes negotiated (every distinct value over all its runs).
negotiated_by() { awk -F'\t' -v s="$1" '$2 == s && $12 != "" { print $12 }' "$results" | sort -u | paste -sd';' -; }
tls_table() {
  echo "| workload | server | server CPU µs/MB | handshakes/s | handshakes per CPU-second | resumed % |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  for w in "${workloads[@]}"; do
    IFS='|' read -r name _ args <<<"$w"
    for server in $servers; do
      local per_mb="-" per_cpu="-" resumed="-" per_sec="-"
      [[ $args == *--range-size* ]] || per_mb=$(median "$name" "$server" 9)
      if [[ $args == *--new-conn* ]]; then
        per_cpu=$(median "$name" "$server" 10)
        resumed=$(median "$name" "$server" 11)
        per_sec=$(rate "$(median "$name" "$server" 4)")
      fi
      printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$server" "$per_mb" "$per_sec" "$per_cpu" "$resumed"
    done
  done
  echo
  for server in $servers; do echo "- $server negotiated: $(negotiated_by "$server")"; done
}

report() {
  if [ "$together" -eq 1 ]; then
    echo "Medians of $rounds rounds of ${duration} s; in each round the servers were loaded at the same time (--together), all on CPU $server_cpu, each by its own loadgen, all on CPU $load_cpu."
  else
    echo "Medians of $rounds alternating rounds of ${duration} s per run; server on CPU $server_cpu, loadgen on CPU $load_cpu."
  fi
  echo "A ratio row's last cell is the lowest and highest of that ratio's per-round values (CPU per request)."
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(lscpu | sed -n 's/^Model name: *//p' | head -1), $cpus CPUs, Linux $(uname -r);"
  echo "$(nginx -v 2>&1 | sed 's/.*: //'), ringcast $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo
  table
  if [ "$tls" -eq 1 ]; then
    echo
    echo "Over TLS (ringcast --ktls off): unit costs (medians) and what the handshakes negotiated:"
    echo
    tls_table
  fi
  if [ "$wrk_check" -eq 1 ]; then
    echo
    echo "loadgen against wrk on the same workloads (64 connections; wrk -t1 and loadgen each on CPU $load_cpu; medians):"
    echo
    echo "$agreement"
  fi
}
report | tee ${out:+"$out"}

# Two servers measured on different TLS terms are not comparable: say so, and fail.
if [ "$tls" -eq 1 ]; then
  first=""
  for server in $servers; do
    n=$(negotiated_by "$server")
    if [ -z "$n" ]; then echo "bench-vs-nginx: FAILED: $server reported no TLS handshake" >&2; exit 1; fi
    if [ -z "$first" ]; then first=$n; elif [ "$n" != "$first" ]; then
      echo "bench-vs-nginx: FAILED: the servers negotiated different TLS parameters ($first vs $server's $n); the comparison is void" >&2
      exit 1
    fi
  done
fi
