#!/bin/sh
# The cgroup v2 half of the test command: runs the cgroup, lifecycle, config, compat, shim, containers and
# CRI integration tests (BERTH_VM_SUITES picks some) inside a VM whose only hierarchy is cgroup v2 (vm/run-in-vm.sh; this host is
# cgroup v1), then checks that the guest has no cgroup and no test directory left. Then the systemd
# cgroup driver's tests in a VM whose PID 1 is systemd, on cgroup v2 and on systemd's v1 layout
# (BERTH_VM_SYSTEMD_CGROUPS="v2" for one; BERTH_VM_SUITES=systemd_cgroups runs these alone). Needs
# vm/install-deps.sh. The containers suite works under /run (a tmpfs: the guest's /tmp is an
# overlay, which overlayfs refuses as a container's upper layer) and leaves its 250-run test to
# the host (under TCG it alone outlasts the VM's timeout).
set -eu
cd "$(dirname "$0")/.."
suites=${BERTH_VM_SUITES:-"cgroups lifecycle config compat shim containers cri systemd_cgroups"}
# systemd_cgroups has a VM of its own (below); the first VM runs the rest.
first=$(echo " $suites " | sed 's/ systemd_cgroups / /g' | xargs)
# Under target/: the guest sees the host tree read-only, but not its /tmp or /var/tmp.
guest=$(mktemp "$PWD/target/vm-guest.XXXXXX")
trap 'rm -f "$guest"' EXIT
if [ -n "$first" ]; then
# The test executables of these suites, as cargo names them (their names carry a hash). With
# --workspace, as test.sh builds them: `-p` alone unifies features differently and builds every
# dependency a second time (the disk it took once filled CI's).
binaries=$(cargo test --workspace --locked --no-run --message-format=json $(printf -- '--test %s ' $first) |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
[ -n "$binaries" ] || { echo "test-vm: no test executables found" >&2; exit 1; }

{
    echo 'set -u; rc=0'
    # -q: the guest's serial console is slow under TCG; failures still print in full.
    for b in $binaries; do
        case $(basename "$b") in
        containers-*) echo "echo '== $(basename "$b")'; BERTH_TEST_ROOT=/run/berth-test $b -q --skip two_hundred_runs --skip a_huge_command \"\$@\" || rc=1" ;;
        # The 1,000 exec sessions count leaks, nothing cgroup v2 changes: not under TCG.
        cri-*) echo "echo '== $(basename "$b")'; BERTH_TEST_ROOT=/run/berth-test $b -q --skip a_thousand_exec_sessions \"\$@\" || rc=1" ;;
        shim-*) echo "echo '== $(basename "$b")'; BERTH_TEST_ROOT=/run/berth-test $b -q \"\$@\" || rc=1" ;;
        *) echo "echo '== $(basename "$b")'; $b -q \"\$@\" || rc=1" ;;
        esac
    done
    cat <<'GUEST'
# (The parent /berth that containers made is left, as runtimes leave parents; its children are not.)
left=$(find /sys/fs/cgroup -mindepth 1 -type d ! -path /sys/fs/cgroup/berth)
[ -z "$left" ] || { echo "test-vm: cgroups left behind:"; echo "$left"; rc=1; }
for d in /tmp/berth-test /run/berth-test; do
    if [ -d $d ] && [ -n "$(ls -A $d)" ]; then echo "test-vm: test directories left behind"; ls -la $d; rc=1; fi
done
exit $rc
GUEST
} > "$guest"
echo "test-vm: running $first under cgroup v2 in a VM"
BERTH_VM_TIMEOUT=${BERTH_VM_TIMEOUT:-2400} vm/run-in-vm.sh sh "$guest" "$@"
fi

# The systemd cgroup driver, in a VM whose PID 1 is systemd (BERTH_VM_INIT=systemd): its tests
# fail there if systemd is missing (BERTH_EXPECT_SYSTEMD). Then no berth scope may be left.
if echo " $suites " | grep -q ' systemd_cgroups '; then
    systemd_tests=$(cargo test --workspace --locked --no-run --message-format=json --test systemd_cgroups |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
    cat > "$guest" <<GUEST
set -u; rc=0
BERTH_EXPECT_SYSTEMD=1 BERTH_TEST_ROOT=/run/berth-test $systemd_tests -q --test-threads=1 "\$@" || rc=1
# (Slices are parents, left as runtimes leave them; the scopes in them are not.)
left=\$(find /sys/fs/cgroup -type d -name 'berth-*.scope')
for unit in \$(systemctl list-units --all --plain --no-legend --no-pager 'berth-*.scope' | cut -d' ' -f1); do left="\$left \$unit"; done
[ -z "\$(echo \$left)" ] || { echo "test-vm: systemd units or cgroups left behind:"; echo "\$left"; rc=1; }
exit \$rc
GUEST
    # cgroup v2, then systemd's v1 (hybrid) layout, where it manages the v1 controllers
    # (BERTH_VM_SYSTEMD_CGROUPS picks).
    for hierarchy in ${BERTH_VM_SYSTEMD_CGROUPS:-v2 v1}; do
        started=$(date +%s)
        echo "test-vm: the systemd cgroup driver, under systemd in a VM (cgroup $hierarchy)"
        BERTH_VM_INIT=systemd BERTH_VM_CGROUP=$hierarchy BERTH_VM_TIMEOUT=${BERTH_VM_TIMEOUT:-900} vm/run-in-vm.sh sh "$guest" "$@"
        echo "test-vm: the systemd pass (cgroup $hierarchy) took $(($(date +%s) - started)) s"
    done
fi
