#!/usr/bin/env python3
"""A real kubelet runs static pods on berthd: the CRI's end-to-end test (scripts/kubelet-test.sh
runs this inside a private network namespace; read that script's header for the why).

The kubelet (v1.36, built from the Go module proxy by scripts/build-go-peers.sh) runs standalone: no
API server, static pods from a manifest directory, berthd's CRI socket as its runtime and image
endpoint, cgroupfs under a cgroup root of its own, cgroup v1 allowed. What is checked, in order:

  1. the static pods (tests/kubelet/manifests) reach Running and Ready in the kubelet's read-only
     API (:10255/pods): a hostNetwork one; one Ready only through its exec readiness probe
     (ExecSync); one on the pod network (a CNI bridge of the test's own, in the private network
     namespace), Ready through an HTTP probe at its pod IP, which the test fetches from too; one
     with hostUsers: false (a user namespace of its own, the kubelet's id range);
  2. the pods are berth's (crictl on berthd's socket lists them, with the kubelet's labels);
  3. the container's log is in the pod log directory, in the CRI log format, with its line;
  3a. the hostUsers: false pod's container is root only inside: its uid map is the kubelet's
     range, and its init runs as that range's first uid on the host;
  3b. streaming (berth's streaming server behind CRI Exec, Attach and PortForward), with crictl on
     berthd's socket over each transport (SPDY and WebSocket): `exec -it` in a pty (typed input
     runs, the terminal's size and a resize reach the container, the exit code comes back), `exec
     -i` with stdin, a non-zero exit code, `attach -i` to the attach pod's shell, `port-forward`
     to the web pod's server; and the kubelet's own exec path, as the API server uses it:
     /exec/{namespace}/{pod}/{container} on its :10250 API, upgraded to a WebSocket;
  4. a kubelet restart adopts the running pods: same sandbox and container ids, same init pid,
     restart count 0, Ready again;
  5. removing a manifest removes the pod: gone from the kubelet, and from berthd (sandbox removed);
  6. teardown leaves nothing: every pod removed, no process or mount naming the work directory, no
     cgroup under the kubelet's root, no /var/log/containers link, no IP allocation, the kernel
     tunables the kubelet sets put back.

Python 3 standard library only. Exit status: 0 passed, 1 a check failed, 2 the harness could not run.
"""
import argparse
import base64
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import time
import traceback
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = os.path.join(ROOT, "tests", "kubelet", "manifests")
IMAGES_PY = os.path.join(ROOT, "tests", "critest", "images.py")
CGROUP_V1 = "/sys/fs/cgroup"
POD_LOG_LINE = "hello from a static pod on berth"
# What the kubelet writes at start-up (setupKernelTunables, unless protectKernelDefaults): put back.
KERNEL_TUNABLES = ["vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"]
CONTAINER_LOG_LINKS = "/var/log/containers"
READ_ONLY_API = "http://127.0.0.1:10255"
HEALTHZ = "http://127.0.0.1:10248/healthz"
POD_SUBNET = "10.244.0.0/24"
WEB_LINE = "hello from the pod network"
PODS = ("hostnet", "probe", "web", "attach", "userns")
KUBELET_API = ("127.0.0.1", 10250)
TRANSPORTS = ("spdy", "websocket")


