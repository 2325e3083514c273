#!/usr/bin/env python3
"""Containers from an image, side by side in one run: berth vs podman vs containerd (ctr).

Time: `run --rm <busybox> true` in the foreground, for berth (berthd + berth-shim + berth-oci),
podman (Debian's, conmon + crun) and ctr (containerd + containerd-shim-runc-v2 + runc), interleaved
round-robin after a warm-up; medians, p90 and ratios.
Memory: with 30 containers running `sleep`, the RSS and PSS of each container's supervisor
(berth-shim, containerd-shim-runc-v2, conmon) and of the daemons (berthd, containerd), idle (image
pulled, no container) and with the 30.
Verbs: with one container running `sleep`, `ps` and `exec <it> true` (berth, podman, and ctr's
`tasks ls` and `tasks exec`), interleaved round-robin; medians and ratios to podman.
Scale: with 500 containers running `sleep` (berth and containerd), the time of one list call
(`berth ps -a` vs `ctr containers ls` and `ctr tasks ls`, medians of 10) and the daemon's RSS per
container.

Each tool is a private instance in a temporary directory, pulling the same busybox image from
Debian's docker-registry on 127.0.0.1; every container has no network but loopback. crun refuses
this hybrid cgroup host, so the script runs in a private mount namespace with an empty file over
/sys/fs/cgroup/unified/cgroup.controllers (as lifecycle.py does). Needs root, a release build and
the Debian packages docker-registry skopeo containerd runc podman crun busybox-static.
"""
import argparse, io, os, shutil, statistics, subprocess, tarfile, tempfile, time
from benchlib import BerthdInstance, ContainerdInstance, Registry, busybox_layer, enter_private_mount_namespace, memory_kib, pids_with, podman_argv, write_layout

def run(argv):
    return subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)

class Berth(BerthdInstance):
    name, supervisor = "berth", "berth-shim"
    def __init__(self, work, registry, bindir, shim=None):
        super().__init__(work, registry, bindir, f'shim = "{shim}"\n' if shim else "")
    def pull(self, ref):
        run(self.cli("pull", ref))
    def run_rm(self, ref, name):
        return self.cli("run", "--rm", "--network", "none", ref, "true")
    def start_detached(self, ref, name):
        run(self.cli("run", "-d", "--network", "none", "--name", name, ref, "sleep", "1000"))
    def remove_all(self, names):
        run(self.cli("rm", "-f", *names))
    def daemon_pids(self):
        return [self.proc.pid]
    def supervisor_pids(self):
        return pids_with(f"{self.dir}/state", "berth-shim")
    def list_calls(self):
        return {"berth ps -a": self.cli("ps", "-a")}
    def ps(self):
        return self.cli("ps")
    def exec_true(self, name, i):
        return self.cli("exec", name, "true")

