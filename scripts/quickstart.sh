#!/bin/sh
# The quickstart, offline: builds and installs berth (scripts/install.sh), starts berthd (a
# systemd service where systemd runs, else in the background), puts a busybox image in the store
# with no network (a root filesystem of Debian's busybox-static, imported), runs a container from
# it with `berth run --rm`, and, where crictl is built (scripts/build-go-peers.sh crictl), a pod
# through the CRI.
#
# Environment:
#   PREFIX, DESTDIR        where berth goes (/usr/local; DESTDIR stages it, as install.sh's)
#   BERTH_QUICKSTART_ROOT  a directory for berthd's store, state, socket and config of its own
#                          (instead of /var/lib/berth, /run/berth and /etc/berth/berthd.toml);
#                          then berthd runs in the background, and pods get loopback only
#   BERTH_QUICKSTART_STOP  1: at the end remove what the quickstart made and stop the berthd it
#                          started (CI runs it so, with BERTH_QUICKSTART_ROOT)
set -eu
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
PREFIX=$prefix ./scripts/install.sh
bin=${DESTDIR:-}$prefix/bin
berth="$bin/berth"
root=${BERTH_QUICKSTART_ROOT:-}
started=

if [ -n "$root" ]; then
    mkdir -p "$root/cni"
    config=$root/berthd.toml
    cat >"$config" <<EOF
root = "$root/store"
state = "$root/state"
socket = "$root/run/berth.sock"
cni_conf_dir = "$root/cni"
default_network = "none"
EOF
    socket=$root/run/berth.sock
else
    config=/etc/berth/berthd.toml
    socket=/run/berth/berth.sock
fi
export BERTH_HOST="unix://$socket"

if "$berth" ps >/dev/null 2>&1; then
    echo "quickstart: berthd already serves on $socket"
elif [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl enable --now berthd.socket berthd.service
    echo "quickstart: berthd runs as a systemd service (journalctl -u berthd)"
else
    log=${root:-/var/log}/berthd.log
    "$bin/berthd" --config "$config" >>"$log" 2>&1 &
    started=$!
    echo "quickstart: berthd runs in the background (pid $started, log $log)"
fi
i=0
until "$berth" ps >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "quickstart: berthd did not answer on $socket" >&2; exit 1; }
    sleep 0.1
done

# An image with no network: Debian's busybox-static as a root filesystem tarball, imported.
work=$(mktemp -d)
# On the way out, whatever happened: the scratch directory, and with BERTH_QUICKSTART_STOP the
# berthd started here.
cleanup() {
    rm -rf "$work"
    if [ "${BERTH_QUICKSTART_STOP:-}" = 1 ] && [ -n "$started" ] && kill "$started" 2>/dev/null; then
        wait "$started" || true
    fi
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
# Hardlinks, not symlinks: masking a symlinked applet would mask busybox itself.
for applet in $(/bin/busybox --list | grep -vx busybox); do ln -f "$work/rootfs/bin/busybox" "$work/rootfs/bin/$applet"; done
echo "root:x:0:0:root:/root:/bin/sh" >"$work/rootfs/etc/passwd"
echo "root:x:0:" >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
image=localhost/busybox:quickstart
"$berth" import --rootfs "$work/busybox.tar" "$image"
"$berth" run --rm "$image" sh -c 'echo "hello from a berth container ($(hostname)), pid $$"'

crictl=$(command -v crictl || true)
[ -n "$crictl" ] || [ ! -x target/go-peers/bin/crictl ] || crictl=$PWD/target/go-peers/bin/crictl
if [ -n "$crictl" ]; then
    cat >"$work/pod.json" <<EOF
{"metadata": {"name": "quickstart", "namespace": "default", "uid": "quickstart-$$"}, "log_directory": "$work/logs", "linux": {}}
EOF
    cat >"$work/container.json" <<EOF
{"metadata": {"name": "hello"}, "image": {"image": "$image"}, "command": ["sh", "-c", "echo hello from a pod"], "log_path": "hello.log", "linux": {}}
EOF
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$socket" "$socket" >"$work/crictl.yaml"
    cri="$crictl --config $work/crictl.yaml"
    pod=$($cri runp "$work/pod.json")
    container=$($cri create "$pod" "$work/container.json" "$work/pod.json")
    $cri start "$container" >/dev/null
    i=0
    until [ "$($cri inspect -o go-template --template '{{.status.state}}' "$container")" = CONTAINER_EXITED ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "quickstart: the pod's container did not finish" >&2; exit 1; }
        sleep 0.1
    done
    $cri logs "$container"
    $cri stopp "$pod" >/dev/null
    $cri rmp "$pod" >/dev/null
else
    echo "quickstart: no crictl (scripts/build-go-peers.sh crictl builds one): no pod this time"
fi

if [ "${BERTH_QUICKSTART_STOP:-}" = 1 ]; then
    "$berth" rmi "$image" >/dev/null
    if [ -n "$started" ]; then
        kill "$started"
        wait "$started" || true
        started=
    fi
    [ -z "$root" ] || rm -rf "$root"
    echo "quickstart: stopped, and what it made is removed"
fi
