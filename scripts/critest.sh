#!/bin/bash
# Runs cri-tools' critest (the CRI validation specs, or with --benchmark its benchmarks) against a
# berthd of its own, with look-alike test images served by a loopback docker-registry through
# berthd's registry mirrors (the specs' image names stay the upstream ones).
#
#   scripts/critest.sh [--benchmark] [--keep] [--kubelet-hostnames] [--peer containerd] [-- CRITEST_FLAGS...]
#
#   --benchmark   critest -benchmark; prints the figures (CRITEST_BENCH_N samples, default 20)
#   --peer containerd
#                 for comparison, not for CI: the same critest, images, registry, skips and
#                 namespaces against Debian's containerd 1.6 (/usr/bin/containerd, runc) of its own
#                 instead of berthd: root, state, socket, runc's root and pod netns under the work
#                 directory (<work>/containerd.toml), the registry as the CRI plugin's mirrors,
#                 restrict_oom_score_adj (no CAP_SYS_RESOURCE here), cgroupfs, the pod network a
#                 CNI bridge critestcd0 (10.214.0.0/24) with host-local and portmap. The report has
#                 counts and failures only (no known failures) and the exit status is 0 whatever
#                 failed. Teardown also reports what containerd may leave outside the work directory
#                 (a link critestcd0, iptables rules, /var/run/netns, /run/containerd/{s,runc},
#                 /var/lib/cni, cri-containerd cgroups). Logs in target/critest-logs/containerd-<mode>/.
#   --keep        keep the work directory (/tmp/critest-*) instead of removing it
#   --kubelet-hostnames
#                 diagnostic, not for CI: a critest (built into target/critest-images from a copy
#                 of peers/critest; nothing in the repo changes) whose CRI client gives a pod
#                 without a hostname the one a kubelet would, its name cut to 63 characters: for a
#                 runtime that refuses critest's longer pod names as hostnames
#   -- FLAGS      passed to critest, e.g. -- -ginkgo.focus='Image Manager'
#
# Stages (each timed): images (tests/critest/images.py, cached in target/critest-images: a re-run
# with unchanged inputs pushes nothing), registry, berthd (or containerd), critest, report, teardown. Teardown
# stops and removes every pod through crictl, then SIGTERMs berthd and the registry, and reports
# (and then removes) any process or mount still naming the work directory: a leak. Logs, the
# ginkgo JSON report and the summary are copied to target/critest-logs/<mode>/ (validation,
# benchmark, ...-kubelet-hostnames).
# Skipped specs and why: tests/critest/skips.txt (CRITEST_SKIP adds a regular expression).
# The registry, berthd (with its containers) and critest share a private network namespace pinned
# at <work>/netns and a private IPC namespace at <work>/ipcns: the pod network (a CNI bridge with
# host-local and portmap from Debian's plugins, configured in <work>/net.d), its iptables rules,
# the "host" ports of the port specs (12000-12003) and the HostIpc specs' `ipcmk` segments all go
# with them at teardown, and nothing on the host is touched or in the way.
# Exit status: 0 if every spec that ran passed; 1 if one failed; 2 if the harness could not run.
# Needs root, Debian's docker-registry, skopeo, ipcmk, containernetworking-plugins, the berth
# binaries (BERTH_BIN, default target/debug) and critest + crictl (target/go-peers/bin, built by
# scripts/build-go-peers.sh; without `go` this prints SKIP and exits 0).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

benchmark=${CRITEST_BENCHMARK:-0}
keep=0
kubelet_hostnames=0
peer=
extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --benchmark) benchmark=1 ;;
    --keep) keep=1 ;;
    --kubelet-hostnames) kubelet_hostnames=1 ;;
    --peer) [ $# -ge 2 ] || { echo "critest.sh: --peer needs a runtime (containerd)" >&2; exit 2; }; peer=$2; shift ;;
    --peer=*) peer=${1#--peer=} ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "critest.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case $peer in
"" | containerd) ;;
*) echo "critest.sh: --peer $peer: only containerd is known (see --help)" >&2; exit 2 ;;
esac

