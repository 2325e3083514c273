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
import argparse, gzip, hashlib, io, json, os, random, shutil, socket, statistics, subprocess, sys, tarfile, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def wait_for(check, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up")

def tar_dirs(sources, extra=None):
    """A tar (bytes) of host directories (as their own paths, without the leading /) plus extra (name, bytes) files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src in sources:
            tar.add(src, arcname=src.lstrip("/"))
        for name, data in extra or []:
            info = tarfile.TarInfo(name); info.size = len(data); info.mode = 0o644; info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()

def write_layout(layout, tag, layers):
    os.makedirs(f"{layout}/blobs/sha256", exist_ok=True)
    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(f"{layout}/blobs/sha256/{digest}", "wb") as f:
            f.write(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}
    descriptors, diff_ids = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        d = put(gzip.compress(tar, compresslevel=6)); d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
        descriptors.append(d)
    config = put(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": descriptors}).encode())
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(f"{layout}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
    with open(f"{layout}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return sum(len(t) for t in layers), sum(d["size"] for d in descriptors)

def big_image_layers():
    rng = random.Random(42)
    base = tar_dirs(["/usr/lib/python3", "/usr/lib/gcc"])
    packages = tar_dirs(["/usr/share/doc", "/usr/share/man"])
    small = tar_dirs([], [(f"data/small/{i // 1000:02d}/f{i:05d}.txt", rng.randbytes(rng.randint(500, 3000)).hex().encode()) for i in range(20_000)])
    large = tar_dirs([], [(f"data/large/blob{i}.bin", rng.randbytes(40 << 20)) for i in range(3)])
    whiteouts = tar_dirs([], [(f"data/small/00/.wh.f{i:05d}.txt", b"") for i in range(100)] + [("usr/share/man/.wh..wh..opq", b"")])
    return [base, packages, small, large, whiteouts]

class Registry:
    def __init__(self, work):
        self.address = f"127.0.0.1:{free_port()}"
        config = f"{work}/registry.yml"
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry-data\nhttp:\n  addr: {self.address}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{self.address}/none"], capture_output=True).returncode in (0, 1) and self._up(), "docker-registry")
    def _up(self):
        try:
            socket.create_connection(tuple(self.address.split(":")), timeout=1).close(); return True
        except OSError:
            return False
    def push(self, layout, tag, repo):
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{self.address}/{repo}:{tag}"], check=True)
    def stop(self):
        self.proc.terminate(); self.proc.wait()

class Berth:
    name = "berth"
    def __init__(self, work, registry, bindir):
        self.dir, self.bindir = f"{work}/berth", bindir
        os.makedirs(self.dir)
        self.socket = f"{self.dir}/run/berth.sock"
        with open(f"{self.dir}/berthd.toml", "w") as f:
            f.write(f'root = "{self.dir}/root"\nsocket = "{self.socket}"\nplain_http = ["{registry.address}"]\nconcurrency = {os.environ.get("BERTH_CONCURRENCY", "4")}\n')
        self.proc = subprocess.Popen([f"{bindir}/berthd", "--config", f"{self.dir}/berthd.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.socket), "berthd")
    def cli(self, *args):
        return subprocess.run([f"{self.bindir}/berth", "--socket", self.socket, *args], check=True, capture_output=True)
    def pull(self, ref):
        self.cli("pull", ref)
    def clean(self, ref):
        self.cli("rmi", ref); self.cli("prune")
    def stop(self):
        self.proc.terminate(); self.proc.wait()

class Containerd:
    name = "containerd"
    def __init__(self, work, registry):
        self.dir = f"{work}/containerd"; os.makedirs(self.dir)
        self.socket = f"{self.dir}/containerd.sock"
        with open(f"{self.dir}/config.toml", "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.socket}"\n[ttrpc]\n  address = "{self.socket}.ttrpc"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        self.proc = subprocess.Popen(["containerd", "--config", f"{self.dir}/config.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(self.ctr("version"), capture_output=True).returncode == 0, "containerd")
    def ctr(self, *args):
        return ["ctr", "--address", self.socket, "--namespace", "bench", *args]
    def pull(self, ref):
        subprocess.run(self.ctr("images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref), check=True, capture_output=True)
    def clean(self, ref):
        subprocess.run(self.ctr("images", "rm", "--sync", ref), check=True, capture_output=True)
        for kind in ("content",):
            subprocess.run(self.ctr(kind, "prune", "references"), capture_output=True)
    def stop(self):
        self.proc.terminate(); self.proc.wait()

class Podman:
    name = "podman"
    def __init__(self, work, registry):
        self.dir = f"{work}/podman"; os.makedirs(self.dir)
        self.registry = registry
    def podman(self, *args):
        return ["podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/runroot", "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", *args]
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
