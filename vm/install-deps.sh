#!/bin/sh
# Install what vm/run-in-vm.sh needs. Idempotent: safe to run again.
#
# qemu-utils on these machines is already the bookworm-backports build, so
# bookworm's own qemu-system-x86 would conflict with it; take qemu from
# backports too. The guest kernel is Debian's stock linux-image-amd64.
set -eu

src=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Same mirror as the existing bookworm entry.
    mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    cat > "$src" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update
fi

need=""
dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q 'install ok installed' || need=1
# systemd: PID 1 of the guest in BERTH_VM_INIT=systemd (the host need not run it); dbus: the
# system bus there, which podman's systemd cgroup manager talks to.
for p in linux-image-amd64 busybox-static cpio crun systemd dbus; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need=1
done
if [ -n "$need" ]; then
    [ -d /var/lib/apt/lists ] && ls /var/lib/apt/lists/*bookworm-backports* >/dev/null 2>&1 || apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -t bookworm-backports qemu-system-x86
    # initramfs-tools would otherwise run on kernel install; harmless, we build our own initramfs.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        linux-image-amd64 busybox-static cpio crun systemd dbus
fi

dpkg-query -W -f='${Package} ${Version}\n' qemu-system-x86 qemu-utils linux-image-amd64 \
    'linux-image-*-amd64' busybox-static cpio crun systemd dbus 2>/dev/null | grep -v ' $' || true