class Containerd(ContainerdInstance):
    name, supervisor = "containerd", "containerd-shim-runc-v2"
    def __init__(self, work, registry):
        super().__init__(work)
    def pull(self, ref):
        run(self.ctr("images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref))
    def run_rm(self, ref, name):
        return self.ctr("run", "--rm", "--snapshotter", "overlayfs", ref, name, "true")
    def start_detached(self, ref, name):
        run(self.ctr("run", "-d", "--snapshotter", "overlayfs", ref, name, "sleep", "1000"))
    def remove_all(self, names):
        for name in names:
            subprocess.run(self.ctr("task", "kill", "-s", "KILL", name), capture_output=True)
        for name in names:
            for _ in range(100):
                if subprocess.run(self.ctr("task", "delete", name), capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            run(self.ctr("containers", "delete", name))
    def daemon_pids(self):
        return [self.proc.pid]
    def supervisor_pids(self):
        return pids_with(self.socket, "containerd-shim-runc-v2")
    def list_calls(self):
        # containers ls reads metadata only; tasks ls asks every shim for its state.
        return {"ctr containers ls": self.ctr("containers", "ls"), "ctr tasks ls": self.ctr("tasks", "ls")}
    def ps(self):
        return self.ctr("tasks", "ls")
    def exec_true(self, name, i):
        return self.ctr("tasks", "exec", "--exec-id", f"bench{i}", name, "true")

class Podman:
    name, supervisor = "podman", "conmon"
    def __init__(self, work, registry):
        self.dir = f"{work}/podman"; os.makedirs(self.dir)
    def podman(self, *args):
        return podman_argv(self.dir, *args)
    def pull(self, ref):
        run(self.podman("pull", "--quiet", "--tls-verify=false", ref))
    def run_rm(self, ref, name):
        return self.podman("run", "--rm", "--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", ref, "true")
    def start_detached(self, ref, name):
        run(self.podman("run", "-d", "--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "--name", name, ref, "sleep", "1000"))
    def remove_all(self, names):
        run(self.podman("rm", "-f", "-t", "0", *names))
    def daemon_pids(self):
        return []
    def ps(self):
        return self.podman("ps")
    def exec_true(self, name, i):
        return self.podman("exec", name, "true")
    def supervisor_pids(self):
        return pids_with(f"{self.dir}/runroot", "conmon")
    def stop(self):
        subprocess.run(self.podman("rm", "-a", "-f", "-t", "0"), capture_output=True)
        subprocess.run(self.podman("rmi", "--all", "--force"), capture_output=True)
        subprocess.run(["umount", "-R", f"{self.dir}/root/overlay"], capture_output=True)

def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

def verbs(tools, ref, runs):
    """`ps` and `exec NAME true` against one running container per tool, interleaved."""
    print(f"\n`ps` and `exec <running container> true`, {runs} runs each after a warm-up, round-robin\n")
    print("| tool       | ps median ms | exec median ms | ps vs podman | exec vs podman |")
    print("|------------|--------------|----------------|--------------|----------------|")
    for tool in tools:
        tool.start_detached(ref, "verbs")
    samples = {(t.name, verb): [] for t in tools for verb in ("ps", "exec")}
    for i in range(runs + 1):
        for tool in tools:
            for verb, argv in (("ps", tool.ps()), ("exec", tool.exec_true("verbs", i))):
                start = time.perf_counter()
                run(argv)
                if i > 0:
                    samples[(tool.name, verb)].append(time.perf_counter() - start)
    med = {key: statistics.median(values) for key, values in samples.items()}
    ratio = lambda name, verb: f"{med[(name, verb)] / med[('podman', verb)]:.2f}" if ("podman", verb) in med else "-"
    for tool in tools:
        print(f"| {tool.name:<10} | {med[(tool.name, 'ps')] * 1000:12.1f} | {med[(tool.name, 'exec')] * 1000:14.1f} | {ratio(tool.name, 'ps'):>12} | {ratio(tool.name, 'exec'):>14} |")
    for tool in tools:
        tool.remove_all(["verbs"])

def scale(tools, ref, count):
    """List calls and daemon memory with `count` containers running, per tool."""
    print(f"\nwith {count} containers running `sleep`: one list call (median of 10, client process included) and the daemon's RSS\n")
    print("| tool       | list call             | median ms | vs berth | daemon RSS KiB idle -> loaded | per container KiB |")
    print("|------------|-----------------------|-----------|----------|-------------------------------|-------------------|")
    names = [f"s{i}" for i in range(count)]
    medians, rows = {}, []
    for tool in tools:
        before = memory_kib(tool.daemon_pids()[0])[0]
        started = time.perf_counter()
        for name in names:
            tool.start_detached(ref, name)
        print(f"({tool.name}: {count} containers started in {time.perf_counter() - started:.1f} s)")
        time.sleep(2)
        after = memory_kib(tool.daemon_pids()[0])[0]
        for label, argv in tool.list_calls().items():
            samples = []
            for _ in range(11):
                start = time.perf_counter()
                run(argv)
                samples.append(time.perf_counter() - start)
            medians[label] = statistics.median(samples[1:])
            rows.append((tool.name, label, before, after))
        tool.remove_all(names)
    base = medians.get("berth ps -a")
    for name, label, before, after in rows:
        ratio = f"{medians[label] / base:.2f}" if base else "-"
        print(f"| {name:<10} | {label:<21} | {medians[label] * 1000:9.1f} | {ratio:>8} | {before:>13} -> {after:<13} | {(after - before) / count:17.1f} |")

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--containers", type=int, default=30, help="running containers for the memory figures")
    parser.add_argument("--bin", default="target/release", help="where berthd, berth, berth-shim and berth-oci are")
    parser.add_argument("--only", default="berth,podman,containerd", help="comma-separated tools")
    parser.add_argument("--shim", help="the berth-shim binary berthd runs (default: the one in --bin), e.g. a static build")
    parser.add_argument("--scale", type=int, default=500, help="running containers for the list figures (0: skip)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    bindir = os.path.abspath(args.bin)
    enter_private_mount_namespace()
    work = tempfile.mkdtemp(prefix="berth-ctr-bench-")
    tools, registry = [], None
    try:
        write_layout(f"{work}/busybox", "v1", [busybox_layer(work)])
        registry = Registry(work)
        registry.push(f"{work}/busybox", "v1", "bench/busybox")
        ref = f"{registry.address}/bench/busybox:v1"
        makers = {"berth": lambda: Berth(work, registry, bindir, args.shim and os.path.abspath(args.shim)), "podman": lambda: Podman(work, registry), "containerd": lambda: Containerd(work, registry)}
        tools = [make() for name, make in makers.items() if name in args.only.split(",")]
        for tool in tools:
            tool.pull(ref)
        idle = {t.name: [memory_kib(p) for p in t.daemon_pids()] for t in tools}
        times = {t.name: [] for t in tools}
        for i in range(args.runs + 1):
            for tool in tools:
                argv = tool.run_rm(ref, f"rm{i}")
                start = time.perf_counter()
                out = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
                elapsed = time.perf_counter() - start
                if out.returncode != 0:
                    raise SystemExit(f"{tool.name}: {' '.join(argv)}: {out.stderr.decode(errors='replace')}")
                if i > 0:
                    times[tool.name].append(elapsed)
        print(f"`run --rm busybox true`, {args.runs} runs each after a warm-up, round-robin\n")
        print("| tool       | median ms | p90 ms | vs podman | vs containerd |")
        print("|------------|-----------|--------|-----------|---------------|")
        med = {name: statistics.median(v) for name, v in times.items()}
        ratio = lambda name, peer: f"{med[name] / med[peer]:.2f}" if peer in med else "-"
        for name, values in times.items():
            print(f"| {name:<10} | {med[name] * 1000:9.1f} | {percentile(values, 90) * 1000:6.1f} | {ratio(name, 'podman'):>9} | {ratio(name, 'containerd'):>13} |")

        verbs(tools, ref, args.runs)

        names = [f"c{i}" for i in range(args.containers)]
        print(f"\nmemory with {args.containers} containers running `sleep` (KiB; per supervisor: median)\n")
        print("| tool       | supervisor              | RSS   | PSS   | daemon idle RSS/PSS | daemon with containers RSS/PSS |")
        print("|------------|-------------------------|-------|-------|---------------------|--------------------------------|")
        for tool in tools:
            for name in names:
                tool.start_detached(ref, name)
            time.sleep(1)
            supervisors = [memory_kib(p) for p in tool.supervisor_pids()]
            loaded = [memory_kib(p) for p in tool.daemon_pids()]
            if len(supervisors) != args.containers:
                print(f"({tool.name}: found {len(supervisors)} supervisors for {args.containers} containers)")
            rss = statistics.median(s[0] for s in supervisors) if supervisors else 0
            pss = statistics.median(s[1] for s in supervisors) if supervisors else 0
            daemon = lambda m: f"{m[0][0]}/{m[0][1]}" if m else "-"
            print(f"| {tool.name:<10} | {tool.supervisor:<23} | {rss:5.0f} | {pss:5.0f} | {daemon(idle[tool.name]):>19} | {daemon(loaded):>30} |")
            tool.remove_all(names)

        scaled = [t for t in tools if hasattr(t, "list_calls")]
        if args.scale and scaled:
            scale(scaled, ref, args.scale)
    finally:
        for tool in tools:
            tool.stop()
        if registry:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
