#!/usr/bin/env bash
# Boots Debian's stock cloud kernel (fetched by tools/ktls-vm/setup.sh) in qemu
# under TCG and runs one shell script inside it, with tls.ko loaded. Used by
# tools/ktls-vm/check.sh; see docs/testing-ktls.md.
#
# Usage:
#   tools/ktls-vm/run.sh [--bin PATH[:DEST]]... [--file SRC:DEST]... \
#       [--timeout SECS] [--mem MIB] [--smp N] --script GUEST_SCRIPT
#
#   --bin PATH[:DEST]  a program, copied to DEST (default /bin/NAME); when it
#                      is dynamically linked, the shared libraries that `ldd`
#                      lists and the loader go along, at their host paths
#   --file SRC:DEST    a file copied to DEST (absolute path in the guest)
#   --script FILE      the guest script, run by busybox sh as /guest.sh
#   --timeout SECS     qemu is killed after this long (default 150,
#                      RINGCAST_VM_TIMEOUT)
#   --mem MIB          guest memory (default 1024); --smp N guest CPUs (default 2)
# The kernel is the one setup.sh extracted for RINGCAST_VM_KERNEL (the meta
# package's name, default linux-image-cloud-amd64) in RINGCAST_VM_CACHE.
#
# The initramfs (an uncompressed newc cpio) holds busybox-static and its applet
# symlinks, the modules from the cache, the named programs and files, and an
# /init that mounts proc, sysfs, devtmpfs and a tmpfs on /tmp, brings up lo,
# insmods the modules (tls.ko is required, the crypto ones are best effort),
# runs /guest.sh from /, prints "ktls-vm: exit status N" and powers off.
# Everything the guest prints is shown here; run.sh exits with the guest
# script's status, or 124 when qemu hit the timeout, or 125 when the guest
# ended without reporting a status (e.g. a kernel panic).
# The guest has no network device, only loopback; /etc/hosts maps localhost.
# qemu runs with -accel tcg (KVM guests hang on this host) and -cpu max, so the
# guest has AES-NI and PCLMUL for the kernel's and user space's AES-GCM.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${RINGCAST_VM_CACHE:-/var/cache/ringcast-vm}"
kdir="$cache/${RINGCAST_VM_KERNEL:-linux-image-cloud-amd64}"
timeout="${RINGCAST_VM_TIMEOUT:-150}"
mem=1024
smp=2
script=""
bins=()
files=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bins+=("${2:?--bin needs a path}"); shift 2 ;;
    --file) files+=("${2:?--file needs SRC:DEST}"); shift 2 ;;
    --script) script="${2:?--script needs a file}"; shift 2 ;;
    --timeout) timeout="${2:?}"; shift 2 ;;
    --mem) mem="${2:?}"; shift 2 ;;
    --smp) smp="${2:?}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$script" ] || { echo "run.sh: --script is required" >&2; usage; }
[ -f "$script" ] || { echo "run.sh: no such script $script" >&2; exit 2; }
[ -s "$kdir/vmlinuz" ] || { echo "run.sh: no kernel in $kdir; run tools/ktls-vm/setup.sh" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/ktls-vm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,lib/modules}

# busybox and its applets.
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [ -e "$root/$applet" ] || { mkdir -p "$root/$(dirname "$applet")"; ln -s /bin/busybox "$root/$applet"; }
done

# copy_to SRC DEST: a file into the image at DEST (absolute), following links.
copy_to() {
  mkdir -p "$root$(dirname "$2")"
  cp -L "$1" "$root$2"
}

# Programs and their libraries.
for spec in "${bins[@]}"; do
  src="${spec%%:*}"
  dest="/bin/$(basename "$src")"
  case "$spec" in *:*) dest="${spec#*:}" ;; esac
  [ -x "$src" ] || { echo "run.sh: $src is not an executable" >&2; exit 2; }
  rm -f "$root$dest"
  copy_to "$src" "$dest"
  if ldd "$src" >/dev/null 2>&1; then
    # "libfoo.so.1 => /lib/x/libfoo.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
    ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
      while read -r lib; do
        [ -e "$root$lib" ] || copy_to "$lib" "$lib"
      done
  fi
done

for spec in "${files[@]}"; do
  case "$spec" in *:/*) ;; *) echo "run.sh: --file wants SRC:/DEST, got $spec" >&2; exit 2 ;; esac
  copy_to "${spec%%:*}" "${spec#*:}"
done

cp "$kdir"/modules/*.ko "$kdir/modules.order" "$root/lib/modules/"
cp "$script" "$root/guest.sh"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

sentinel="ktls-vm: exit status"
cat >"$root/init" <<EOF
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
mkdir -p /root /dev/pts /dev/shm
ip link set lo up
for m in \$(cat /lib/modules/modules.order); do
  if ! insmod /lib/modules/\$m 2>/tmp/insmod.err; then
    if [ "\$m" = tls.ko ]; then echo "ktls-vm: insmod tls.ko failed: \$(cat /tmp/insmod.err)"; fi
  fi
done
echo "ktls-vm: kernel \$(uname -r), tcp_available_ulp: \$(cat /proc/sys/net/ipv4/tcp_available_ulp)"
cd /
sh /guest.sh
echo "$sentinel \$?"
sync
poweroff -f
EOF
chmod +x "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$work/initrd.cpio"

log="$work/console.log"
# The console as it comes, less carriage returns and the firmware's terminal
# escapes, and into the log that the status is read from. timeout(1) is the
# hard limit: SIGTERM (qemu quits at once), SIGKILL 5 s later.
qemu_status=0
timeout --kill-after=5 "$timeout" \
  qemu-system-x86_64 -accel tcg -cpu max -smp "$smp" -m "$mem" -nographic -no-reboot \
  -nic none -kernel "$kdir/vmlinuz" -initrd "$work/initrd.cpio" \
  -append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1 |
  tee "$log" | sed -u 's/\r$//; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' || qemu_status="${PIPESTATUS[0]}"

if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
  echo "run.sh: qemu killed after ${timeout}s" >&2
  exit 124
fi
status="$(tr -d '\r' <"$log" | sed -n "s/^$sentinel \([0-9][0-9]*\)$/\1/p" | tail -n 1)"
if [ -z "$status" ]; then
  echo "run.sh: the guest ended without reporting a status" >&2
  exit 125
fi
exit "$status"
