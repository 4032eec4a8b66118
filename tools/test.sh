#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need,
# then runs unit, property, loopback and real-client tests, and the
# conformance suite against the server on one core and on two.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-test-deps.sh
# Missing tools fail the real-client tests instead of skipping them.
export RINGCAST_REQUIRE_TOOLS=1
cargo test --all-targets
cargo build --quiet
tools/conformance-run.sh target/debug/ringcast --cpus 0
cores="$(nproc)"
if [ "$cores" -ge 2 ]; then
  tools/conformance-run.sh target/debug/ringcast --cpus 0-1
fi
