#!/bin/sh
# Installs berth under a prefix: berthd, berth, berth-shim and berth-oci; systemd units for berthd
# (a notify service and its socket); an example /etc/berth/berthd.toml with every key (never over
# an operator's own); bash, zsh and fish completions and man pages, made by the installed berth.
#
#   sudo scripts/install.sh                       # release build, then /usr/local
#   PREFIX=/usr DESTDIR=/tmp/stage scripts/install.sh
#
# Environment: PREFIX (/usr/local), DESTDIR (staging root, empty), BERTH_BIN_DIR (take the
# binaries from there instead of building them: target/release after a build).
set -eu
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
dest=${DESTDIR:-}
bins="berthd berth berth-shim berth-oci"

if [ -z "${BERTH_BIN_DIR:-}" ]; then
    started=$(date +%s)
    cargo build --release --locked -p berth-daemon -p berth-cli -p berth-shim -p berth-oci-cli
    echo "install: release build took $(( $(date +%s) - started )) s"
    BERTH_BIN_DIR=$PWD/target/release
fi

install -d "$dest$prefix/bin"
for b in $bins; do
    [ -x "$BERTH_BIN_DIR/$b" ] || { echo "install: $BERTH_BIN_DIR/$b is missing" >&2; exit 1; }
    install -m 0755 "$BERTH_BIN_DIR/$b" "$dest$prefix/bin/$b"
done

# Units go where the administrator's do; the service runs the binary from this prefix.
units=$dest/etc/systemd/system
install -d "$units"
sed "s|@PREFIX@|$prefix|g" etc/systemd/berthd.service > "$units/berthd.service"
install -m 0644 etc/systemd/berthd.socket "$units/berthd.socket"
chmod 0644 "$units/berthd.service"

install -d "$dest/etc/berth"
if [ ! -e "$dest/etc/berth/berthd.toml" ]; then
    install -m 0644 etc/berthd.toml "$dest/etc/berth/berthd.toml"
else
    echo "install: $dest/etc/berth/berthd.toml exists: kept (the example is etc/berthd.toml)"
fi

berth=$dest$prefix/bin/berth
share=$dest$prefix/share
install -d "$share/bash-completion/completions" "$share/zsh/site-functions" "$share/fish/vendor_completions.d" "$share/man/man1"
"$berth" completion bash > "$share/bash-completion/completions/berth"
"$berth" completion zsh > "$share/zsh/site-functions/_berth"
"$berth" completion fish > "$share/fish/vendor_completions.d/berth.fish"
"$berth" man "$share/man/man1"

echo "install: berth is in $dest$prefix"
if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "install: start it with: systemctl enable --now berthd.socket berthd.service"
fi
