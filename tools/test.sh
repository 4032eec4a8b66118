#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need,
# then runs unit, property, loopback and real-client tests (the loopback ones
# in both --io modes), the conformance suite against the server on one
# core, on two, and with --io direct, over HTTP and over HTTPS, and the kTLS check: the release build
# serving HTTPS in a qemu VM with Debian's kernels (6.1 and 6.12) and tls.ko
# (tools/ktls-vm/check.sh, docs/testing-ktls.md).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-test-deps.sh
# Missing tools fail the real-client tests instead of skipping them.
export RINGCAST_REQUIRE_TOOLS=1
cargo test --all-targets
# The loopback, hostile-client and real-client suites again with O_DIRECT reads.
RINGCAST_TEST_IO=direct cargo test --test http_loopback --test hostile --test media \
  --test real_clients --test direct_io
cargo build --quiet
tools/conformance-run.sh target/debug/ringcast --cpus 0
tools/conformance-run.sh target/debug/ringcast --cpus 0 --io direct
cores="$(nproc)"
if [ "$cores" -ge 2 ]; then
  tools/conformance-run.sh target/debug/ringcast --cpus 0-1
fi
# The same suite over HTTPS (user-space TLS here; kTLS is the VM's, below).
tools/conformance-run.sh --tls target/debug/ringcast --cpus 0
tools/conformance-run.sh --tls target/debug/ringcast --cpus 0 --io direct
if [ "$cores" -ge 2 ]; then
  tools/conformance-run.sh --tls target/debug/ringcast --cpus 0-1
fi
cargo build --release --quiet
tools/ktls-vm/check.sh target/release/ringcast
# Linux 6.12 has cachestat(2), which the sendfile path needs (on 6.1 ringcast
# reads and sends): sendfile under kTLS, once.
tools/ktls-vm/check.sh --kernel linux-image-6.12-cloud-amd64 --ktls-modes require \
  target/release/ringcast
