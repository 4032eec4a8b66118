#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages, if missing:
# ffmpeg/ffprobe and curl for the real-client tests, python3 for the
# conformance suite, chromium, Node.js and NSS's certutil (libnss3-tools, to
# make the private NSS database that trusts the test CA over HTTPS) for the
# browser test (tests/browser.rs), then the browser driver's pinned npm package
# (tools/browser/package-lock.json: playwright-core, which drives the
# system chromium and downloads no browser, and hls.js for the HLS player
# page tests/ingest_browser.rs serves), and the kTLS VM's packages and
# kernel (tools/ktls-vm/setup.sh). Idempotent and quiet when everything is
# there; needs root (or sudo) only when installing packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v chromium >/dev/null || need+=(chromium)
command -v certutil >/dev/null || need+=(libnss3-tools)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-test-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The browser driver's node_modules, when missing or not the locked versions
# of every dependency package.json names (playwright-core, hls.js).
browser=tools/browser
stale="$(cd "$browser" && node -p '
  const lock = require("./package-lock.json");
  const wanted = (name) => lock.packages[`node_modules/${name}`].version;
  const installed = (name) => {
    try { return require(`./node_modules/${name}/package.json`).version; } catch { return null; }
  };
  Object.keys(lock.packages[""].dependencies)
    .filter((name) => installed(name) !== wanted(name))
    .map((name) => `${name} ${wanted(name)}`)
    .join(", ");
')"
if [ -n "$stale" ]; then
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$node_major" -lt 20 ]; then
    echo "install-test-deps: warning: playwright-core wants Node.js 20 or newer, found $(node --version)" >&2
  fi
  echo "install-test-deps: npm ci in $browser ($stale)" >&2
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# qemu, busybox-static, cpio and Debian's cloud kernels (6.1 and 6.12) with
# tls.ko for the kTLS check (tools/ktls-vm/check.sh); cached, so quiet once done.
tools/ktls-vm/setup.sh
RINGCAST_VM_KERNEL=linux-image-6.12-cloud-amd64 tools/ktls-vm/setup.sh
