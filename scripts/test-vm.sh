#!/bin/sh
# The cgroup v2 half of the test command: runs the cgroup, lifecycle and config integration tests
# inside a VM whose only hierarchy is cgroup v2 (vm/run-in-vm.sh; this host is cgroup v1), then
# checks that the guest has no cgroup and no test directory left. Needs vm/install-deps.sh.
set -eu
cd "$(dirname "$0")/.."
suites="cgroups lifecycle config"
# The test executables of these suites, as cargo names them (their names carry a hash).
binaries=$(cargo test -p berth-integration --locked --no-run --message-format=json $(printf -- '--test %s ' $suites) |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
[ -n "$binaries" ] || { echo "test-vm: no test executables found" >&2; exit 1; }

# Under target/: the guest sees the host tree read-only, but not its /tmp or /var/tmp.
guest=$(mktemp "$PWD/target/vm-guest.XXXXXX")
trap 'rm -f "$guest"' EXIT
{
    echo 'set -u; rc=0'
    # -q: the guest's serial console is slow under TCG; failures still print in full.
    for b in $binaries; do echo "echo '== $(basename "$b")'; $b -q \"\$@\" || rc=1"; done
    cat <<'GUEST'
left=$(find /sys/fs/cgroup -mindepth 1 -type d)
[ -z "$left" ] || { echo "test-vm: cgroups left behind:"; echo "$left"; rc=1; }
if [ -d /tmp/berth-test ] && [ -n "$(ls -A /tmp/berth-test)" ]; then echo "test-vm: test directories left behind"; ls -la /tmp/berth-test; rc=1; fi
exit $rc
GUEST
} > "$guest"
echo "test-vm: running $suites under cgroup v2 in a VM"
BERTH_VM_TIMEOUT=${BERTH_VM_TIMEOUT:-1500} vm/run-in-vm.sh sh "$guest" "$@"
