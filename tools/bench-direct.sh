#!/usr/bin/env bash
# A cold sequential stream: the device's O_DIRECT read throughput (fio)
# against ringcast --io direct and ringcast --io buffered serving the same file.
#
#   tools/bench-direct.sh [--rounds N] [--size 4G] [--dir DIR] [--out FILE]
#
# Installs fio (Debian package) if missing, builds ringcast and loadgen
# (release), and writes a file of random bytes in DIR (default
# /var/tmp/ringcast-bench-direct, kept for the next run; it must be on a real
# disk, not tmpfs). Each round measures, in turn:
#   - fio sequential O_DIRECT reads (io_uring) at three shapes; the best is
#     taken as the device's throughput;
#   - one whole-file download from ringcast --io direct (its default read
#     shape) and from ringcast --io buffered with the file dropped from the
#     page cache first (posix_fadvise DONTNEED), by loadgen on another CPU.
# Prints a markdown table of medians: MB/s, the share of the device's
# throughput, and server CPU seconds per GB. About 1.5 minutes per round
# with a 4 GiB file on a ~600 MB/s device. Everything talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
size=4G
dir=/var/tmp/ringcast-bench-direct
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift ;;
    --size) size="$2"; shift ;;
    --dir) dir="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench-direct: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

source tools/bench-lib.sh
ensure_packages fio
build_binaries
choose_cpus

mkdir -p "$dir"
file="$dir/cold.bin"
want_bytes=$(numfmt --from=iec "$size")
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" -ne "$want_bytes" ]; then
  echo "bench-direct: writing $size of random bytes to $file" >&2
  head -c "$want_bytes" /dev/urandom > "$file"
  sync
fi
if [ "$(stat -f -c %T "$dir")" = tmpfs ]; then
  echo "bench-direct: $dir is on tmpfs; O_DIRECT needs a real disk (use --dir)" >&2
  exit 1
fi

drop_cache() {
  python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$file"
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT


start_ringcast() { # mode port
  taskset -c "$server_cpu" "$ringcast" --root "$dir" --listen "127.0.0.1:$2" \
    --cpus "$server_cpu" --io "$1" >"$dir/ringcast-$1.log" 2>&1 &
  pids+=("$!")
  wait_port "$2" "$dir/ringcast-$1.log"
}
direct_port=$(free_port 18380)
start_ringcast direct "$direct_port"
direct_pid=${pids[-1]}
buffered_port=$(free_port $((direct_port + 1)))
start_ringcast buffered "$buffered_port"
buffered_pid=${pids[-1]}

# One fio shape: prints MB/s (10^6 bytes).
fio_mbps() { # block-size iodepth
  fio --name=seq --filename="$file" --rw=read --direct=1 --ioengine=io_uring \
    --bs="$1" --iodepth="$2" --runtime=6 --time_based --output-format=terse \
    --terse-version=3 2>/dev/null | awk -F';' '{printf "%.1f\n", $7 * 1.024 / 1000}'
}

# One whole-file download: prints "MB/s cpu_s_per_GB".
download() { # port pid
  local before after result
  before=$(ticks "$2")
  result=$(taskset -c "$load_cpu" "$loadgen" --cpus "$load_cpu" -c 1 -d 1s --timeout 30s \
    --json -q "http://127.0.0.1:$1/cold.bin")
  after=$(ticks "$2")
  local mbps bytes
  mbps=$(json_field mb_per_sec "$result")
  bytes=$(json_field body_bytes "$result")
  awk -v m="$mbps" -v t=$((after - before)) -v hz="$hz" -v b="$bytes" \
    'BEGIN { printf "%.1f %.2f\n", m, (t / hz) / (b / 1e9) }'
}

declare -a fio_best direct_mbps direct_cpu buffered_mbps buffered_cpu fio_shapes
for round in $(seq "$rounds"); do
  best=0; shapes=""
  for shape in "128k 1" "512k 4" "1M 16"; do
    # shellcheck disable=SC2086
    mbps=$(fio_mbps $shape)
    shapes+="${shape// /\/qd}=${mbps} "
    best=$(awk -v a="$best" -v b="$mbps" 'BEGIN { print (b > a) ? b : a }')
  done
  fio_best+=("$best"); fio_shapes+=("$shapes")
  read -r m c < <(download "$direct_port" "$direct_pid")
  direct_mbps+=("$m"); direct_cpu+=("$c")
  drop_cache
  read -r m c < <(download "$buffered_port" "$buffered_pid")
  buffered_mbps+=("$m"); buffered_cpu+=("$c")
  echo "bench-direct: round $round: fio ${shapes}(best $best), direct ${direct_mbps[-1]} MB/s, buffered cold ${buffered_mbps[-1]} MB/s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
fio_m=$(median "${fio_best[@]}")
share() { awk -v a="$1" -v b="$fio_m" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
d_m=$(median "${direct_mbps[@]}"); b_m=$(median "${buffered_mbps[@]}")
table=$(cat <<EOF
| cold sequential read of a $size file (median of $rounds) | MB/s | of device | server CPU s/GB |
|---|---:|---:|---:|
| fio O_DIRECT, best of 128k/qd1, 512k/qd4, 1M/qd16 (the device) | $fio_m | 100% | - |
| ringcast --io direct, one download | $d_m | $(share "$d_m") | $(median "${direct_cpu[@]}") |
| ringcast --io buffered, one download, cache dropped first | $b_m | $(share "$b_m") | $(median "${buffered_cpu[@]}") |
EOF
)
echo "$table"
[ -z "$out" ] || echo "$table" > "$out"
