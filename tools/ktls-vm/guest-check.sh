# The guest half of tools/ktls-vm/check.sh: busybox sh, run by the VM's /init
# (tools/ktls-vm/run.sh) as /guest.sh. Not meant to be called by hand.
#
# Reads /check.conf (written by check.sh):
#   SERVER=ringcast|standin|standin-plain   which server to test
#                             (standin-plain: s_server without kTLS, the
#                             negative control: its kTLS check must fail)
#   KTLS_MODES="require auto" the --ktls values, one ringcast run each
# and expects /bin/curl, /certs/{ca.pem,server.pem,server.key},
# /srv/{big,mid,small}.bin, and /bin/ringcast or /bin/openssl.
#
# Each server run: reads /proc/net/tls_stat, starts the server, waits for
# 127.0.0.1:8443, fetches with curl (the test CA trusted, never -k) and
# compares every body byte for byte with the expected slice of the file,
# then requires TlsTxSw/TlsCurrTxSw to have moved and, for ringcast, the
# admin /metrics to show kTLS connections and no user-space encryption, and,
# on Linux 6.5+ (cachestat, which ringcast's sendfile path needs), body bytes
# sent zero-copy.
# Prints "PASS: ..."/"FAIL: ..." lines and a summary; exits 1 on any failure.

. /check.conf

CA=/certs/ca.pem
BASE=https://localhost:8443
failures=0
passes=0
failed_list=""
out=/tmp/out
mkdir -p "$out"

pass() { passes=$((passes + 1)); echo "PASS: $*"; }
fail() { failures=$((failures + 1)); failed_list="$failed_list
  - $*"; echo "FAIL: $*"; }

# tls_stat NAME: the counter's value from /proc/net/tls_stat (-1 if absent).
tls_stat() { awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? -1 : v) }' /proc/net/tls_stat 2>/dev/null || echo -1; }

# wait_port PORT SECS: until something listens on 127.0.0.1:PORT (from /proc/net/tcp).
wait_port() {
  hex="$(printf '%04X' "$1")"
  i=0
  while [ "$i" -lt $(($2 * 10)) ]; do
    if awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/tcp; then
      return 0
    fi
    if [ -n "${server_pid:-}" ] && ! kill -0 "$server_pid" 2>/dev/null; then return 1; fi
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

# expect FILE START LEN OUT: bytes START..START+LEN-1 of FILE (LEN "-" = to the end).
expect() {
  if [ "$3" = "-" ]; then
    tail -c +$(($2 + 1)) "$1" >"$4"
  else
    tail -c +$(($2 + 1)) "$1" | head -c "$3" >"$4"
  fi
}

# fetch NAME PATH RANGE START LEN: GET PATH (with -r RANGE unless "-"), the
# body must equal bytes START.. (LEN bytes, or "-" to the end) of /srv/PATH.
fetch() {
  name="$1" path="$2" range="$3" start="$4" len="$5"
  set -- --silent --show-error --fail --max-time 60 --cacert "$CA" -o "$out/$name.body"
  if [ "$range" != "-" ]; then set -- "$@" -r "$range"; fi
  if ! curl "$@" "$BASE/$path" 2>"$out/$name.err"; then
    fail "$label: $name: curl $range $path: $(cat "$out/$name.err")"
    return
  fi
  expect "/srv/$path" "$start" "$len" "$out/$name.want"
  if cmp -s "$out/$name.body" "$out/$name.want"; then
    pass "$label: $name ($(wc -c <"$out/$name.body") bytes)"
  else
    fail "$label: $name: body differs from /srv/$path bytes $start+$len (got $(wc -c <"$out/$name.body") bytes)"
  fi
}

# keepalive: several ranges over one connection (curl reuses it; %{num_connects}
# counts the new connections each transfer made, which must add up to 1).
keepalive() {
  # (--next: -r is per transfer; the connection cache outlives it.)
  set -- --silent --show-error --fail --max-time 60 --cacert "$CA" -w '%{num_connects}\n'
  if ! curl "$@" -r 0-99999 -o "$out/ka1.body" "$BASE/big.bin" \
    --next "$@" -r 100-1123 -o "$out/ka2.body" "$BASE/small.bin" \
    --next "$@" -r 2000000- -o "$out/ka3.body" "$BASE/mid.bin" \
    --next "$@" -o "$out/ka4.body" "$BASE/small.bin" >"$out/ka.connects" 2>"$out/ka.err"; then
    fail "$label: keep-alive: curl: $(cat "$out/ka.err")"
    return
  fi
  expect /srv/big.bin 0 100000 "$out/ka1.want"
  expect /srv/small.bin 100 1024 "$out/ka2.want"
  expect /srv/mid.bin 2000000 - "$out/ka3.want"
  cp /srv/small.bin "$out/ka4.want"
  ok=1
  for n in 1 2 3 4; do
    cmp -s "$out/ka$n.body" "$out/ka$n.want" || { ok=0; fail "$label: keep-alive: transfer $n differs"; }
  done
  connects="$(awk '{ s += $1 } END { print s + 0 }' "$out/ka.connects")"
  if [ "$connects" -ne 1 ]; then
    ok=0
    fail "$label: keep-alive: 4 transfers took $connects connections, not 1"
  fi
  [ "$ok" -eq 0 ] || pass "$label: keep-alive (4 transfers on 1 connection)"
}

# metric SAMPLE FILE: the value of the sample whose name and labels are exactly
# SAMPLE (e.g. 'name' or 'name{path="copied"}'); the samples without a core
# label are the server's totals. -1 if absent.
metric() {
  awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? -1 : v) }' "$2"
}

