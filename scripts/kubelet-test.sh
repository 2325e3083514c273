#!/bin/sh
# A real kubelet (v1.36, built from the Go module proxy) runs static pods on a berthd of its own:
# tests/kubelet/kubelet_test.py (what it checks is in its header; logs in target/kubelet-logs).
#
#   scripts/kubelet-test.sh [--keep]
#
# Everything runs in a private network namespace (unshare --net): the kubelet's ports (10248,
# 10250, 10255), its iptables canary chains and the hostNetwork pods' "host" network all go with it,
# and a kubelet on this machine is not disturbed. Mounts, cgroups (a cgroup root of the test's own),
# /var/log/containers links and the kernel tunables the kubelet sets at start-up are the host's:
# the test removes or restores them, and fails on any it did not expect to find.
# Needs root, Debian's docker-registry and skopeo (the look-alike images of tests/critest), the
# berth binaries (BERTH_BIN, default target/debug) and kubelet + crictl (target/go-peers/bin,
# built here by scripts/build-go-peers.sh; without `go` this prints SKIP loudly and exits 0).
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
peers=$root/target/go-peers/bin
start=$(date +%s)
./scripts/build-go-peers.sh crictl kubelet
if [ ! -x "$peers/kubelet" ] || [ ! -x "$peers/crictl" ]; then
    echo "################################################################"
    echo "kubelet-test.sh: SKIP: no kubelet or crictl (no Go toolchain)"
    echo "################################################################"
    exit 0
fi
for tool in docker-registry skopeo python3 unshare ip umount; do
    command -v "$tool" >/dev/null || { echo "kubelet-test.sh: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done
set +e
unshare --net sh -c 'ip link set lo up && exec python3 "$0" "$@"' \
    "$root/tests/kubelet/kubelet_test.py" --bin "${BERTH_BIN:-$root/target/debug}" --peers "$peers" "$@"
rc=$?
echo "kubelet-test.sh: exit $rc after $(($(date +%s) - start)) s"
exit $rc
