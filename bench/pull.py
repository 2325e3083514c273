#!/usr/bin/env python3
"""Side-by-side cold pull+unpack benchmark: berthd vs containerd (ctr) vs podman, in one run.

Builds a ~400 MB, 5-layer image (a base layer of real libraries, a "package" layer of real
documentation, 20,000 small files, a few large random files, a whiteout layer) and a busybox
image, pushes both to Debian's docker-registry on 127.0.0.1, then times cold pulls (store emptied
between runs) for each tool, interleaved round-robin, and prints medians and ratios.

Everything (registry storage, every store) lives on a fresh tmpfs unless --disk: the shared disk's
ext4 inode allocator made runs vary by 3x. Each tool runs as a private instance in a temporary directory (berthd with its own root and
socket; containerd with its own root, state and socket, CRI off; podman with its own storage).
Needs root, the binaries built in release mode (cargo build --release), and the Debian packages
docker-registry skopeo containerd podman busybox-static.
"""
import argparse, os, random, shutil, statistics, subprocess, tempfile, time
from benchlib import BerthdInstance, ContainerdInstance, Registry, podman_argv, tar_dirs, write_layout

def big_image_layers():
    rng = random.Random(42)
    base = tar_dirs(["/usr/lib/python3", "/usr/lib/gcc"])
    packages = tar_dirs(["/usr/share/doc", "/usr/share/man"])
    small = tar_dirs([], [(f"data/small/{i // 1000:02d}/f{i:05d}.txt", rng.randbytes(rng.randint(500, 3000)).hex().encode()) for i in range(20_000)])
    large = tar_dirs([], [(f"data/large/blob{i}.bin", rng.randbytes(40 << 20)) for i in range(3)])
    whiteouts = tar_dirs([], [(f"data/small/00/.wh.f{i:05d}.txt", b"") for i in range(100)] + [("usr/share/man/.wh..wh..opq", b"")])
    return [base, packages, small, large, whiteouts]

class Berth(BerthdInstance):
    name = "berth"
    def __init__(self, work, registry, bindir):
        super().__init__(work, registry, bindir, f'concurrency = {os.environ.get("BERTH_CONCURRENCY", "4")}\n')
    def pull(self, ref):
        subprocess.run(self.cli("pull", ref), check=True, capture_output=True)
    def clean(self, ref):
        subprocess.run(self.cli("rmi", ref), check=True, capture_output=True)
        subprocess.run(self.cli("prune"), check=True, capture_output=True)

class Containerd(ContainerdInstance):
    name = "containerd"
    def __init__(self, work, registry):
        super().__init__(work)
    def pull(self, ref):
        subprocess.run(self.ctr("images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref), check=True, capture_output=True)
    def clean(self, ref):
        subprocess.run(self.ctr("images", "rm", "--sync", ref), check=True, capture_output=True)
        subprocess.run(self.ctr("content", "prune", "references"), capture_output=True)

class Podman:
    name = "podman"
    def __init__(self, work, registry):
        self.dir = f"{work}/podman"; os.makedirs(self.dir)
    def podman(self, *args):
        return podman_argv(self.dir, *args)
    def pull(self, ref):
        subprocess.run(self.podman("pull", "--quiet", "--tls-verify=false", ref), check=True, capture_output=True)
    def clean(self, ref):
        subprocess.run(self.podman("rmi", "--all", "--force"), check=True, capture_output=True)
    def stop(self):
        subprocess.run(self.podman("rmi", "--all", "--force"), capture_output=True)
        subprocess.run(["umount", "-R", f"{self.dir}/root/overlay"], capture_output=True)

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bin", default="target/release", help="where berthd and berth are")
    parser.add_argument("--only", default="berth,containerd,podman", help="comma-separated tools (ratios need containerd and podman)")
    parser.add_argument("--disk", action="store_true", help="work on the disk under /tmp instead of a fresh tmpfs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    bindir = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="berth-pull-bench-")
    if not args.disk:
        # A fresh tmpfs for every store alike: on this shared disk, ext4's inode allocator slows down
        # by several times for whoever creates files where many were recently deleted.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12g,mode=0700", "berth-pull-bench", work], check=True)
    tools = []
    registry = None
    try:
        t0 = time.time()
        big = big_image_layers()
        raw, compressed = write_layout(f"{work}/big", "v1", big)
        bb = tempfile.mkdtemp(dir=work)
        os.makedirs(f"{bb}/bin"); shutil.copy("/bin/busybox", f"{bb}/bin/busybox")
        write_layout(f"{work}/busybox", "v1", [tar_dirs([], [("bin/busybox", open("/bin/busybox", "rb").read())])])
        registry = Registry(work)
        registry.push(f"{work}/big", "v1", "bench/big")
        registry.push(f"{work}/busybox", "v1", "bench/busybox")
        print(f"image: 5 layers, {raw / 1e6:.0f} MB uncompressed, {compressed / 1e6:.0f} MB compressed (built and pushed in {time.time() - t0:.0f} s)")
        chosen = args.only.split(",")
        makers = {"berth": lambda: Berth(work, registry, bindir), "containerd": lambda: Containerd(work, registry), "podman": lambda: Podman(work, registry)}
        tools = [make() for name, make in makers.items() if name in chosen]
        images = {"big": f"{registry.address}/bench/big:v1", "busybox": f"{registry.address}/bench/busybox:v1"}
        times = {(i, t.name): [] for i in images for t in tools}
        for run in range(args.runs + 1):
            for image, ref in images.items():
                for tool in tools:
                    start = time.perf_counter(); tool.pull(ref); elapsed = time.perf_counter() - start
                    tool.clean(ref)
                    if run > 0:
                        times[(image, tool.name)].append(elapsed)
        print(f"\n{args.runs} cold pulls each after 1 warm-up, round-robin; medians\n")
        print(f"| image   | tool       | median s | vs containerd | vs podman |")
        print(f"|---------|------------|----------|---------------|-----------|")
        for image in images:
            med = {t.name: statistics.median(times[(image, t.name)]) for t in tools}
            ratio = lambda name, peer: f"{med[name] / med[peer]:.2f}" if peer in med else "-"
            for t in tools:
                print(f"| {image:<7} | {t.name:<10} | {med[t.name]:8.2f} | {ratio(t.name, 'containerd'):>13} | {ratio(t.name, 'podman'):>9} |")
    finally:
        for tool in tools:
            tool.stop()
        if registry:
            registry.stop()
        if not args.disk:
            subprocess.run(["umount", "-R", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