start_standin() {
  # openssl s_server serving /srv with -WWW, records written by the kernel:
  # kTLS on through the config (Options = KTLS), the body by SSL_sendfile.
  # "$1" = plain: the same without kTLS (and so without sendfile).
  opts="Options = KTLS" sendfile=-sendfile
  if [ "${1:-}" = plain ]; then opts="" sendfile=""; fi
  cat >/tmp/ktls-openssl.cnf <<CNF
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = ssl_default
[ssl_default]
$opts
CNF
  (cd /srv && OPENSSL_CONF=/tmp/ktls-openssl.cnf exec openssl s_server -quiet \
    -accept 127.0.0.1:8443 -cert /certs/server.pem -key /certs/server.key \
    -WWW $sendfile -http_server_binmode >/tmp/server.log 2>&1) &
  server_pid=$!
}

start_ringcast() {
  ringcast --root /srv --listen off --tls-listen 127.0.0.1:8443 \
    --tls-cert /certs/server.pem --tls-key /certs/server.key --ktls "$1" \
    --admin 127.0.0.1:9090 --cpus 0 >/tmp/server.log 2>&1 &
  server_pid=$!
}

stop_server() {
  kill "$server_pid" 2>/dev/null
  i=0
  while kill -0 "$server_pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
}

# run_server LABEL START_FN [ARG]: one server run with its transfers and checks.
run_server() {
  label="$1"
  failures_before="$failures"
  tx_before="$(tls_stat TlsTxSw)"
  curr_before="$(tls_stat TlsCurrTxSw)"
  echo "--- $label: tls_stat before: TlsTxSw=$tx_before TlsCurrTxSw=$curr_before"
  "$2" ${3:+"$3"}
  if ! wait_port 8443 30; then
    fail "$label: the server did not listen on 127.0.0.1:8443: $(tail -n 20 /tmp/server.log)"
    stop_server
    return
  fi
  if [ "$SERVER" != ringcast ]; then
    # s_server -WWW: HTTP/1.0, whole files, one connection per request.
    fetch whole-big big.bin - 0 -
    fetch whole-mid mid.bin - 0 -
    for n in 1 2 3; do fetch "whole-small-$n" small.bin - 0 -; done
  else
    fetch whole-big big.bin - 0 -
    fetch range-1mib big.bin 1048576-2097151 1048576 1048576
    fetch range-open big.bin 5000000- 5000000 -
    fetch range-past-end big.bin 8000000-8999999 8000000 -
    fetch range-mid mid.bin 1000000-2999999 1000000 2000000
    for n in 1 2 3; do fetch "short-small-$n" small.bin 1024-2047 1024 1024; done
    keepalive
  fi
  tx_after="$(tls_stat TlsTxSw)"
  curr_after="$(tls_stat TlsCurrTxSw)"
  echo "--- $label: tls_stat after: TlsTxSw=$tx_after TlsCurrTxSw=$curr_after"
  if [ "$tx_after" -gt "$tx_before" ] || [ "$curr_after" -gt "$curr_before" ]; then
    pass "$label: kernel TLS TX used (TlsTxSw $tx_before -> $tx_after, TlsCurrTxSw $curr_before -> $curr_after)"
  else
    fail "$label: no kernel TLS: TlsTxSw $tx_before -> $tx_after, TlsCurrTxSw $curr_before -> $curr_after"
  fi
  if [ "$SERVER" = ringcast ]; then
    if curl --silent --show-error --fail --max-time 10 -o /tmp/metrics http://127.0.0.1:9090/metrics 2>/tmp/metrics.err; then
      ktls="$(metric ringcast_ktls_connections_total /tmp/metrics)"
      enc="$(metric ringcast_tls_encrypted_bytes_total /tmp/metrics)"
      echo "--- $label: metrics: ringcast_ktls_connections_total=$ktls ringcast_tls_encrypted_bytes_total=$enc" \
        "ringcast_ktls_fallbacks_total=$(metric ringcast_ktls_fallbacks_total /tmp/metrics)" \
        "body bytes zero_copy=$(metric 'ringcast_body_bytes_total{path="zero_copy"}' /tmp/metrics)" \
        "copied=$(metric 'ringcast_body_bytes_total{path="copied"}' /tmp/metrics)"
      if awk -v v="$ktls" 'BEGIN { exit !(v > 0) }'; then
        pass "$label: ringcast_ktls_connections_total = $ktls"
      else
        fail "$label: ringcast_ktls_connections_total = $ktls (want > 0; -1: missing)"
      fi
      if [ "$enc" = 0 ]; then
        pass "$label: ringcast_tls_encrypted_bytes_total = 0 (no user-space encryption)"
      else
        fail "$label: ringcast_tls_encrypted_bytes_total = $enc (want 0; -1: missing)"
      fi
      # sendfile (and so the zero-copy path) needs cachestat(2), Linux 6.5+:
      # without it ringcast cannot tell residency and reads and sends instead.
      zc="$(metric 'ringcast_body_bytes_total{path="zero_copy"}' /tmp/metrics)"
      if [ "$has_cachestat" = 1 ]; then
        if awk -v v="$zc" 'BEGIN { exit !(v > 0) }'; then
          pass "$label: sendfile under kTLS: $zc body bytes zero-copy"
        else
          fail "$label: no body bytes went zero-copy (sendfile) under kTLS: $zc"
        fi
      else
        echo "NOTE: $label: Linux $(uname -r) has no cachestat(2), so ringcast sends no file by sendfile here" \
          "(zero_copy=$zc); tools/ktls-vm/check.sh --kernel linux-image-6.12-cloud-amd64 tests that path"
      fi
    else
      fail "$label: GET http://127.0.0.1:9090/metrics: $(cat /tmp/metrics.err)"
    fi
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    fail "$label: the server exited during the run"
  fi
  stop_server
  if [ "$failures" -gt "$failures_before" ] && [ -s /tmp/server.log ]; then
    echo "--- $label: server output (last 30 lines):"
    tail -n 30 /tmp/server.log
  fi
}

# cachestat(2) came in Linux 6.5.
kver="$(uname -r)"
kmajor="${kver%%.*}"
kminor="${kver#*.}"
kminor="${kminor%%.*}"
has_cachestat=0
if [ "$kmajor" -gt 6 ] || { [ "$kmajor" -eq 6 ] && [ "$kminor" -ge 5 ]; }; then has_cachestat=1; fi

if [ "$SERVER" = standin ]; then
  run_server "standin openssl s_server -sendfile" start_standin
elif [ "$SERVER" = standin-plain ]; then
  run_server "standin openssl s_server without kTLS" start_standin plain
else
  for mode in $KTLS_MODES; do
    run_server "ringcast --ktls $mode" start_ringcast "$mode"
  done
fi

echo "ktls-vm: $passes passed, $failures failed"
if [ "$failures" -gt 0 ]; then
  echo "=== FAIL:$failed_list"
  exit 1
fi
echo "=== PASS"
exit 0
