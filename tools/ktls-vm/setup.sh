#!/usr/bin/env bash
# Prepares the kTLS test VM (tools/ktls-vm/check.sh, docs/testing-ktls.md).
#
# The host kernel here has no CONFIG_TLS, so kernel TLS is tested in a qemu
# guest (TCG, no KVM) that boots Debian's stock cloud kernel. This script:
#   1. installs, only if missing, Debian's qemu-system-x86 (qemu-system-x86_64),
#      busybox-static, cpio and curl;
#   2. resolves the meta package linux-image-cloud-amd64 to the versioned
#      kernel package it depends on and `apt-get download`s that .deb into the
#      cache dir;
#   3. extracts from it vmlinuz, tls.ko and the crypto modules behind the kTLS
#      ciphers (gcm, ccm, chacha20poly1305, ...), each with the modules it
#      depends on (read from the module's .modinfo, as the .deb has no
#      modules.dep), decompressed to plain .ko files that busybox insmod
#      loads, in load order.
#
# Usage: [RINGCAST_VM_KERNEL=META] tools/ktls-vm/setup.sh
#   (prints nothing when all is in place). META is the kernel meta package,
#   linux-image-cloud-amd64 (6.1) by default; bookworm also has
#   linux-image-6.12-cloud-amd64 (6.12, which has cachestat(2)).
#
# Cache: ${RINGCAST_VM_CACHE:-/var/cache/ringcast-vm}
#   deb/*.deb              the downloaded kernel packages
#   META/vmlinuz           the guest kernel
#   META/modules/*.ko      tls.ko, the crypto modules and their dependencies, uncompressed
#   META/modules.order     the module file names, dependencies first
#   META/release           the kernel release (uname -r in the guest)
# Idempotent: with META/release present nothing is downloaded again. Delete
# the cache dir to start over (e.g. to pick up a newer kernel).
# Needs root (or sudo) only when installing packages.
set -euo pipefail

cache="${RINGCAST_VM_CACHE:-/var/cache/ringcast-vm}"
meta="${RINGCAST_VM_KERNEL:-linux-image-cloud-amd64}"
kdir="$cache/$meta"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# The static busybox (/bin/busybox of busybox-static), not the dynamic one.
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
  || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v curl >/dev/null || need+=(curl)
# dpkg-deb and xz come with every Debian system; named for completeness.
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v xz >/dev/null || need+=(xz-utils)

updated=0
apt_update() {
  if [ "$updated" -eq 0 ]; then
    $sudo apt-get update -qq
    updated=1
  fi
}

if [ "${#need[@]}" -gt 0 ]; then
  echo "ktls-vm/setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -s "$kdir/release" ] && [ -s "$kdir/vmlinuz" ] && [ -s "$kdir/modules.order" ]; then
  exit 0
fi

$sudo mkdir -p "$cache"
if [ -n "$sudo" ]; then $sudo chown "$(id -u):$(id -g)" "$cache"; fi

# The versioned kernel package behind the meta package.
resolve() {
  apt-cache depends "$meta" 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg="$(resolve)"
if [ -z "$pkg" ]; then
  apt_update
  pkg="$(resolve)"
fi
if [ -z "$pkg" ]; then
  echo "ktls-vm/setup: cannot resolve $meta to a kernel package" >&2
  exit 1
fi

debdir="$cache/deb"
mkdir -p "$debdir"
if ! ls "$debdir/${pkg}_"*.deb >/dev/null 2>&1; then
  echo "ktls-vm/setup: downloading $pkg" >&2
  (cd "$debdir" && apt-get download -qq "$pkg" 2>/dev/null) || {
    apt_update
    (cd "$debdir" && apt-get download -qq "$pkg")
  }
fi
deb="$(ls "$debdir/${pkg}_"*.deb | head -n 1)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/x"

vmlinuz="$(ls "$tmp"/x/boot/vmlinuz-* | head -n 1)"
release="${vmlinuz##*/vmlinuz-}"
moddir="$tmp/x/lib/modules/$release"
[ -d "$moddir" ] || moddir="$tmp/x/usr/lib/modules/$release"
[ -d "$moddir/kernel" ] || { echo "ktls-vm/setup: no modules in $deb" >&2; exit 1; }

# The package ships no modules.dep (depmod runs at install time), so the
# dependencies come from each module's own .modinfo "depends=" field. Besides
# tls.ko the guest needs the crypto modules behind the kTLS ciphers: the kernel
# would request_module() them, and the initramfs has no modprobe setup.
# AES-GCM: gcm, ctr, ghash (+ AES-NI/CLMUL versions, qemu -cpu max has both);
# ChaCha20-Poly1305: chacha20poly1305, chacha, poly1305; AES-CCM: ccm.
wanted=(tls gcm ctr seqiv ghash-generic ccm chacha20poly1305 chacha_generic poly1305_generic
  aesni-intel ghash-clmulni-intel chacha-x86_64 poly1305-x86_64)
find "$moddir/kernel" -name '*.ko*' >"$tmp/all"
modfile() { # NAME -> path of its .ko[.xz], "-" and "_" alike; empty if builtin/absent
  local n="${1//-/_}"
  awk -v n="$n" '{ b=$0; sub(/.*\//, "", b); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", b);
    gsub(/-/, "_", b); if (b == n) { print; exit } }' "$tmp/all"
}
unpack() { # SRC DEST: the module, decompressed
  case "$1" in
    *.ko.xz) xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -qdc "$1" >"$2" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
  esac
}
stage="$tmp/kernel"
mkdir -p "$stage/modules"
: >"$stage/modules.order"
declare -A seen=()
add() { # NAME: its dependencies first, then itself
  local n="${1//-/_}" src dep deps
  [ -z "${seen[$n]:-}" ] || return 0
  seen[$n]=1
  src="$(modfile "$n")"
  if [ -z "$src" ]; then
    if grep -q "/${1}\.ko" "$moddir/modules.builtin" || grep -q "/${n}\.ko" "$moddir/modules.builtin"; then
      return 0
    fi
    echo "ktls-vm/setup: module $1 not found in $pkg" >&2
    exit 1
  fi
  unpack "$src" "$stage/modules/$n.ko"
  deps="$(tr '\0' '\n' <"$stage/modules/$n.ko" | sed -n 's/^depends=//p' | head -n 1)"
  for dep in ${deps//,/ }; do add "$dep"; done
  echo "$n.ko" >>"$stage/modules.order"
}
[ -n "$(modfile tls)" ] || { echo "ktls-vm/setup: tls.ko not in $pkg (no CONFIG_TLS=m?)" >&2; exit 1; }
for m in "${wanted[@]}"; do add "$m"; done
cp "$vmlinuz" "$stage/vmlinuz"
echo "$release" >"$stage/release"

rm -rf "$kdir"
mv "$stage" "$kdir"
echo "ktls-vm/setup: kernel $release with modules: $(tr '\n' ' ' <"$kdir/modules.order")" >&2
