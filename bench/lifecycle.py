#!/usr/bin/env python3
"""Side-by-side lifecycle benchmark: berth-oci vs crun vs runc, in one run.

Two scenarios, each for /bin/true in one busybox bundle shared by every runtime:
  cycle  create -> start -> (init exits) -> delete
  run    run (foreground) -> delete
For each runtime and scenario: median and p90 wall time, the peak RSS of any one runtime
process in the sequence (GNU time's %M), and the ratios of medians to crun and runc.

Iterations are interleaved round-robin across runtimes so a noisy neighbour hits all of them
alike. crun 1.8.1 mistakes this host's cgroup v1 hybrid layout for v2 unless the unified
hierarchy's cgroup.controllers looks empty, so the script re-executes itself in a private mount
namespace where an empty file is bound over it; every runtime is measured in that namespace, and
the host's own mounts are never touched.

Usage (root): python3 bench/lifecycle.py [--runs N] [--warmup N] [--berth PATH] [--json]
"""

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import REEXEC_MARK, enter_private_mount_namespace


def spawn(argv, cwd=None):
    """Runs argv to completion; returns (exit status, peak RSS in KiB, stderr text).

    The peak comes from GNU time (a small C program) rather than from our own wait4: a child
    forked from this Python process carries Python's RSS into its ru_maxrss until it execs."""
    with tempfile.NamedTemporaryFile(mode="r") as rss, tempfile.TemporaryFile() as err:
        code = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv], cwd=cwd,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode
        err.seek(0)
        peak = rss.read().strip().splitlines()
        return code, int(peak[-1]) if peak and peak[-1].isdigit() else 0, err.read().decode(errors="replace")


class Runtime:
    def __init__(self, name, path, workdir):
        self.name, self.path = name, path
        self.root = os.path.join(workdir, "state-" + name)
        self.created = set()

    def cmd(self, *args):
        return [self.path, "--root", self.root, *args]

    def must(self, *args, cwd=None):
        code, rss, err = spawn(self.cmd(*args), cwd=cwd)
        if code != 0:
            raise SystemExit(f"{self.name} {' '.join(args)} failed ({code}): {err.strip()}")
        return rss

    def delete(self, cid):
        rss = self.must("delete", cid)
        self.created.discard(cid)
        return rss

    def exists(self, cid):
        """Whether the runtime still holds state for cid (every one keeps it in <root>/<id>)."""
        return os.path.isdir(os.path.join(self.root, cid))


