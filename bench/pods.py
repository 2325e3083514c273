#!/usr/bin/env python3
"""Pods through the CRI, side by side in one run: berthd vs containerd 1.6 (Debian's, CRI plugin,
runc, `restrict_oom_score_adj`).

Pod start: RunPodSandbox + CreateContainer + StartContainer of busybox `sleep`, image present,
timed inside one gRPC client process (crates/cri/examples/cri_bench.rs, release build), so no
client start-up is counted; the pods use the host's network (no CNI for either), or with --cni
each pod its own network from the same CNI config list for both (Debian's bridge + host-local +
portmap: a bridge `bbench0` on 10.239.0.0/16, addresses kept under the run's directory). COUNT pods are
created one after another (the total is the "30 pods" figure), then, with them alive, the RSS of
the daemon and of what each pod adds (berth: its berth-shim; containerd: its shim and its pause
process), then all torn down (StopPodSandbox + RemovePodSandbox). Then LIST pods are created and
ListPodSandbox and ListContainers are timed (medians of 50 each), as the kubelet polls them. Last,
COUNT pods are created all at once (one client, concurrent calls): the wall time.

Each runtime is a private instance in a temporary directory pulling the same busybox image from
Debian's docker-registry on 127.0.0.1 (containerd's sandbox image is a busybox look-alike of pause
from there too). Needs root, `cargo build --release --workspace --examples`, and the Debian
packages docker-registry skopeo containerd runc busybox-static.
"""
import argparse, json, os, shutil, statistics, subprocess, tempfile, time
from benchlib import BerthdInstance, Registry, busybox_layer, memory_kib, pids_with, wait_for, write_layout

def children_of(pids):
    """Direct children of any of `pids` (the pause processes under containerd's shims)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in pids:
            found.append(int(entry))
    return found

class ContainerdCri:
    """containerd with its CRI plugin (runc, overlayfs, oom_score_adj restricted), plain HTTP to the registry."""
    def __init__(self, work, registry, sandbox_image, cni_dir):
        self.dir = f"{work}/containerd"; os.makedirs(self.dir)
        self.socket = f"{self.dir}/containerd.sock"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        with open(f"{self.dir}/config.toml", "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    f'[grpc]\n  address = "{self.socket}"\n[ttrpc]\n  address = "{self.socket}.ttrpc"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n'
                    f'[{cri}]\n  sandbox_image = "{sandbox_image}"\n  restrict_oom_score_adj = true\n  enable_cdi = false\n'
                    f'[{cri}.cni]\n  conf_dir = "{cni_dir}"\n  bin_dir = "/usr/lib/cni"\n'
                    f'[{cri}.containerd]\n  snapshotter = "overlayfs"\n  default_runtime_name = "runc"\n'
                    f'[{cri}.containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
                    f'[{cri}.registry.mirrors."{registry.address}"]\n  endpoint = ["http://{registry.address}"]\n')
        self.log = open(f"{self.dir}/containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", f"{self.dir}/config.toml"], stdout=self.log, stderr=self.log)
        wait_for(lambda: os.path.exists(self.socket), "containerd")
    def stop(self):
        self.proc.terminate(); self.proc.wait(); self.log.close()

def push_pod_images(work, registry):
    """busybox (the pods' containers) and a busybox look-alike of pause (containerd's sandbox
    image, `registry/bench/pause:v1`) pushed to `registry`; returns the busybox image's name."""
    write_layout(f"{work}/layout", "v1", [busybox_layer(work)])
    registry.push(f"{work}/layout", "v1", "bench/busybox")
    write_layout(f"{work}/pause", "v1", [busybox_layer(f"{work}/p")], cmd=("/bin/sleep", "2147483647"))
    registry.push(f"{work}/pause", "v1", "bench/pause")
    return f"{registry.address}/bench/busybox:v1"

def crictl(socket, *args):
    crictl = os.environ.get("CRICTL", "target/go-peers/bin/crictl")
    return subprocess.run([crictl, "--runtime-endpoint", f"unix://{socket}", "--image-endpoint", f"unix://{socket}", *args],
                          check=True, capture_output=True, text=True).stdout

