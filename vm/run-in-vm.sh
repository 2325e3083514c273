#!/bin/bash
# Run one command inside a throw-away VM with a pure cgroup v2 hierarchy.
#
#   vm/run-in-vm.sh <command> [args...]
#
# Boots Debian's kernel (linux-image-amd64) under qemu TCG with an initramfs
# built here (busybox-static, the virtio/9p modules, vm/init). The guest sees
# the host's / read-only over virtio-9p, with a fresh tmpfs on /run and
# writable overlays (host files below, a tmpfs above) on /tmp and /var/tmp, and
# chroots into it (or boots the host's systemd on it: BERTH_VM_INIT below); the
# command, and anything it runs, must not live under /run.
# The working directory is the caller's (if it exists in the guest), the output (stdout and
# stderr merged) comes back on the serial console, and the exit status is the
# command's. See vm/README.md.
#
# Environment:
#   BERTH_VM_TIMEOUT  seconds before the VM is killed (default 900); exit 124
#   BERTH_VM_MEM      guest memory (default 2G)
#   BERTH_VM_CPUS     vCPUs (default 2)
#   BERTH_VM_KERNEL   kernel version under /boot and /lib/modules (default: newest)
#   BERTH_VM_VERBOSE  1: kernel log to stderr as it happens
#   BERTH_VM_INIT     systemd: the host's systemd boots the guest as PID 1 (on the host
#                     tree, owning the cgroup2 hierarchy) and runs the command as a service;
#                     unset: vm/init runs it, with no init system (the default)
#   BERTH_VM_CGROUP   v1: with BERTH_VM_INIT=systemd, systemd mounts the v1 controllers (its
#                     hybrid layout, as on this host) instead of pure cgroup v2
# Passed into the guest: PATH, TERM, LANG, LC_ALL, RUST_BACKTRACE, RUST_LOG,
# RUST_TEST_THREADS and every BERTH_* variable; use `env X=y cmd` for others.
# Exit status: the command's; 124 timeout; 125 the VM did not get to run it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || { echo "usage: $0 <command> [args...]" >&2; exit 125; }

timeout_s=${BERTH_VM_TIMEOUT:-900}
mem=${BERTH_VM_MEM:-2G}
cpus=${BERTH_VM_CPUS:-2}
init_mode=${BERTH_VM_INIT:-}
case $init_mode in
    '' | systemd) ;;
    *) echo "run-in-vm: BERTH_VM_INIT=$init_mode: only systemd, or unset" >&2; exit 125 ;;
esac
cgroup_mode=${BERTH_VM_CGROUP:-v2}
case $init_mode/$cgroup_mode in
    */v2 | systemd/v1) ;;
    *) echo "run-in-vm: BERTH_VM_CGROUP=$cgroup_mode: v1 only with BERTH_VM_INIT=systemd, else v2" >&2; exit 125 ;;
esac

# In this order; each one that the kernel has built in is skipped.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
netfs fscache 9pnet 9pnet_virtio 9p overlay"

kver=${BERTH_VM_KERNEL:-}
if [ -z "$kver" ]; then
    # Newest Debian kernel that also has its module tree (not the host's uname -r).
    for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V); do
        [ -f "/lib/modules/$k/modules.dep" ] && kver=$k
    done
fi
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[ -n "$kver" ] && [ -r "$kernel" ] && [ -f "$moddir/modules.dep" ] ||
    { echo "run-in-vm: no Debian kernel with modules found; run vm/install-deps.sh" >&2; exit 125; }
command -v qemu-system-x86_64 >/dev/null && [ -x /bin/busybox ] && command -v cpio >/dev/null ||
    { echo "run-in-vm: qemu-system-x86_64, busybox-static or cpio missing; run vm/install-deps.sh" >&2; exit 125; }
# The guest's root is this host's /, so its systemd is the one that boots.
if [ "$init_mode" = systemd ] && [ ! -x /lib/systemd/systemd ]; then
    echo "run-in-vm: BERTH_VM_INIT=systemd needs systemd installed on this host" >&2; exit 125
fi

# Host-side scratch (qemu's files only; the guest never sees this directory).
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

