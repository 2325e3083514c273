#!/bin/sh
# Installs the Debian packages berth builds and tests with (run as root on Debian bookworm).
#   build:  libseccomp-dev pkg-config (libseccomp for berth-oci's seccomp filters)
#           protobuf-compiler (protoc, for the berth.v1 gRPC API)
#   tests:  python3 (test-vm.sh, fuzz seeds), util-linux (setpriv), passwd (useradd), tar,
#           busybox-static (test rootfs), libc6-dev (a static syscall probe), containerd podman (peer tests),
#           uidmap (rootless), libcap2-bin (file capabilities), iptables,
#           containernetworking-plugins (CNI: bridge, host-local, portmap in /usr/lib/cni),
#           iproute2 (`ip`: berthd deletes a removed network's bridge; the network tests' checks),
#           docker-registry skopeo apache2-utils (image tests: a local registry, pushes, htpasswd),
#           openssl (the streaming server's TLS test makes its certificate)
#   fuzz:   g++ (libFuzzer, built by libfuzzer-sys)
#   bench:  runc crun hyperfine (side-by-side benchmarks)
#   run:    tini (its static build is what `berth run --init` runs as the container's PID 1)
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    libseccomp-dev pkg-config gcc g++ libc6-dev protobuf-compiler \
    busybox-static procps python3 util-linux passwd tar \
    containerd podman uidmap iptables iproute2 containernetworking-plugins libcap2-bin docker-registry skopeo apache2-utils openssl \
    runc crun hyperfine time tini >/dev/null
