#!/usr/bin/env bash
# Makes a throwaway certificate authority and server certificates for the TLS
# tests, so every client verifies the server for real (no verification is
# turned off anywhere):
#
#   DIR/ca.pem                     the CA that clients trust
#   DIR/server.pem, server.key     ECDSA P-256, for localhost, 127.0.0.1 and ::1 (the default pair)
#   DIR/rsa.pem, rsa.key           RSA 2048, for rsa.test (picked by SNI)
#
# Usage: tools/test-ca.sh DIR   (existing files are kept, so it is cheap to call again)
set -euo pipefail
dir="${1:?usage: tools/test-ca.sh DIR}"
mkdir -p "$dir"
cd "$dir"
if [ -s ca.pem ] && [ -s server.pem ] && [ -s rsa.pem ]; then
  exit 0
fi
quiet() { "$@" >/dev/null 2>&1 || { echo "test-ca.sh: failed: $*" >&2; "$@"; exit 1; }; }

quiet openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days 3650 -subj "/CN=ringcast test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# issue NAME KEYSPEC SANS: a leaf signed by the CA.
issue() {
  local name="$1" keyspec="$2" sans="$3"
  local first="${sans%%,*}"
  quiet openssl req -new -newkey "$keyspec" ${4:+-pkeyopt "$4"} -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=${first#*:}"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$sans" >"$name.ext"
  quiet openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out "$name.pem" -days 3650 -extfile "$name.ext"
  rm -f "$name.csr" "$name.ext"
}
issue server ec "DNS:localhost,IP:127.0.0.1,IP:::1" ec_paramgen_curve:P-256
issue rsa rsa:2048 "DNS:rsa.test"