# Modules: find each one's file in modules.dep; decompress if needed.
for m in $modules; do
    f=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n);
                             gsub(/-/, "_", n); if (n == m) { print $1; exit } }' "$moddir/modules.dep")
    if [ -z "$f" ]; then
        grep -q "/$m\.ko\$" "$moddir/modules.builtin" 2>/dev/null && continue
        echo "run-in-vm: module $m neither in $moddir nor built in" >&2; exit 125
    fi
    case $f in
        *.xz) xz -dc "$moddir/$f" ;;
        *.zst) zstd -qdc "$moddir/$f" ;;
        *.gz) gzip -dc "$moddir/$f" ;;
        *) cat "$moddir/$f" ;;
    esac > "$root/modules/$m.ko"
    echo "$m" >> "$root/modules/order"
done

# The command, as a script for the host's /bin/sh inside the chroot. Every
# word is single-quoted, so any argument survives.
q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
{
    cwd=$(pwd)
    printf 'cd %s 2>/dev/null || { echo "run-in-vm: "%s" is not in the VM, running in /" >&2; cd /; }\n' \
        "$(q "$cwd")" "$(q "$cwd")"
    echo "export HOME=/root"
    for v in PATH TERM LANG LC_ALL RUST_BACKTRACE RUST_LOG RUST_TEST_THREADS $(compgen -e | grep '^BERTH_' || true); do
        [ -n "${!v+x}" ] && echo "export $v=$(q "${!v}")"
    done
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    echo
} > "$root/cmd"

# Interactive only if both ends are a terminal; then stdin goes to the guest.
interactive=
if [ -t 0 ] && [ -t 1 ]; then
    interactive=1
    stty size 2>/dev/null | awk '{ printf "rows %s cols %s", $1, $2 }' > "$root/interactive"
fi

if [ "$init_mode" = systemd ]; then
    : > "$root/systemd"   # vm/init boots systemd
fi

(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet) > "$work/initrd"

if [ "${BERTH_VM_VERBOSE:-}" = 1 ]; then
    # append=on: never truncate the caller's stderr if it is a file.
    klog=(-chardev file,id=klog,path=/proc/self/fd/2,append=on)
else
    klog=(-chardev file,id=klog,path="$work/console.log")
fi
if [ -n "$interactive" ]; then
    out=(-chardev stdio,id=out,mux=on,signal=off -mon chardev=out)  # Ctrl-A x quits
else
    out=(-chardev stdio,id=out,signal=on)
fi

# Kernel: log on ttyS1, no v1 controllers (unless asked for), quiet, stop on panic; no
# mitigations (nothing to protect in a test VM, and they cost time under TCG).
append="console=ttyS1 edd=off loglevel=4 panic=-1 mitigations=off rdinit=/init"
if [ "$cgroup_mode" = v1 ]; then
    append+=" systemd.unified_cgroup_hierarchy=0"
else
    append+=" cgroup_no_v1=all"
fi
if [ "$init_mode" = systemd ]; then
    # vm/init writes berth-vm.target, which runs the command after basic.target. Status output
    # only for failures: the console is a serial port, slow under TCG.
    append+=" systemd.unit=berth-vm.target systemd.show_status=error systemd.hostname=berth-vm"
fi

rc=0
# --foreground: qemu stays in the terminal's process group (interactive input).
timeout --foreground -k 10 "$timeout_s" \
    qemu-system-x86_64 -accel tcg -cpu max -smp "$cpus" -m "$mem" \
        -nodefaults -no-user-config -display none -no-reboot \
        -bios qboot.rom \
        -kernel "$kernel" -initrd "$work/initrd" -append "$append" \
        "${out[@]}" -serial chardev:out \
        "${klog[@]}" -serial chardev:klog \
        -chardev file,id=status,path="$work/status" -serial chardev:status \
        -virtfs local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap \
    < "$( [ -n "$interactive" ] && echo /dev/stdin || echo /dev/null )" || rc=$?

# The status line is a number, or "setup-failed" from vm/init.
status=$(tr -d '\r\n' < "$work/status" 2>/dev/null || true)
case $status in
    [0-9]*) exit "$status" ;;
esac
if [ -n "$status" ]; then
    echo "run-in-vm: VM setup failed" >&2; rc=125
elif [ "$rc" = 124 ]; then
    echo "run-in-vm: timed out after ${timeout_s}s (BERTH_VM_TIMEOUT)" >&2
else
    echo "run-in-vm: the VM stopped before the command ended (qemu exit $rc)" >&2
    rc=125
fi
[ -f "$work/console.log" ] && { echo "--- kernel console (last 40 lines) ---" >&2; tail -n 40 "$work/console.log" >&2; }
exit "$rc"
