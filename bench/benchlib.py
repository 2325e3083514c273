"""What the benchmarks share: a private docker-registry on 127.0.0.1, OCI layouts written from
tars, waiting helpers, and the private mount namespace that lets crun run on this hybrid host."""
import hashlib, gzip, io, json, os, shutil, socket, subprocess, sys, tarfile, time

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

def write_layout(layout, tag, layers, cmd=("sh",)):
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
    config = put(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": list(cmd)}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": descriptors}).encode())
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(f"{layout}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
    with open(f"{layout}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return sum(len(t) for t in layers), sum(d["size"] for d in descriptors)

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

UNIFIED_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
REEXEC_MARK = "BERTH_BENCH_IN_NAMESPACE"


def enter_private_mount_namespace():
    """Re-executes this script under unshare -m with the unified controllers file masked."""
    if os.environ.get(REEXEC_MARK) == "1":
        return
    if not os.path.exists(UNIFIED_CONTROLLERS):
        return  # not a hybrid host: nothing to mask
    env = dict(os.environ, **{REEXEC_MARK: "1"})
    script = 'mount --bind /dev/null "$1" && shift && exec "$@"'
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "-",
               UNIFIED_CONTROLLERS, sys.executable, *sys.argv]
    os.execvpe("unshare", command, env)


class BerthdInstance:
    """A berthd of its own under work/berth (root, state, socket, config), pulling from registry."""
    def __init__(self, work, registry, bindir, extra_config=""):
        self.dir, self.bindir = f"{work}/berth", bindir
        os.makedirs(self.dir)
        self.socket = f"{self.dir}/run/berth.sock"
        with open(f"{self.dir}/berthd.toml", "w") as f:
            f.write(f'root = "{self.dir}/root"\nsocket = "{self.socket}"\nstate = "{self.dir}/state"\nplain_http = ["{registry.address}"]\n{extra_config}')
        self.proc = subprocess.Popen([f"{bindir}/berthd", "--config", f"{self.dir}/berthd.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.socket), "berthd")
    def cli(self, *args):
        return [f"{self.bindir}/berth", "--socket", self.socket, *args]
    def stop(self):
        self.proc.terminate(); self.proc.wait()


class ContainerdInstance:
    """A containerd of its own under work/containerd (CRI off), driven with ctr in namespace bench."""
    def __init__(self, work):
        self.dir = f"{work}/containerd"; os.makedirs(self.dir)
        self.socket = f"{self.dir}/containerd.sock"
        with open(f"{self.dir}/config.toml", "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.socket}"\n[ttrpc]\n  address = "{self.socket}.ttrpc"\n[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        self.proc = subprocess.Popen(["containerd", "--config", f"{self.dir}/config.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(self.ctr("version"), capture_output=True).returncode == 0, "containerd")
    def ctr(self, *args):
        return ["ctr", "--address", self.socket, "--namespace", "bench", *args]
    def stop(self):
        self.proc.terminate(); self.proc.wait()


def podman_argv(directory, *args):
    """podman with its own storage under directory, cgroupfs, file events."""
    return ["podman", "--root", f"{directory}/root", "--runroot", f"{directory}/runroot", "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]


def memory_kib(pid):
    """(RSS, PSS) of a process in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss

def pids_with(needle, program):
    """Processes named `program` whose command line contains `needle`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) == program and needle.encode() in b" ".join(argv):
            found.append(int(entry))
    return found

def busybox_layer(work):
    """A layer of Debian's busybox-static with the applets used here as hard links."""
    rootfs = f"{work}/rootfs"
    os.makedirs(f"{rootfs}/bin")
    shutil.copy("/bin/busybox", f"{rootfs}/bin/busybox")
    for applet in ("sh", "true", "sleep"):
        os.link(f"{rootfs}/bin/busybox", f"{rootfs}/bin/{applet}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    return buf.getvalue()
