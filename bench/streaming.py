#!/usr/bin/env python3
"""Streaming (CRI Exec and PortForward through the runtime's streaming server), side by side in one
run: berthd vs containerd 1.6 (Debian's, CRI plugin, runc), both driven by the same crictl.

One pod (host network, busybox `sleep`, started by crates/cri/examples/cri_bench.rs) per runtime:
- exec: `crictl exec <container> true`, EXECS times one after another, each a fresh crictl (its
  start-up is in both figures alike, and measured alone as `crictl version`; `exec --sync`, the
  same through ExecSync, shows what the streaming adds): the median wall time, over SPDY and over WebSocket
  (`--transport websocket`; containerd 1.6's server does not speak the v5 WebSocket protocol that
  crictl offers, so its column may be empty);
- port-forward: a busybox httpd in the container serves a MB-sized file of zeros on the pod's
  localhost; `crictl port-forward` (SPDY) listens on a local port and the file is fetched through
  it ROUNDS times: the median throughput in MB/s.

Needs root, the release build (`cargo build --release --workspace --examples`), crictl
(target/go-peers/bin, or CRICTL) and the Debian packages docker-registry skopeo containerd runc
busybox-static.
"""
import argparse, os, shutil, signal, statistics, subprocess, tempfile, time, urllib.request
from benchlib import BerthdInstance, Registry, free_port, wait_for
from pods import ContainerdCri, client, crictl, push_pod_images

CRICTL = os.environ.get("CRICTL", "target/go-peers/bin/crictl")


def crictl_argv(socket, *args):
    return [CRICTL, "--runtime-endpoint", f"unix://{socket}", "--image-endpoint", f"unix://{socket}", *args]


def exec_times(socket, container, count, transport):
    """`crictl exec` (transport "sync": `--sync`, CRI ExecSync without the streaming server;
    "version": `crictl version`, the client's own start-up and one RPC)."""
    argv = {"sync": ["exec", "--sync", container, "true"], "version": ["version"]}.get(transport, ["exec", "--transport", transport, container, "true"])
    times = []
    for _ in range(count):
        started = time.monotonic()
        done = subprocess.run(crictl_argv(socket, *argv), capture_output=True, text=True)
        if done.returncode != 0:
            return None, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        times.append((time.monotonic() - started) * 1000)
    return statistics.median(times), None


def port_forward_mbps(socket, pod, container, size_mb, rounds):
    port = free_port()
    serve = f"mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={size_mb} 2>/dev/null && httpd -p 127.0.0.1:{port} -h /www"
    done = subprocess.run(crictl_argv(socket, "exec", container, "sh", "-c", serve), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"starting the server in the container: {done.stdout}{done.stderr}")
    local = free_port()
    pf = subprocess.Popen(crictl_argv(socket, "port-forward", pod, f"{local}:{port}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"Forwarding from" in pf.stdout.readline(), "crictl port-forward")
        rates = []
        for _ in range(rounds):
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/big", timeout=120) as r:
                got = 0
                while chunk := r.read(1 << 20):
                    got += len(chunk)
            if got != size_mb << 20:
                raise SystemExit(f"port-forward: got {got} bytes of {size_mb} MB")
            rates.append(size_mb / (time.monotonic() - started))
        return statistics.median(rates)
    finally:
        pf.send_signal(signal.SIGINT)
        pf.wait()


def measure(name, socket, image, bench, execs, size_mb, rounds):
    crictl(socket, "pull", image)
    client(bench, "start", socket, image, 1, "stream")
    pod = crictl(socket, "pods", "-q").split()[0]
    container = crictl(socket, "ps", "-q").split()[0]
    result = {"name": name}
    exec_times(socket, container, 3, "spdy")  # warm-up
    result["version_ms"], _ = exec_times(socket, container, execs, "version")
    result["exec_sync_ms"], _ = exec_times(socket, container, execs, "sync")
    result["exec_spdy_ms"], _ = exec_times(socket, container, execs, "spdy")
    result["exec_websocket_ms"], result["websocket_error"] = exec_times(socket, container, execs, "websocket")
    result["port_forward_mbps"] = port_forward_mbps(socket, pod, container, size_mb, rounds)
    client(bench, "teardown", socket)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=30)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bin", default="target/release")
    parser.add_argument("--only", default="berth,containerd")
    args = parser.parse_args()
    bindir = os.path.abspath(args.bin)
    bench = f"{bindir}/examples/cri_bench"
    work = tempfile.mkdtemp(prefix="berth-bench-streaming-")
    registry = Registry(work)
    results = []
    try:
        image = push_pod_images(work, registry)
        cni_dir = f"{work}/cni"
        os.makedirs(cni_dir)
        if "berth" in args.only:
            berthd = BerthdInstance(work, registry, bindir, f'cni_conf_dir = "{cni_dir}"\n')
            try:
                results.append(measure("berth", berthd.socket, image, bench, args.execs, args.size_mb, args.rounds))
            finally:
                berthd.stop()
        if "containerd" in args.only:
            containerd = ContainerdCri(work, registry, f"{registry.address}/bench/pause:v1", cni_dir)
            try:
                results.append(measure("containerd", containerd.socket, image, bench, args.execs, args.size_mb, args.rounds))
            finally:
                containerd.stop()
    finally:
        registry.stop()
        with open("/proc/self/mountinfo") as f:
            mounts = sorted((line.split()[4] for line in f if line.split()[4].startswith(work)), reverse=True)
        for mount in mounts:
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    rows = [("crictl version (client start-up), median (ms)", "version_ms"), ("crictl exec --sync true (no streaming), median (ms)", "exec_sync_ms"),
            ("crictl exec true, SPDY, median (ms)", "exec_spdy_ms"), ("crictl exec true, WebSocket, median (ms)", "exec_websocket_ms"),
            (f"port-forward, {args.size_mb} MB, median (MB/s)", "port_forward_mbps")]
    print(f"{'':52}" + "".join(f"{r['name']:>14}" for r in results) + ("   berth/containerd" if len(results) == 2 else ""))
    for label, key in rows:
        values = [r.get(key) for r in results]
        line = f"{label:52}" + "".join(f"{v:>14.1f}" if v is not None else f"{'-':>14}" for v in values)
        if len(results) == 2 and all(values):
            line += f"   {values[0] / values[1]:>8.2f}"
        print(line)
    for r in results:
        if r.get("websocket_error"):
            print(f"{r['name']}: WebSocket exec failed: {r['websocket_error']}")


if __name__ == "__main__":
    main()