def wait_for_exit(pid):
    """Waits for a process that is not our child (the init is reparented) through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], 30)
    finally:
        os.close(fd)


def cycle(rt, bundle, cid):
    pid_file = os.path.join(rt.root, cid + ".pid")
    peak = rt.must("create", "--bundle", bundle, "--pid-file", pid_file, cid)
    rt.created.add(cid)
    with open(pid_file) as f:
        pid = int(f.read().strip())
    os.unlink(pid_file)
    peak = max(peak, rt.must("start", cid))
    wait_for_exit(pid)
    return max(peak, rt.delete(cid))


def run(rt, bundle, cid):
    """`run` in the foreground; runc, crun and berth-oci all remove the container when it exits,
    so `delete` is only called for what is left."""
    rt.created.add(cid)
    peak = rt.must("run", "--bundle", bundle, cid)
    if rt.exists(cid):
        return max(peak, rt.delete(cid))
    rt.created.discard(cid)
    return peak


SCENARIOS = {"create-start-delete": cycle, "run-delete": run}


def make_bundle(workdir, spec_tool):
    bundle = os.path.join(workdir, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    os.link(os.path.join(rootfs, "bin", "busybox"), os.path.join(rootfs, "bin", "true"))
    subprocess.run([spec_tool, "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    with open(path, "w") as f:
        json.dump(config, f)
    return bundle, "seccomp" in config.get("linux", {})


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def version(path):
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    return (out.stdout.splitlines() or ["?"])[0]


def leftover_cgroups(ids):
    found = []
    for controller in os.listdir("/sys/fs/cgroup"):
        for cid in ids:
            if os.path.exists(os.path.join("/sys/fs/cgroup", controller, cid)):
                found.append(os.path.join(controller, cid))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--berth", default=shutil.which("berth-oci") or "target/release/berth-oci")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--spec", choices=["berth", "runc"], default="berth",
                        help="whose `spec` makes the bundle: berth-oci's (berth's seccomp profile) or runc's (none)")
    parser.add_argument("--only", default="berth-oci,crun,runc",
                        help="comma-separated runtimes to measure (ratios need crun and runc)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the runtimes create real containers")
    enter_private_mount_namespace()

    paths = {"berth-oci": os.path.abspath(args.berth), "crun": shutil.which("crun"), "runc": shutil.which("runc")}
    missing = [name for name, path in paths.items() if not path or not os.path.exists(path)]
    if missing:
        raise SystemExit(f"missing runtimes: {missing} (apt-get install runc crun; cargo build --release)")
    workdir = tempfile.mkdtemp(prefix="berth-bench-")
    runtimes = [Runtime(name, path, workdir) for name, path in paths.items() if name in args.only.split(",")]
    times = {(s, r.name): [] for s in SCENARIOS for r in runtimes}
    peaks = {(s, r.name): 0 for s in SCENARIOS for r in runtimes}
    used_ids = []
    try:
        bundle, seccomp = make_bundle(workdir, paths["berth-oci"] if args.spec == "berth" else shutil.which("runc"))
        for i in range(args.warmup + args.runs):
            for scenario, action in SCENARIOS.items():
                for rt in runtimes:
                    cid = f"bench-{rt.name}-{scenario[:3]}-{i}-{os.getpid()}"
                    used_ids.append(cid)
                    started = time.perf_counter()
                    peak = action(rt, bundle, cid)
                    elapsed = time.perf_counter() - started
                    if i >= args.warmup:
                        times[(scenario, rt.name)].append(elapsed * 1000)
                        peaks[(scenario, rt.name)] = max(peaks[(scenario, rt.name)], peak)
    finally:
        for rt in runtimes:
            for cid in list(rt.created):
                spawn(rt.cmd("delete", "--force", cid))
        shutil.rmtree(workdir, ignore_errors=True)
    leaks = leftover_cgroups(used_ids)

    rows = []
    for scenario in SCENARIOS:
        median = {r.name: statistics.median(times[(scenario, r.name)]) for r in runtimes}
        for rt in runtimes:
            samples = times[(scenario, rt.name)]
            rows.append({
                "scenario": scenario, "runtime": rt.name, "median_ms": round(median[rt.name], 2),
                "p90_ms": round(percentile(samples, 90), 2), "peak_rss_kib": peaks[(scenario, rt.name)],
                "vs_crun": round(median[rt.name] / median["crun"], 2),
                "vs_runc": round(median[rt.name] / median["runc"], 2),
            })
    info = {
        "kernel": os.uname().release, "runs": args.runs, "warmup": args.warmup,
        "versions": {r.name: version(r.path) for r in runtimes},
        "spec": args.spec, "seccomp_profile": seccomp, "masked_unified_controllers": os.environ.get(REEXEC_MARK) == "1",
        "leftover_cgroups": leaks,
    }
    if args.json:
        print(json.dumps({"info": info, "rows": rows}, indent=2))
        return
    print(f"kernel {info['kernel']}; {args.runs} runs after {args.warmup} warm-up, round-robin; "
          f"config from {'berth-oci' if args.spec == 'berth' else 'runc'} spec (seccomp profile: {'yes' if seccomp else 'no'})")
    for name, v in info["versions"].items():
        print(f"  {name}: {v}")
    if info["masked_unified_controllers"]:
        print("  measured in a private mount namespace with the unified cgroup.controllers masked (for crun)")
    print()
    print(f"| {'scenario':<20} | {'runtime':<9} | {'median ms':>9} | {'p90 ms':>7} | {'peak RSS KiB':>12} | {'vs crun':>7} | {'vs runc':>7} |")
    print(f"|{'-' * 22}|{'-' * 11}|{'-' * 11}|{'-' * 9}|{'-' * 14}|{'-' * 9}|{'-' * 9}|")
    for r in rows:
        print(f"| {r['scenario']:<20} | {r['runtime']:<9} | {r['median_ms']:>9.2f} | {r['p90_ms']:>7.2f} | "
              f"{r['peak_rss_kib']:>12} | {r['vs_crun']:>7.2f} | {r['vs_runc']:>7.2f} |")
    if leaks:
        print(f"\nLEFTOVER CGROUPS: {leaks}")
        sys.exit(1)


if __name__ == "__main__":
    main()