bin=${BERTH_BIN:-$root/target/debug}
peers=${CRITEST_BIN:-$root/target/go-peers/bin}
images=${CRITEST_IMAGES:-$root/target/critest-images}
mode=validation
[ "$benchmark" = 0 ] || mode=benchmark
[ "$kubelet_hostnames" = 0 ] || mode=$mode-kubelet-hostnames
[ -z "$peer" ] || mode=$peer-$mode
# The runtime under test: berthd, or with --peer the peer (its socket, config and log are named so).
runtime=${peer:-berthd}
logs=${CRITEST_LOGS:-$root/target/critest-logs/$mode}
critest=$peers/critest
crictl=$peers/crictl

die() { echo "critest.sh: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (real containers, mounts)"

now() { date +%s.%N; }
t_all=$(now)
stage_start=
stage() { stage_name=$1; stage_start=$(now); echo "== [$stage_name] $(date -u +%H:%M:%S)"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
stage_done() {
    local took
    took=$(since "$stage_start")
    echo "== [$stage_name] done in $took s"
    timings+=("$(printf '%-9s %7s s' "$stage_name" "$took")")
}
timings=()

# --- checks -------------------------------------------------------------------------------
if [ -z "$peer" ]; then
    for b in berthd berth-shim berth-oci; do [ -x "$bin/$b" ] || die "no $bin/$b (cargo build first, or set BERTH_BIN)"; done
else
    [ -x /usr/bin/containerd ] || die "Debian's containerd is not installed (apt-get install containerd runc)"
    for tool in containerd-shim-runc-v2 runc iptables-save; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install containerd runc iptables)"
    done
    for plugin in bridge host-local portmap loopback; do
        [ -x "/usr/lib/cni/$plugin" ] || die "no /usr/lib/cni/$plugin (apt-get install containernetworking-plugins)"
    done
fi
if [ ! -x "$critest" ] || [ ! -x "$crictl" ]; then
    "$root/scripts/build-go-peers.sh" critest crictl || true
    if [ ! -x "$critest" ] || [ ! -x "$crictl" ]; then
        echo "critest.sh: SKIP: no $critest or $crictl (scripts/build-go-peers.sh needs go)"
        exit 0
    fi
fi
for tool in docker-registry skopeo ipcmk python3 findmnt unshare nsenter setsid ip; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh)"
done
[ -x /usr/lib/cni/bridge ] || die "Debian's CNI plugins are not installed (containernetworking-plugins)"

