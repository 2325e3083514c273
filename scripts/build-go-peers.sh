#!/bin/sh
# Builds the Kubernetes test peers from the Go module proxy into target/go-peers/bin/:
#   crictl   go install sigs.k8s.io/cri-tools/cmd/crictl at the cri-tools version of peers/critest/go.mod
#   critest  go test -c of peers/critest (cri-tools' validation + benchmark specs, our runner)
#   kubelet  go build k8s.io/kubernetes/cmd/kubelet in peers/kubelet (staging modules replaced)
# Module and build caches are the machine's, ~/.cache/berth-go/{mod,build} (unless GOMODCACHE or
# GOCACHE are set), so they outlive a clean clone and only a machine's first run downloads and
# compiles (about 6 minutes on 2 cores; 15 s after); a binary whose inputs are unchanged (a content hash
# of its go.mod, go.sum, our sources and this script, kept beside it) is not rebuilt.
# Without a `go` command this prints a warning and exits 0 having built nothing: callers check for
# the binaries and report the Kubernetes peer tests as skipped.
# Usage: scripts/build-go-peers.sh [crictl] [critest] [kubelet]   (default: all three)
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/target/go-peers/bin"

if ! command -v go >/dev/null 2>&1; then
    if [ -x /usr/local/go/bin/go ]; then
        PATH="$PATH:/usr/local/go/bin"
    else
        echo "################################################################" >&2
        echo "WARNING: no 'go' command: crictl, critest and kubelet NOT built;" >&2
        echo "WARNING: the Kubernetes peer tests will be skipped." >&2
        echo "################################################################" >&2
        echo "go-peers: skipped (no go)"
        exit 0
    fi
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/berth-go"
export GOMODCACHE="${GOMODCACHE:-$cache/mod}"
export GOCACHE="${GOCACHE:-$cache/build}"
export GOTOOLCHAIN=local
# -modcacherw: a plain `rm -rf target` (cargo clean) can delete the module cache.
export GOFLAGS="${GOFLAGS:-} -modcacherw"
mkdir -p "$out" "$GOMODCACHE" "$GOCACHE"
echo "go-peers: $(go version); GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE"

# inputs_hash FILE...: one hash of the files' contents.
inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# up_to_date NAME HASH: the binary exists and was built from inputs with this hash.
up_to_date() {
    [ -x "$out/$1" ] && [ -f "$out/.$1.inputs" ] && [ "$(cat "$out/.$1.inputs")" = "$2" ]
}

# stage NAME HASH COMMAND...: runs COMMAND unless NAME is up to date; prints how long it took.
stage() {
    name=$1 hash=$2
    shift 2
    start=$(date +%s)
    if up_to_date "$name" "$hash"; then
        echo "go-peers: $name up to date"
        return
    fi
    echo "go-peers: building $name ..."
    rm -f "$out/.$name.inputs"
    "$@"
    echo "$hash" >"$out/.$name.inputs"
    echo "go-peers: $name built in $(($(date +%s) - start)) s"
}

# module_version DIR MODULE: the version of MODULE that DIR's go.mod selects.
module_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

self="$root/scripts/build-go-peers.sh"
ct="$root/peers/critest"
kl="$root/peers/kubelet"

build_crictl() {
    v=$(module_version "$ct" sigs.k8s.io/cri-tools)
    GOBIN="$out" go install -trimpath \
        -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$v" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$v"
}

build_critest() {
    v=$(module_version "$ct" sigs.k8s.io/cri-tools)
    (cd "$ct" && go test -c -trimpath -o "$out/critest" \
        -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$v" .)
}

build_kubelet() {
    # The version stamps hack/lib/version.sh would set, from the module's version and date.
    vt=$(cd "$kl" && go list -m -f '{{.Version}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' \
        k8s.io/kubernetes)
    v=${vt% *} date=${vt#* }
    minor=${v#v1.}
    minor=${minor%%.*}
    ldflags=""
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        ldflags="$ldflags -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    (cd "$kl" && go build -trimpath -ldflags "$ldflags" -o "$out/kubelet" k8s.io/kubernetes/cmd/kubelet)
}

[ $# -gt 0 ] || set -- crictl critest kubelet
total=$(date +%s)
for peer in "$@"; do
    case $peer in
    crictl) stage crictl "$(inputs_hash "$ct/go.mod" "$self")" build_crictl ;;
    critest) stage critest "$(inputs_hash "$ct/go.mod" "$ct/go.sum" "$ct"/*.go "$self")" build_critest ;;
    kubelet) stage kubelet "$(inputs_hash "$kl/go.mod" "$kl/go.sum" "$self")" build_kubelet ;;
    *)
        echo "unknown peer: $peer (crictl, critest, kubelet)" >&2
        exit 2
        ;;
    esac
done
echo "go-peers: done in $(($(date +%s) - total)) s; binaries in $out"
