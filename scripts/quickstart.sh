#!/bin/sh
# Builds berth-oci and runs a container offline from Debian's busybox-static:
# a bundle made with `berth-oci spec`, then `berth-oci run`.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth-oci-cli
BIN="$PWD/target/release/berth-oci"
BUNDLE="${BUNDLE:-/tmp/berth-quickstart}"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/rootfs/bin" "$BUNDLE/rootfs/proc" "$BUNDLE/rootfs/sys" "$BUNDLE/rootfs/dev" "$BUNDLE/rootfs/tmp"
cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
# Hardlinks, not symlinks: masking a symlinked applet would mask busybox itself.
for applet in $(/bin/busybox --list | grep -vx busybox); do ln -f "$BUNDLE/rootfs/bin/busybox" "$BUNDLE/rootfs/bin/$applet"; done
cd "$BUNDLE"
"$BIN" spec
sed -i 's|"sh"$|"sh", "-c", "echo hello from $(hostname), pid $$"|' config.json
"$BIN" run "quickstart-$$"