# The diagnostic critest of --kubelet-hostnames: cri-client's RunPodSandbox fills in an empty
# hostname as the kubelet does (GeneratePodHostNameAndDomain: the pod name, at most 63 characters).
build_kubelet_hostnames_critest() {
    local go=go dir out mod hash
    command -v go >/dev/null || go=/usr/local/go/bin/go
    export GOMODCACHE=${GOMODCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-go/mod}
    export GOCACHE=${GOCACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-go/build} GOTOOLCHAIN=local
    export GOFLAGS="${GOFLAGS:-} -modcacherw"
    dir=$images/critest-kubelet-hostnames
    out=$dir/critest
    hash=$( (declare -f build_kubelet_hostnames_critest; cat "$root/peers/critest/go.mod" "$root/peers/critest/go.sum" "$root"/peers/critest/*.go) | sha256sum | cut -d' ' -f1)
    if [ -x "$out" ] && [ "$(cat "$dir/inputs" 2>/dev/null)" = "$hash" ]; then critest=$out; return; fi
    echo "building the --kubelet-hostnames critest in $dir ..."
    rm -rf "$dir" && mkdir -p "$dir/peer"
    # A copy of peers/critest whose go.mod replaces k8s.io/cri-client with a patched copy.
    cp "$root"/peers/critest/go.mod "$root"/peers/critest/go.sum "$root"/peers/critest/*.go "$dir/peer/"
    mod=$(cd "$dir/peer" && "$go" list -m -f '{{.Dir}}' k8s.io/cri-client) || die "no k8s.io/cri-client module"
    cp -r "$mod" "$dir/cri-client" && chmod -R u+w "$dir/cri-client"
    sed -i 's/^\(func (r \*remoteRuntimeService) RunPodSandbox(.*{\)$/\1\n\tkubeletHostname(config)/' "$dir/cri-client/pkg/remote_runtime.go"
    grep -q 'kubeletHostname(config)$' "$dir/cri-client/pkg/remote_runtime.go" || die "could not patch $mod/pkg/remote_runtime.go"
    cat >>"$dir/cri-client/pkg/remote_runtime.go" <<'GO'

// kubeletHostname (berth's scripts/critest.sh --kubelet-hostnames): a pod without a hostname
// gets the one a kubelet would give it, its name cut to 63 characters.
func kubeletHostname(config *runtimeapi.PodSandboxConfig) {
	if config == nil || config.Hostname != "" || config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return
	}
	name := config.GetMetadata().GetName()
	if len(name) > 63 {
		name = name[:63]
	}
	for len(name) > 0 && (name[len(name)-1] == '-' || name[len(name)-1] == '.') {
		name = name[:len(name)-1]
	}
	config.Hostname = name
}
GO
    (cd "$dir/peer" && "$go" mod edit -replace k8s.io/cri-client=../cri-client &&
        "$go" test -c -trimpath -o "$out" \
            -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$("$go" list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)+kubelet-hostnames" .) \
        || die "building the --kubelet-hostnames critest failed"
    echo "$hash" >"$dir/inputs"
    critest=$out
}
[ "$kubelet_hostnames" = 0 ] || build_kubelet_hostnames_critest

work=$(mktemp -d /tmp/critest-XXXXXX)
chmod 0711 "$work"
mkdir -p "$work/tmp" "$work/logs"
touch "$work/ipcns" "$work/netns"
unshare --ipc="$work/ipcns" true || { rm -rf "$work"; die "could not pin a private IPC namespace"; }
unshare --net="$work/netns" true || { umount "$work/ipcns"; rm -rf "$work"; die "could not pin a private network namespace"; }
nsenter --net="$work/netns" ip link set lo up
# Everything of the run is inside both.
inside=(nsenter --ipc="$work/ipcns" --net="$work/netns")
# The pod network, inside the namespace: the bridge and its rules go with it. (containerd adds
# the loopback plugin's lo network itself, from the same plugin directory.)
bridge=critest0 subnet=10.213.0.0/24
[ -z "$peer" ] || bridge=critestcd0 subnet=10.214.0.0/24
mkdir -p "$work/net.d"
cat >"$work/net.d/10-critest.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "critest", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
sock=$work/run/$runtime.sock
registry_pid= runtime_pid= critest_pid=
if [ -z "$peer" ]; then
    echo "critest.sh: work directory $work; berth binaries $bin; $("$critest" -version 2>/dev/null | head -n 1)"
else
    echo "critest.sh: work directory $work; PEER $(/usr/bin/containerd --version | cut -d' ' -f1,3), $(runc --version | head -n 1) (for comparison); $("$critest" -version 2>/dev/null | head -n 1)"
fi

# Processes whose command line names the work directory (berthd's shims, containers' leftovers).
pids_naming_work() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = $$ ] && continue
        # Our own children (the tee of critest's output) are not berthd's leftovers.
        [ "$(cut -d' ' -f4 "/proc/$p/stat" 2>/dev/null)" = $$ ] && continue
        if { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qF "$work/"; then echo "$p"; fi
    done
}
mounts_under_work() { findmnt -rn -o TARGET | awk -v w="$work/" 'index($0, w) == 1' | sort -r; }
# --peer: what containerd or the CNI plugins could leave outside the work directory (the pod
# network is in <work>/netns, pod netns under <work>/state, runc's root under <work>/runc; its
# shims' sockets are in /run/containerd/s, libcni's cache in /var/lib/cni), compared at teardown.
host_traces() {
    echo "# iptables"; iptables-save 2>/dev/null | { grep -v '^#' || true; } | sed 's/ \[[0-9]*:[0-9]*\]$//'
    echo "# ip6tables"; ip6tables-save 2>/dev/null | { grep -v '^#' || true; } | sed 's/ \[[0-9]*:[0-9]*\]$//'
    echo "# link $bridge"; ip -o link show dev "$bridge" 2>/dev/null | cut -d: -f2 || true
    echo "# /var/run/netns"; ls -A /var/run/netns 2>/dev/null || true
    echo "# /run/containerd"; find /run/containerd/s /run/containerd/runc /run/containerd/fifo -mindepth 1 2>/dev/null | sort || true
    echo "# /var/lib/cni"; find /var/lib/cni 2>/dev/null | sort || true
    echo "# cgroups"; find /sys/fs/cgroup -mindepth 2 -type d -name '*cri-containerd*' 2>/dev/null | sort || true
}
[ -z "$peer" ] || host_traces >"$work/host-before"

teardown() {
    local rc=$? t pid n
    trap - EXIT INT TERM
    set +e
    stage teardown
    if [ -n "$critest_pid" ] && kill -0 "$critest_pid" 2>/dev/null; then
        echo "teardown: interrupting critest (it runs its specs' cleanup first)"
        kill -INT "$critest_pid"
        for _ in $(seq 600); do kill -0 "$critest_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$critest_pid" 2>/dev/null
    fi
    if [ -n "$runtime_pid" ] && kill -0 "$runtime_pid" 2>/dev/null; then
        cri=("$crictl" --timeout 60s -r "unix://$sock" -i "unix://$sock")
        for pod in $("${cri[@]}" pods -q 2>/dev/null); do
            "${cri[@]}" stopp "$pod" >/dev/null || echo "teardown: crictl stopp $pod failed"
            "${cri[@]}" rmp "$pod" >/dev/null || echo "teardown: crictl rmp $pod failed"
        done
        n=$("${cri[@]}" ps -a -q 2>/dev/null | wc -l)
        [ "$n" = 0 ] || echo "teardown: LEAK: $n containers still listed after every pod was removed"
        kill -TERM "$runtime_pid"
        for _ in $(seq 100); do kill -0 "$runtime_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$runtime_pid" 2>/dev/null && { echo "teardown: $runtime ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$runtime_pid"; }
        wait "$runtime_pid" 2>/dev/null
    fi
    if [ -n "$registry_pid" ]; then kill -TERM "$registry_pid"; wait "$registry_pid" 2>/dev/null; fi
    # What is left naming the work directory was started by berthd (or the peer: its shims'
    # -address) for this run: a leak.
    sleep 0.5
    leaked=$(pids_naming_work)
    if [ -n "$leaked" ]; then
        echo "teardown: LEAK: processes still naming $work:"
        for pid in $leaked; do echo "  $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)"; done
        for pid in $leaked; do kill -KILL "$pid" 2>/dev/null; done
        sleep 0.5
    fi
    umount "$work/ipcns" "$work/netns" 2>/dev/null
    # Every pod was removed: each address host-local handed out must be back.
    leaked=$(find "$work/ipam" -type f ! -name lock ! -name 'last_reserved_ip*' 2>/dev/null)
    [ -z "$leaked" ] || echo "teardown: LEAK: IP allocations left: $leaked"
    leaked=$(mounts_under_work)
    if [ -n "$leaked" ]; then
        echo "teardown: LEAK: $(echo "$leaked" | wc -l) mounts under $work after $runtime stopped:"
        echo "$leaked" | sed 's/^/  /' | head -n 20
        for t in $leaked; do umount -l "$t" 2>/dev/null; done
    fi
    if [ -n "$peer" ] && [ -f "$work/host-before" ]; then
        # What is certainly containerd's and empty goes first: cri-containerd cgroups that are
        # new, and libcni's cache (/var/lib/cni/results, every result deleted) if there was none.
        host_traces >"$work/host-after"
        for t in $(grep '^/sys/fs/cgroup/' "$work/host-after" | sort -r); do
            grep -qxF "$t" "$work/host-before" || { rmdir "$t" 2>/dev/null && echo "teardown: removed the empty cgroup $t"; }
        done
        if [ -d /var/lib/cni ] && ! grep -qx /var/lib/cni "$work/host-before" && [ -z "$(find /var/lib/cni ! -type d)" ]; then
            rm -rf /var/lib/cni && echo "teardown: removed /var/lib/cni (libcni's cache, created by this run, empty)"
        fi
        # Anything else different is reported and left to look at (it may not be this run's).
        host_traces >"$work/host-after"
        if leaked=$(diff "$work/host-before" "$work/host-after"); then
            echo "teardown: nothing left outside $work (iptables, ip6tables, link $bridge, /var/run/netns, /run/containerd, /var/lib/cni, cgroups)"
        else
            echo "teardown: LEAK: the host changed outside $work during the run (-before +after; not necessarily this run's):"
            echo "$leaked" | grep '^[<>]' | sed 's/^</  -/; s/^>/  +/' | head -n 40
        fi
        cp "$work/host-before" "$work/host-after" "$work/logs/"
    fi
    mkdir -p "$logs"
    rm -rf "${logs:?}"/*
    cp -rf "$work"/logs/* "$logs"/ 2>/dev/null
    # berthd colours its log even into a file: plain text for reading.
    [ -f "$logs/berthd.log" ] && sed -i 's/\x1b\[[0-9;]*m//g' "$logs/berthd.log"
    if [ "$keep" = 1 ]; then
        echo "teardown: kept $work"
    else
        rm -rf "$work" || echo "teardown: could not remove $work"
    fi
    stage_done
    echo "== timings"
    for t in "${timings[@]}"; do echo "   $t"; done
    printf '   %-9s %7s s\n' total "$(since "$t_all")"
    echo "critest.sh: logs in $logs"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- images ---------------------------------------------------------------------------------
stage images
python3 "$root/tests/critest/images.py" prepare --cache "$images"
stage_done

# --- registry -------------------------------------------------------------------------------
stage registry
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
python3 "$root/tests/critest/images.py" registry-config --storage "$images/registry" --addr "$addr" >"$work/registry.yml"
# Own sessions (setsid; no fork here: the job is not a group leader) so that a Ctrl-C reaches critest
# but leaves berthd and the registry to the teardown, which needs them.
setsid "${inside[@]}" docker-registry serve "$work/registry.yml" >"$work/logs/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 300); do
    "${inside[@]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
    kill -0 "$registry_pid" 2>/dev/null || die "docker-registry exited (see $work/logs/registry.log)"
    sleep 0.05
done
echo "registry on $addr (storage $images/registry)"
stage_done

# --- berthd ---------------------------------------------------------------------------------
if [ -z "$peer" ]; then
stage berthd
cat >"$work/berthd.toml" <<EOF
root = "$work/root"
state = "$work/state"
socket = "$sock"
plain_http = ["$addr"]
cni_conf_dir = "$work/net.d"

[mirrors]
"gcr.io" = ["$addr"]
"registry.k8s.io" = ["$addr"]
"k8s.gcr.io" = ["$addr"]
"docker.io" = ["$addr"]
"public.ecr.aws" = ["$addr"]
EOF
cp "$work/berthd.toml" "$work/logs/"
setsid "${inside[@]}" "$bin/berthd" --config "$work/berthd.toml" >"$work/logs/berthd.log" 2>&1 &
runtime_pid=$!

# --- or containerd (--peer containerd) ------------------------------------------------------
else
stage containerd
# Everything it keeps under the work directory; the five registries mirrored to ours over plain
# http; pod netns under its state (not /var/run/netns); runc's root (not /run/containerd/runc);
# plugins that only log why they cannot load here (or write outside) disabled.
m='plugins."io.containerd.grpc.v1.cri".registry.mirrors'
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
temp = "$work/containerd-tmp"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$work/net.d"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "$work/runc"

[$m."docker.io"]
  endpoint = ["http://$addr"]
[$m."registry.k8s.io"]
  endpoint = ["http://$addr"]
[$m."k8s.gcr.io"]
  endpoint = ["http://$addr"]
[$m."gcr.io"]
  endpoint = ["http://$addr"]
[$m."public.ecr.aws"]
  endpoint = ["http://$addr"]
EOF
cp "$work/containerd.toml" "$work/net.d/10-critest.conflist" "$work/logs/"
setsid "${inside[@]}" /usr/bin/containerd --config "$work/containerd.toml" >"$work/logs/containerd.log" 2>&1 &
runtime_pid=$!
fi
for _ in $(seq 300); do
    "$crictl" --timeout 2s -r "unix://$sock" version >/dev/null 2>&1 && break
    kill -0 "$runtime_pid" 2>/dev/null || die "$runtime exited (see $work/logs/$runtime.log)"
    sleep 0.1
done
"$crictl" -r "unix://$sock" version 2>/dev/null
stage_done

# --- critest --------------------------------------------------------------------------------
skip=$(grep -v '^\s*#' "$root/tests/critest/skips.txt" | sed -n 's/^\(.*[^ ]\) *| .*/\1/p' | paste -sd '|')
[ -z "${CRITEST_SKIP:-}" ] || skip="${skip:+$skip|}$CRITEST_SKIP"
args=(-runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock"
    -ginkgo.no-color -ginkgo.timeout 3h -ginkgo.json-report "$work/logs/report.json")
report_args=()
if [ "$benchmark" = 1 ]; then
    stage benchmark
    n=${CRITEST_BENCH_N:-20}
    mkdir -p "$work/logs/benchmark"
    cat >"$work/benchmark.yaml" <<EOF
containersNumber: $n
containersNumberParallel: 1
podsNumber: $n
podsNumberParallel: 1
imagesNumber: $n
imagesNumberParallel: 1
imageBenchmarkTimeoutSeconds: 60
podContainerStartBenchmarkTimeoutSeconds: 10
EOF
    args+=(-benchmark -benchmarking-params-file "$work/benchmark.yaml" -benchmarking-output-dir "$work/logs/benchmark")
    report_args+=(--benchmark-dir "$work/logs/benchmark")
else
    stage critest
    [ -z "$skip" ] || args+=(-ginkgo.skip "$skip")
    report_args+=(--skips "$root/tests/critest/skips.txt")
    # The known failures are berth's: the peer's failures are only listed.
    [ -n "$peer" ] || report_args+=(--known-failures "$root/tests/critest/known-failures.txt")
fi
# For comparison: counts and failures, exit status 0 whatever failed.
[ -z "$peer" ] || report_args+=(--peer "$peer")
echo "critest ${args[*]} ${extra[*]-}"
# In the background, waited for: a SIGTERM or Ctrl-C reaches the trap at once, not when critest ends.
(cd "$work" && exec env TMPDIR="$work/tmp" "${inside[@]}" "$critest" "${args[@]}" ${extra[@]+"${extra[@]}"}) > >(tee "$work/logs/critest.log") 2>&1 &
critest_pid=$!
set +e
wait "$critest_pid"
critest_rc=$?
set -e
critest_pid=
stage_done

# --- report ---------------------------------------------------------------------------------
stage report
[ -s "$work/logs/report.json" ] || { echo "critest.sh: critest wrote no report (exit $critest_rc)"; exit 2; }
set +e
python3 "$root/tests/critest/report.py" "$work/logs/report.json" ${report_args[@]+"${report_args[@]}"} | tee "$work/logs/summary.txt"
report_rc=${PIPESTATUS[0]}
set -e
stage_done
# critest's own status counts the known failures too: the report's is the verdict.
if [ "$report_rc" != 0 ]; then exit 1; fi
exit 0