def read_until(fd, needle, timeout, seen=b""):
    """Reads fd until `needle` (bytes) is in what was read; returns all of it. Failed on timeout or EOF."""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise Failed(f"waited {timeout} s for {needle!r}; got {seen[-400:]!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # a pty's master reads EIO once the other side is closed
            chunk = b""
        if not chunk:
            raise Failed(f"end of output before {needle!r}; got {seen[-400:]!r}")
        seen += chunk
    return seen


def websocket_exec(path, protocol="v4.channel.k8s.io", timeout=30):
    """A WebSocket exec through the kubelet's HTTPS API, as the API server proxies one: the
    channels' bytes (1 stdout, 2 stderr, 3 error) once the server closes."""
    raw = socket.create_connection(KUBELET_API, timeout=timeout)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the kubelet's self-signed certificate
    s = ctx.wrap_socket(raw)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {KUBELET_API[0]}:{KUBELET_API[1]}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise Failed(f"kubelet closed during the upgrade: {buf!r}")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise Failed(f"kubelet /exec answered {head.decode(errors='replace')!r} {buf[:300]!r}")
    channels = {}

    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                return False
            buf += chunk
        return True
    while need(2):
        opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if length == 126:
            need(4)
            length, at = struct.unpack(">H", buf[2:4])[0], 4
        elif length == 127:
            need(10)
            length, at = struct.unpack(">Q", buf[2:10])[0], 10
        if not need(at + length):
            break
        payload, buf = buf[at:at + length], buf[at + length:]
        if opcode == 8:
            break
        if opcode == 2 and payload:
            channels[payload[0]] = channels.get(payload[0], b"") + payload[1:]
    s.close()
    return channels


class Failed(Exception):
    """A check failed: exit 1."""


class CannotRun(Exception):
    """The harness could not set up: exit 2."""


T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", flush=True)


def wait_for(what, check, timeout):
    """Polls check() (a value, or None while not yet) until it gives a value; Failed after timeout."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        try:
            value = check()
        except (OSError, ValueError, subprocess.CalledProcessError) as e:
            value, last = None, e
        if value is not None:
            log(f"{what}: after {time.monotonic() - start:.1f} s")
            return value
        time.sleep(0.25)
    raise Failed(f"{what}: not within {timeout} s" + (f" (last error: {last})" if last else ""))


def http_get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read(16 << 20)


class Harness:
    def __init__(self, args):
        self.bin = args.bin
        self.peers = args.peers
        self.images = args.images
        self.logs = args.logs
        self.keep = args.keep
        self.work = tempfile.mkdtemp(prefix="kubelet-", dir="/tmp")
        os.chmod(self.work, 0o711)
        self.sock = f"{self.work}/run/berthd.sock"
        # The second socket berthd serves (both APIs on each): the kubelet uses this one.
        self.cri_sock = f"{self.work}/run/cri.sock"
        self.cgroup_root = "/" + os.path.basename(self.work)
        self.procs = {}
        self.tunables = {}
        self.had_log_links_dir = os.path.isdir(CONTAINER_LOG_LINKS)
        self.leaks = []
        os.makedirs(f"{self.work}/logs")
        os.makedirs(f"{self.work}/manifests")

    # --- processes --------------------------------------------------------------------------
    def spawn(self, name, argv):
        out = open(f"{self.work}/logs/{name}.log", "ab")
        # Own session: a Ctrl-C of the harness reaches the harness, which stops them in order.
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        out.close()
        return self.procs[name]

    def stop(self, name, timeout=30):
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{name} ignored SIGTERM for {timeout} s: SIGKILL")
            p.kill()
            p.wait()

    def crictl(self, *args, timeout=60):
        cmd = [f"{self.peers}/crictl", "--timeout", "30s", "-r", f"unix://{self.sock}", "-i", f"unix://{self.sock}", *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout

    # --- setup ------------------------------------------------------------------------------
    def start_registry(self):
        subprocess.run([sys.executable, IMAGES_PY, "prepare", "--cache", self.images], check=True)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.registry = f"127.0.0.1:{s.getsockname()[1]}"
        s.close()
        config = subprocess.run([sys.executable, IMAGES_PY, "registry-config", "--storage", f"{self.images}/registry",
                                 "--addr", self.registry], check=True, capture_output=True, text=True).stdout
        with open(f"{self.work}/registry.yml", "w") as f:
            f.write(config)
        p = self.spawn("registry", ["docker-registry", "serve", f"{self.work}/registry.yml"])

        def up():
            if p.poll() is not None:
                raise CannotRun(f"docker-registry exited (see {self.logs}/registry.log)")
            socket.create_connection(self.registry.split(":"), timeout=1).close()
            return True
        wait_for(f"registry on {self.registry}", up, 30)

    def start_berthd(self):
        mirrors = "".join(f'"{r}" = ["{self.registry}"]\n' for r in ("registry.k8s.io", "docker.io"))
        # The pod network: Debian's bridge, host-local and portmap, inside the test's network
        # namespace (the bridge and its rules go with it); allocations under the work dir.
        os.makedirs(f"{self.work}/net.d")
        with open(f"{self.work}/net.d/10-kubelet-test.conflist", "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "kubelet-test", "plugins": [
                {"type": "bridge", "bridge": "kubelet0", "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{self.work}/ipam"}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}, f)
        with open(f"{self.work}/berthd.toml", "w") as f:
            f.write(f'root = "{self.work}/root"\nstate = "{self.work}/state"\nsocket = "{self.sock}"\n'
                    f'extra_sockets = ["{self.cri_sock}"]\nplain_http = ["{self.registry}"]\n'
                    f'cni_conf_dir = "{self.work}/net.d"\n\n[mirrors]\n{mirrors}')
        p = self.spawn("berthd", [f"{self.bin}/berthd", "--config", f"{self.work}/berthd.toml"])

        def up():
            if p.poll() is not None:
                raise CannotRun(f"berthd exited (see {self.logs}/berthd.log)")
            self.crictl("version")
            return True
        wait_for("berthd answers on its socket", up, 30)

    def make_cgroup_root(self):
        """The kubelet wants its cgroup root to exist in every v1 hierarchy; its own, so that
        teardown can prove it empty."""
        for ctrl in self.hierarchies():
            path = f"{CGROUP_V1}/{ctrl}{self.cgroup_root}"
            os.mkdir(path)
            if ctrl == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    with open(f"{CGROUP_V1}/cpuset/{knob}") as src, open(f"{path}/{knob}", "w") as dst:
                        dst.write(src.read())

    @staticmethod
    def hierarchies():
        # cgroup v1 controllers (named ones too); not the hybrid's v2 "unified" mount.
        return sorted(d for d in os.listdir(CGROUP_V1)
                      if d != "unified" and os.path.isdir(f"{CGROUP_V1}/{d}") and not os.path.islink(f"{CGROUP_V1}/{d}"))

    def save_tunables(self):
        for t in KERNEL_TUNABLES:
            with open(f"/proc/sys/{t}") as f:
                self.tunables[t] = f.read().strip()

    def start_kubelet(self):
        config = f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {self.cgroup_root}
containerRuntimeEndpoint: unix://{self.cri_sock}
imageServiceEndpoint: unix://{self.cri_sock}
staticPodPath: {self.work}/manifests
fileCheckFrequency: 1s
syncFrequency: 10s
podLogsDir: {self.work}/pod-logs
address: 127.0.0.1
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 10255
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
failSwapOn: false
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
"""
        with open(f"{self.work}/kubelet.yaml", "w") as f:
            f.write(config)
        p = self.spawn("kubelet", [f"{self.peers}/kubelet", "--config", f"{self.work}/kubelet.yaml",
                                   "--root-dir", f"{self.work}/kubelet", "--cert-dir", f"{self.work}/kubelet/pki",
                                   "--hostname-override", "berth-kubelet-test", "--v=2"])

        def healthy():
            if p.poll() is not None:
                raise CannotRun(f"the kubelet exited with {p.returncode} (see {self.logs}/kubelet.log)")
            return True if http_get(HEALTHZ) == b"ok" else None
        wait_for("kubelet healthy", healthy, 60)

    # --- what the kubelet and berthd say ----------------------------------------------------
    @staticmethod
    def kubelet_pods():
        return {p["metadata"]["name"]: p for p in json.loads(http_get(f"{READ_ONLY_API}/pods"))["items"] or []}

    def running_and_ready(self, name):
        pod = self.kubelet_pods().get(name)
        if not pod or pod.get("status", {}).get("phase") != "Running":
            return None
        ready = [c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"]
        return pod if ready and ready[0]["status"] == "True" else None

    def berth_pods(self):
        return json.loads(self.crictl("pods", "-o", "json"))["items"]

    def berth_pod(self, name):
        found = [p for p in self.berth_pods() if p["metadata"]["name"].startswith(name + "-") and p["state"] == "SANDBOX_READY"]
        return found[0] if len(found) == 1 else None

    def berth_container(self, sandbox):
        found = json.loads(self.crictl("ps", "-o", "json", "-p", sandbox))["containers"]
        if len(found) != 1:
            raise Failed(f"pod {sandbox}: {len(found)} containers, expected 1")
        c = found[0]
        info = json.loads(self.crictl("inspect", c["id"]))
        return {"id": c["id"], "state": c["state"], "pid": info["info"]["pid"], "attempt": c["metadata"]["attempt"]}

    # --- checks -------------------------------------------------------------------------------
    def run(self):
        self.save_tunables()
        self.make_cgroup_root()
        self.start_registry()
        self.start_berthd()
        self.start_kubelet()
        for name in PODS:
            shutil.copy(f"{MANIFESTS}/{name}.yaml", f"{self.work}/manifests/{name}.yaml")
        log(f"manifests in place: {', '.join(PODS)}")

        # 1. Running and Ready, as the kubelet sees them.
        pods = {f"{name}-berth-kubelet-test": wait_for(f"{name}: Running and Ready", lambda n=name: self.running_and_ready(f"{n}-berth-kubelet-test"), 180)
                for name in PODS}
        for name, pod in pods.items():
            (status,) = pod["status"]["containerStatuses"]
            if not status["ready"] or status["restartCount"] != 0 or "running" not in status["state"]:
                raise Failed(f"{name}: container status {status}")
            if not status["containerID"].startswith("berth://"):
                raise Failed(f"{name}: containerID {status['containerID']} is not berth's")
        log("kubelet: every pod Running and Ready, restartCount 0, container ids berth://…")

        # The pod network: web's IP is from the bridge's subnet (the hostNetwork pods have the
        # node's), and it serves there (the kubelet's HTTP probe made it Ready; the test asks too).
        web_ip = pods["web-berth-kubelet-test"]["status"].get("podIP", "")
        if not web_ip.startswith(POD_SUBNET.rsplit(".", 1)[0] + "."):
            raise Failed(f"web: pod IP {web_ip!r} is not from {POD_SUBNET}")
        body = http_get(f"http://{web_ip}:8080/index.html").decode().strip()
        if body != WEB_LINE:
            raise Failed(f"web: http://{web_ip}:8080/ answered {body!r}")
        log(f"web: pod IP {web_ip}, serving {body!r} there")

        # The readiness probe (ExecSync) held the pod back until the container made /tmp/ready,
        # two seconds after it started: Ready must come later than the start (RFC 3339 seconds).
        probe = pods["probe-berth-kubelet-test"]
        started = probe["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        ready_at = [c["lastTransitionTime"] for c in probe["status"]["conditions"] if c["type"] == "Ready"][0]
        if not ready_at > started:
            raise Failed(f"probe: Ready at {ready_at}, not after its container started at {started}: the probe did not gate it")
        log(f"probe: container started {started}, Ready from {ready_at} (the exec probe passed)")

        # 2. They are berth's pods, with the kubelet's labels.
        before = {}
        for name in PODS:
            sandbox = wait_for(f"berthd lists pod {name}", lambda n=name: self.berth_pod(n), 10)
            labels = sandbox.get("labels", {})
            if labels.get("io.kubernetes.pod.name") != f"{name}-berth-kubelet-test":
                raise Failed(f"pod {name}: labels {labels}")
            c = self.berth_container(sandbox["id"])
            if c["state"] != "CONTAINER_RUNNING" or not c["pid"]:
                raise Failed(f"pod {name}: container {c}")
            before[name] = (sandbox["id"], c)
        log("berthd: every sandbox ready, one running container each")

        # 3. The container's log, where the kubelet asked for it, in the CRI format.
        uid = pods["hostnet-berth-kubelet-test"]["metadata"]["uid"]
        log_file = f"{self.work}/pod-logs/default_hostnet-berth-kubelet-test_{uid}/main/0.log"

        def logged():
            with open(log_file) as f:
                lines = f.read().splitlines()
            return lines or None
        lines = wait_for(f"log line in {log_file}", logged, 10)
        fields = lines[0].split(" ", 3)
        if len(fields) != 4 or fields[1] != "stdout" or fields[2] != "F" or fields[3] != POD_LOG_LINE:
            raise Failed(f"{log_file}: first line {lines[0]!r} is not `<time> stdout F {POD_LOG_LINE}`")
        log(f"log: {lines[0]!r}")

        # 3a. hostUsers: false. The container's root is the pod's, mapped onto the range the
        # kubelet picked (from 65536 on, 65536 ids), and berthd pinned a user namespace for it.
        uid = pods["userns-berth-kubelet-test"]["metadata"]["uid"]
        log_file = f"{self.work}/pod-logs/default_userns-berth-kubelet-test_{uid}/main/0.log"
        mapping = wait_for(f"uid map in {log_file}", logged, 10)[0].split(" ", 3)[3].split()
        if len(mapping) != 3 or mapping[0] != "0" or int(mapping[1]) < 65536 or int(mapping[2]) < 65536:
            raise Failed(f"userns: the container's uid map is {mapping}, not 0 → an unprivileged range of the kubelet's")
        sandbox = wait_for("berthd lists pod userns", lambda: self.berth_pod("userns"), 10)
        pid = self.berth_container(sandbox["id"])["pid"]
        with open(f"/proc/{pid}/status") as f:
            host_uid = [line.split()[1] for line in f if line.startswith("Uid:")][0]
        if host_uid != mapping[1]:
            raise Failed(f"userns: the container's init runs as host uid {host_uid}, not {mapping[1]}")
        log(f"userns: uid map {' '.join(mapping)}; its init runs as host uid {host_uid}")

        self.check_streaming(pods)

        # 4. A kubelet restart adopts the running pods.
        self.stop("kubelet")
        log("kubelet stopped (SIGTERM)")
        self.start_kubelet()
        for name in PODS:
            wait_for(f"{name}: Running and Ready after the restart",
                     lambda n=name: self.running_and_ready(n + "-berth-kubelet-test"), 120)
        # Give the kubelet a few sync periods in which a wrong adoption would show (a restart).
        time.sleep(12)
        for name, (sandbox_id, c) in before.items():
            now = self.berth_pod(name)
            if now is None or now["id"] != sandbox_id:
                raise Failed(f"pod {name}: sandbox {sandbox_id} replaced by {now and now['id']} after the kubelet restart")
            c2 = self.berth_container(sandbox_id)
            if (c2["id"], c2["pid"], c2["attempt"], c2["state"]) != (c["id"], c["pid"], c["attempt"], "CONTAINER_RUNNING"):
                raise Failed(f"pod {name}: container {c} became {c2} after the kubelet restart")
            status = self.running_and_ready(name + "-berth-kubelet-test")
            if status is None or status["status"]["containerStatuses"][0]["restartCount"] != 0:
                raise Failed(f"pod {name}: not Ready with restartCount 0 after the kubelet restart")
        log("kubelet restart: same sandboxes, same containers and pids, restartCount 0, Ready")

        # 5. Removing a manifest removes the pod, from the kubelet and (its container GC) berthd.
        os.unlink(f"{self.work}/manifests/hostnet.yaml")
        wait_for("hostnet: gone from the kubelet",
                 lambda: True if "hostnet-berth-kubelet-test" not in self.kubelet_pods() else None, 60)
        hostnet_sandbox = before["hostnet"][0]
        wait_for("hostnet: sandbox removed from berthd (the kubelet's GC, every minute)",
                 lambda: True if all(p["id"] != hostnet_sandbox for p in self.berth_pods()) else None, 150)
        others = [name for name in PODS if name != "hostnet"]
        for name in others:
            if self.running_and_ready(f"{name}-berth-kubelet-test") is None:
                raise Failed(f"{name}: no longer Ready after hostnet was removed")
        log("manifest removed: pod hostnet stopped and removed; the others untouched")

        # Then the others too: the kubelet leaves berthd with no pod, and web's address is free.
        for name in others:
            os.unlink(f"{self.work}/manifests/{name}.yaml")
        for name in others:
            sandbox = before[name][0]
            wait_for(f"{name}: sandbox removed from berthd",
                     lambda s=sandbox: True if all(p["id"] != s for p in self.berth_pods()) else None, 150)
        allocations = [f for _, _, files in os.walk(f"{self.work}/ipam") for f in files if f != "lock" and not f.startswith("last_reserved")]
        if allocations:
            raise Failed(f"IP allocations left after every pod went: {allocations}")
        log("every pod removed; no IP allocation left")

    # --- streaming ----------------------------------------------------------------------------
    def crictl_argv(self, *args):
        return [f"{self.peers}/crictl", "--timeout", "30s", "-r", f"unix://{self.sock}", "-i", f"unix://{self.sock}", *args]

    def check_streaming(self, pods):
        probe = self.berth_container(self.berth_pod("probe")["id"])["id"]
        attach = self.berth_container(self.berth_pod("attach")["id"])["id"]
        web_pod = self.berth_pod("web")["id"]
        for n, transport in enumerate(TRANSPORTS):
            self.exec_in_a_pty(probe, transport)
            # stdin, non-tty: what is typed comes back through the container's tr.
            r = subprocess.run(self.crictl_argv("exec", "-i", "--transport", transport, probe, "tr", "a-z", "A-Z"),
                               input="typed into a pipe\n", capture_output=True, text=True, timeout=60)
            if r.returncode != 0 or r.stdout != "TYPED INTO A PIPE\n":
                raise Failed(f"exec -i ({transport}): exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
            r = subprocess.run(self.crictl_argv("exec", "--transport", transport, probe, "sh", "-c", "echo to-stderr >&2; exit 3"),
                               capture_output=True, text=True, timeout=60)
            # crictl (not --sync) exits 1 on any failure and names the code the status carried.
            if r.returncode != 1 or "to-stderr" not in r.stderr or "command terminated with exit code 3" not in r.stderr:
                raise Failed(f"exec of `exit 3` ({transport}): exit {r.returncode}, stderr {r.stderr!r}")
            self.attach_to_shell(attach, transport)
            self.port_forward(web_pod, transport, 18080 + n)
            log(f"crictl over {transport}: exec -it (input, size, resize, exit code), exec -i, exit 3, attach -i, port-forward")
        # The kubelet's exec path: what `kubectl exec` becomes once the API server proxies it.
        name = "probe-berth-kubelet-test"
        channels = websocket_exec(f"/exec/default/{name}/main?command=sh&command=-c&command=echo%20via%20the%20kubelet%3B%20exit%205"
                                  "&output=1&error=1")
        status = json.loads(channels.get(3, b"{}") or b"{}")
        causes = status.get("details", {}).get("causes", [{}])
        if channels.get(1) != b"via the kubelet\n" or status.get("reason") != "NonZeroExitCode" or causes[0].get("message") != "5":
            raise Failed(f"kubelet /exec: channels {channels}")
        log("kubelet :10250 /exec (WebSocket v4.channel.k8s.io): the output, and exit code 5 in the status")

    def exec_in_a_pty(self, container, transport):
        """`crictl exec -it` in a 30x100 terminal: the size is the container's, a resize to 50x132
        reaches it, typed commands run, and `exit 7` comes back (crictl says so and exits 1)."""
        argv = self.crictl_argv("exec", "-it", "--transport", transport, container, "sh")
        pid, fd = pty.fork()
        if pid == 0:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            os.execv(argv[0], argv)
        try:
            # $((…)) is expanded by the container's shell: the echo of what was typed cannot match.
            os.write(fd, b"echo $((40+2))-ready\n")
            seen = read_until(fd, b"42-ready", 30)
            os.write(fd, b"stty size\n")
            seen = read_until(fd, b"30 100", 10, seen)
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
            deadline = time.monotonic() + 10
            while b"50 132" not in seen:
                if time.monotonic() > deadline:
                    raise Failed(f"exec -it ({transport}): the resize to 50x132 never reached the container: {seen[-300:]!r}")
                os.write(fd, b"stty size\n")
                try:
                    seen = read_until(fd, b"50 132", 1, seen)
                except Failed:
                    pass
            os.write(fd, b"exit 7\n")
            deadline = time.monotonic() + 30
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    raise Failed(f"exec -it ({transport}): crictl did not end after `exit 7`")
                try:  # keep the pty drained
                    if select.select([fd], [], [], 0.1)[0]:
                        seen += os.read(fd, 65536)
                except OSError:
                    time.sleep(0.1)
            pid = None
            if os.waitstatus_to_exitcode(status) != 1 or b"command terminated with exit code 7" not in seen:
                raise Failed(f"exec -it ({transport}): crictl exited {os.waitstatus_to_exitcode(status)}: {seen[-300:]!r}")
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)

    def attach_to_shell(self, container, transport):
        """`crictl attach -i`: a command typed runs in the container's shell and its output comes
        back; the end of our input ends the attach (exit 0), not the container."""
        p = subprocess.Popen(self.crictl_argv("attach", "-i", "--transport", transport, container),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(0.5)
            p.stdin.write(f"echo attached-over-{transport}\n".encode())
            p.stdin.flush()
            read_until(p.stdout.fileno(), f"attached-over-{transport}".encode(), 30)
            p.stdin.close()
            rc = p.wait(30)
            if rc != 0:
                raise Failed(f"attach ({transport}): crictl exited {rc}: {p.stderr.read().decode(errors='replace')}")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.berth_container(self.berth_pod("attach")["id"])["state"] != "CONTAINER_RUNNING":
            raise Failed(f"attach ({transport}): the container did not outlive the attach")

    def port_forward(self, pod, transport, local):
        """`crictl port-forward` to the web pod's server, fetched through the local port."""
        p = subprocess.Popen(self.crictl_argv("port-forward", "--transport", transport, pod, f"{local}:8080"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            read_until(p.stdout.fileno(), b"Forwarding from", 30)
            for attempt in range(2):  # two connections: two stream pairs on one session
                body = http_get(f"http://127.0.0.1:{local}/index.html", timeout=10).decode().strip()
                if body != WEB_LINE:
                    raise Failed(f"port-forward ({transport}): fetch {attempt} answered {body!r}")
        finally:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # --- teardown -----------------------------------------------------------------------------
    def pids_naming_work(self):
        me = os.getpid()
        found = []
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == me:
                continue
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if (self.work + "/").encode() in f.read():
                        found.append(int(p))
            except OSError:
                pass
        return found

    def mounts_under_work(self):
        with open("/proc/self/mountinfo") as f:
            targets = [line.split()[4] for line in f]
        return sorted({t for t in targets if t.startswith(self.work + "/")}, reverse=True)

    def leak(self, what):
        self.leaks.append(what)
        log(f"LEAK: {what}")

    def teardown(self):
        log("teardown")
        self.stop("kubelet")
        if "berthd" in self.procs and self.procs["berthd"].poll() is None:
            try:
                pods = self.berth_pods()
                for p in pods:
                    self.crictl("stopp", p["id"])
                    self.crictl("rmp", p["id"])
                if pods:
                    log(f"teardown removed {len(pods)} pods the kubelet left")
                left = json.loads(self.crictl("ps", "-a", "-o", "json"))["containers"]
                if left:
                    self.leak(f"{len(left)} containers listed after every pod was removed")
            except (subprocess.SubprocessError, OSError, ValueError) as e:
                self.leak(f"could not list or remove pods: {e}")
        self.stop("berthd")
        self.stop("registry")
        time.sleep(0.5)
        for pid in self.pids_naming_work():
            self.leak(f"process {pid} names {self.work}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # The kubelet makes its root directory a shared bind mount of itself: that one is the
        # kubelet's, not a leak; anything else is.
        for t in self.mounts_under_work():
            if t != f"{self.work}/kubelet":
                self.leak(f"mount {t}")
            subprocess.run(["umount", "-l", t], check=False)
        self.remove_cgroup_root()
        self.remove_log_links()
        for t, value in self.tunables.items():
            with open(f"/proc/sys/{t}", "w") as f:
                f.write(value)
        if self.logs:
            os.makedirs(self.logs, exist_ok=True)
            for name in os.listdir(self.logs):
                os.unlink(f"{self.logs}/{name}")
            for name in os.listdir(f"{self.work}/logs"):
                shutil.copy(f"{self.work}/logs/{name}", self.logs)
            for name in ("kubelet.yaml", "berthd.toml"):
                if os.path.exists(f"{self.work}/{name}"):
                    shutil.copy(f"{self.work}/{name}", self.logs)
        if self.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def remove_cgroup_root(self):
        for ctrl in self.hierarchies():
            top = f"{CGROUP_V1}/{ctrl}{self.cgroup_root}"
            if not os.path.isdir(top):
                continue
            dirs = [d for d, _, _ in os.walk(top)]
            # The kubelet's own cgroups (kubepods, its QoS classes, and the pods' when it was
            # stopped before cleaning them up) are its business; a container's (berth's) below a
            # pod's is a leak.
            for d in dirs:
                parts = d[len(top):].strip("/").split("/")
                pod = next((i for i, p in enumerate(parts) if p.startswith("pod")), None)
                if pod is not None and len(parts) > pod + 1:
                    self.leak(f"cgroup {ctrl}{self.cgroup_root}/{'/'.join(parts)}")
            for d in sorted(dirs, key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError as e:
                    self.leak(f"cgroup {d}: {e}")

    def remove_log_links(self):
        if not os.path.isdir(CONTAINER_LOG_LINKS):
            return
        for name in os.listdir(CONTAINER_LOG_LINKS):
            path = f"{CONTAINER_LOG_LINKS}/{name}"
            if os.path.islink(path) and os.readlink(path).startswith(self.work + "/"):
                os.unlink(path)
        if not self.had_log_links_dir and not os.listdir(CONTAINER_LOG_LINKS):
            os.rmdir(CONTAINER_LOG_LINKS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=f"{ROOT}/target/debug")
    parser.add_argument("--peers", default=f"{ROOT}/target/go-peers/bin")
    parser.add_argument("--images", default=f"{ROOT}/target/critest-images")
    parser.add_argument("--logs", default=f"{ROOT}/target/kubelet-logs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    # A SIGTERM (CI's timeout) unwinds through the teardown like a Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    h = Harness(args)
    log(f"work directory {h.work}")
    rc = 0
    try:
        h.run()
        log("PASS: the kubelet ran, probed, restarted around and removed static pods on berthd")
    except Failed as e:
        log(f"FAIL: {e}")
        rc = 1
    except (CannotRun, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        log(f"ERROR: the harness could not run: {e}")
        rc = 2
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except Exception:  # a harness bug: its traceback, then the teardown all the same
        traceback.print_exc()
        rc = 2
    finally:
        h.teardown()
    if h.leaks:
        log(f"FAIL: {len(h.leaks)} leaks (listed above)")
        rc = rc or 1
    log(f"logs in {args.logs}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
