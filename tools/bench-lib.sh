# Shared by tools/bench-*.sh (sourced from the repository root): installing
# the comparison tools, building the binaries, choosing CPUs, and reading
# ports and CPU time. Each function reports under the calling script's name.

bench_name=$(basename "$0" .sh)

# Installs the Debian packages for whichever of the named commands is missing
# (command and package share the name: nginx, wrk, fio).
ensure_packages() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "$bench_name: installing ${missing[*]} (Debian packages)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Builds ringcast and loadgen (release) and sets $ringcast and $loadgen.
build_binaries() {
  cargo build --release --quiet --bin ringcast --bin loadgen
  ringcast=target/release/ringcast
  loadgen=target/release/loadgen
}

# Sets $cpus (how many), $server_cpu (0), $load_cpu (1, or 0 on a one-CPU
# machine) and $cpumask, nginx's worker_cpu_affinity mask for the server CPU.
choose_cpus() {
  cpus=$(nproc)
  server_cpu=0
  load_cpu=$((cpus > 1 ? 1 : 0))
  [ "$cpus" -gt 1 ] || echo "$bench_name: only one CPU: server and load generator share it" >&2
  # A binary mask: CPU n is 1 followed by n zeros.
  cpumask="1$(printf '%*s' "$server_cpu" '' | tr ' ' 0)"
}

# The first port from $1 up that nothing on 127.0.0.1 listens on.
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

# Waits up to 10 s for something to listen on 127.0.0.1:PORT; if nothing
# does, prints the given logs and exits: wait_port PORT [LOG...].
wait_port() {
  local port=$1; shift
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$bench_name: nothing listens on port $port; logs:" >&2
  [ $# -eq 0 ] || cat "$@" >&2 2>/dev/null || true
  exit 1
}

# utime + stime of a process in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name).
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)

# A number field of loadgen's --json output: json_field NAME JSON.
json_field() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p" <<<"$2"; }