def client(bench, *args):
    done = subprocess.run([bench, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cri_bench {' '.join(map(str, args))}: {done.stderr.strip()}")
    return json.loads(done.stdout)

CNI_BRIDGE = "bbench0"

def write_cni_config(conf_dir, ipam_dir):
    os.makedirs(conf_dir, exist_ok=True)
    conflist = {"cniVersion": "1.0.0", "name": "bench", "plugins": [
        {"type": "bridge", "bridge": CNI_BRIDGE, "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.239.0.0/16"}]], "dataDir": ipam_dir}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    with open(f"{conf_dir}/10-bench.conflist", "w") as f:
        json.dump(conflist, f)

def measure(name, socket, image, daemon_pid, per_pod_pids, bench, count, list_pods):
    result = {"name": name}
    crictl(socket, "pull", image)
    client(bench, "start", socket, image, 2, "warm")
    client(bench, "teardown", socket)
    time.sleep(1)
    daemon_before = memory_kib(daemon_pid)[0]
    started = time.monotonic()
    times = client(bench, "start", socket, image, count, "a")["pod_start_ms"]
    result["pods_total_s"] = time.monotonic() - started
    result["pod_start_median_ms"] = statistics.median(times)
    time.sleep(1)
    result["daemon_rss_before_kib"], result["daemon_rss_after_kib"] = daemon_before, memory_kib(daemon_pid)[0]
    extra = per_pod_pids()
    result["per_pod_processes"] = len(extra) / count
    result["per_pod_rss_kib"] = sum(memory_kib(p)[0] for p in extra) / count
    result["teardown_s"] = client(bench, "teardown", socket)["teardown_ms"] / 1000
    if list_pods:
        client(bench, "start", socket, image, list_pods, "list")
        lists = client(bench, "list", socket, 50)
        result["list_pods_median_ms"] = statistics.median(lists["list_pods_ms"])
        result["list_containers_median_ms"] = statistics.median(lists["list_containers_ms"])
        client(bench, "teardown", socket)
    result["parallel_wall_s"] = client(bench, "parallel", socket, image, count)["wall_ms"] / 1000
    client(bench, "teardown", socket)
    return result

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--list-pods", type=int, default=100, help="pods alive while lists are timed (0: skip)")
    parser.add_argument("--bin", default="target/release", help="where berthd, berth-shim, berth-oci and examples/cri_bench are")
    parser.add_argument("--only", default="berth,containerd")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cni", action="store_true", help="pods on a CNI bridge (the same config for both) instead of the host's network")
    args = parser.parse_args()
    bindir = os.path.abspath(args.bin)
    bench = f"{bindir}/examples/cri_bench"
    work = tempfile.mkdtemp(prefix="berth-bench-pods-")
    registry = Registry(work)
    results = []
    try:
        image = push_pod_images(work, registry)
        # Without --cni berthd gets an empty CNI dir (never the host's) and pods the host's network.
        cni_dir = f"{work}/cni"
        if args.cni:
            write_cni_config(cni_dir, f"{work}/ipam")
            os.environ["CRI_BENCH_POD_NETWORK"] = "1"
        if "berth" in args.only:
            berthd = BerthdInstance(work, registry, bindir, f'cni_conf_dir = "{cni_dir}"\n')
            try:
                shims = lambda: pids_with(berthd.dir, "berth-shim")
                results.append(measure("berth", berthd.socket, image, berthd.proc.pid, shims, bench, args.pods, args.list_pods))
            finally:
                berthd.stop()
        if "containerd" in args.only:
            containerd = ContainerdCri(work, registry, f"{registry.address}/bench/pause:v1", cni_dir)
            try:
                def shims_and_pause():
                    shims = pids_with(containerd.dir, "containerd-shim-runc-v2")
                    return shims + [p for p in children_of(shims) if "sleep" in open(f"/proc/{p}/cmdline").read() and "2147483647" in open(f"/proc/{p}/cmdline").read()]
                results.append(measure("containerd", containerd.socket, image, containerd.proc.pid, shims_and_pause, bench, args.pods, args.list_pods))
            finally:
                containerd.stop()
    finally:
        registry.stop()
        # Whatever a failed run left mounted there (pods' namespace pins, rootfs overlays).
        with open("/proc/self/mountinfo") as f:
            mounts = sorted((line.split()[4] for line in f if line.split()[4].startswith(work)), reverse=True)
        for mount in mounts:
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        if args.cni:
            subprocess.run(["ip", "link", "del", CNI_BRIDGE], capture_output=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base = {r["name"]: r for r in results}
    rows = [("pod start, median (ms)", "pod_start_median_ms"), (f"{args.pods} pods, total (s)", "pods_total_s"), ("teardown (s)", "teardown_s"),
            ("daemon RSS idle (KiB)", "daemon_rss_before_kib"), (f"daemon RSS, {args.pods} pods (KiB)", "daemon_rss_after_kib"),
            ("processes added per pod", "per_pod_processes"), ("RSS added per pod (KiB)", "per_pod_rss_kib"),
            (f"ListPodSandbox, {args.list_pods} pods (ms)", "list_pods_median_ms"), (f"ListContainers, {args.list_pods} pods (ms)", "list_containers_median_ms"),
            (f"{args.pods} pods at once, wall (s)", "parallel_wall_s")]
    print(f"{'':40}" + "".join(f"{r['name']:>14}" for r in results) + ("   berth/containerd" if len(results) == 2 else ""))
    for label, key in rows:
        values = [r.get(key) for r in results]
        line = f"{label:40}" + "".join(f"{v:>14.1f}" if v is not None else f"{'-':>14}" for v in values)
        if len(results) == 2 and all(values) and values[1]:
            line += f"   {values[0] / values[1]:>8.2f}"
        print(line)

if __name__ == "__main__":
    main()
