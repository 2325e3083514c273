#!/usr/bin/env python3
"""Look-alikes of the images cri-tools' critest (v1.37.0) pulls, built from Debian's busybox-static
and a few Debian binaries, pushed to a docker-registry storage directory under the upstream
repository paths (gcr.io/k8s-staging-cri-tools/..., registry.k8s.io/e2e-test-images/...), so that
berthd's registry mirrors serve them under their own names.

    images.py prepare --cache DIR    build and push into DIR/registry unless DIR/stamp is current
    images.py list                   the image names, one a line
    images.py registry-config --storage DIR --addr HOST:PORT   a docker-registry config on stdout

Everything is deterministic (fixed mtimes, sorted entries, gzip without a timestamp): the same
inputs give the same digests, and DIR/stamp (a hash of this file and every host file copied)
decides whether anything is rebuilt. Python 3 standard library, skopeo and docker-registry only.

Images (what the specs use them for is in README.md):
  busybox base      /bin/busybox with every applet as a HARD link (masking /bin/ls must not mask
                    busybox), /etc/passwd and /etc/group as the official busybox image has them.
  e2e busybox       + pgrep (procps) and ipcs (util-linux) copied from Debian with their libraries.
  e2e nginx         busybox httpd on :80 under a pid-1 whose comm is "nginx" and whose cmdline is
                    "nginx: master process nginx -g daemon off;" (Debian's sleep renamed, exec -a),
                    its pid in /var/run/nginx.pid, as nginx's master.
  hostnet-nginx     the same, listening on 12003 (host network).
  e2e httpd         busybox httpd on :80, logging an Apache-like line that names httpd.
  e2e nonewprivs    prints "Effective uid: N" with N the euid of a setuid-root binary (Debian's id).
  cri-tools tests   busybox + an empty file named after the image (test-image-1/2/3 differ;
                    test-image-tags:1/2/3 are one image), users and groups as upstream's Dockerfiles.
  pause             busybox sleeping forever (registry.k8s.io and k8s.gcr.io: one image).
  benchmark         public.ecr.aws/docker/library/busybox:* (the image benchmarks' defaults).
"""
import argparse
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time

MTIME = 1_600_000_000
BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CRI_TOOLS = "gcr.io/k8s-staging-cri-tools/"
E2E = "registry.k8s.io/e2e-test-images/"

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""

# nginx's master, as far as the specs look: pid file, comm "nginx", "master process" in
# /proc/<pid>/cmdline, a page on the port of the listen directive.
NGINX = """#!/bin/sh
# nginx look-alike (berth's critest images): busybox httpd serves /usr/share/nginx/html on the
# port of the first listen directive; this process becomes the master (comm nginx, cmdline
# "nginx: master process nginx ...", pid in /var/run/nginx.pid).
port=$(sed -n 's/^[[:space:]]*listen[[:space:]]*\\([0-9]*\\);.*/\\1/p' /etc/nginx/conf.d/default.conf | head -n 1)
mkdir -p /var/run /var/log/nginx
httpd -f -p "${port:-80}" -h /usr/share/nginx/html &
echo $$ > /var/run/nginx.pid
exec -a "nginx: master process nginx $*" /usr/lib/nginx/nginx infinity
"""
NGINX_CONF = """server {
    listen       %d;
    server_name  localhost;
    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
"""
NGINX_INDEX = b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n"

HTTPD = """#!/bin/sh
# httpd look-alike (berth's critest images): busybox httpd in the foreground on :80.
echo "AH00558: httpd: Could not reliably determine the server's fully qualified domain name, using $(hostname). Set the 'ServerName' directive globally to suppress this message" >&2
echo "[mpm_event:notice] [pid $$] AH00489: Apache/2.4.39 (Unix) configured -- resuming normal operations (httpd look-alike)" >&2
exec httpd -f -p 80 -h /usr/local/apache2/htdocs
"""

NNP = """#!/bin/sh
# nonewprivs look-alike (berth's critest images): the euid a setuid-root binary gets.
echo "Effective uid: $(/usr/local/libexec/nnp-id -u)"
"""


class Layer:
    """A tar layer built in memory: entries by path, parents made as needed, deterministic."""

    def __init__(self):
        self.entries = {}  # path -> (TarInfo, data or None)

    def _info(self, path, kind, mode, uid=0, gid=0):
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, MTIME
        info.uname = info.gname = ""
        return info

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = (self._info(parent, tarfile.DIRTYPE, 0o755), None)

    def dir(self, path, mode=0o755, uid=0, gid=0):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)
        return self

    def file(self, path, data, mode=0o644, uid=0, gid=0):
        path = path.strip("/")
        data = data.encode() if isinstance(data, str) else data
        self._parents(path)
        info = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self.entries[path] = (info, data)
        return self

    def hardlink(self, path, target):
        path = path.strip("/")
        self._parents(path)
        info = self._info(path, tarfile.LNKTYPE, 0o755)
        info.linkname = target.strip("/")
        self.entries[path] = (info, None)
        return self

    def host_file(self, path, host, mode=None):
        with open(host, "rb") as f:
            data = f.read()
        return self.file(path, data, mode if mode is not None else os.stat(host).st_mode & 0o7777)

    def host_binary(self, path, host, mode=None):
        """Debian's `host` at `path`, with the shared libraries ldd names at their own paths."""
        self.host_file(path, host, mode)
        for lib in ldd(host):
            if lib.strip("/") not in self.entries:
                self.host_file(lib, os.path.realpath(lib), 0o755)
        return self

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            # Directories before what is in them; a hard link after its target.
            order = sorted(self.entries, key=lambda p: (self.entries[p][0].type == tarfile.LNKTYPE, p))
            for path in order:
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def ldd(binary):
    """The absolute paths of the shared libraries (and the loader) `binary` needs."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words:
            target = words[words.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif words and words[0].startswith("/"):
            libs.append(words[0])
    return libs


def applets():
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout
    return [a for a in out.split() if a and "/" not in a and a != "busybox"]


def busybox_layer():
    layer = Layer()
    for d in ("bin", "dev", "etc", "home", "usr/bin", "usr/sbin", "var/spool/mail", "var/www", "var/run"):
        layer.dir(d)
    layer.dir("root", 0o700).dir("tmp", 0o1777)
    layer.host_file("bin/busybox", BUSYBOX, 0o755)
    for applet in applets():
        layer.hardlink(f"bin/{applet}", "bin/busybox")
    layer.file("etc/passwd", PASSWD).file("etc/group", GROUP)
    layer.file("etc/shadow", "".join(f"{l.split(':')[0]}:*:10933:0:99999:7:::\n" for l in PASSWD.splitlines()), 0o640)
    return layer


def image(repos, layers, *, cmd=("sh",), entrypoint=None, user=None, env=(), workdir=None, ports=(),
          stop_signal=None, fmt="oci", extra_platforms=()):
    config = {"Env": [PATH_ENV, *env], "Cmd": list(cmd) if cmd else None}
    if entrypoint:
        config["Entrypoint"] = list(entrypoint)
    if user:
        config["User"] = user
    if workdir:
        config["WorkingDir"] = workdir
    if ports:
        config["ExposedPorts"] = {p: {} for p in ports}
    if stop_signal:
        config["StopSignal"] = stop_signal
    return {"repos": list(repos), "layers": layers, "config": config, "format": fmt, "extra_platforms": list(extra_platforms)}


def recipes():
    """name -> image. Layers are Layer objects (the busybox base is shared: one blob)."""
    base = busybox_layer()
    tools = Layer()
    tools.host_binary("usr/bin/pgrep", "/usr/bin/pgrep", 0o755)
    tools.host_binary("usr/bin/ipcs", "/usr/bin/ipcs", 0o755)

    def nginx(port):
        layer = Layer()
        layer.file("usr/sbin/nginx", NGINX, 0o755)
        layer.host_binary("usr/lib/nginx/nginx", "/usr/bin/sleep", 0o755)
        layer.file("etc/nginx/conf.d/default.conf", NGINX_CONF % port)
        layer.file("usr/share/nginx/html/index.html", NGINX_INDEX)
        layer.dir("var/log/nginx").dir("var/cache/nginx")
        return layer

    httpd = Layer()
    httpd.file("usr/local/bin/httpd-foreground", HTTPD, 0o755)
    httpd.file("usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n")
    httpd.dir("usr/local/apache2/logs")

    nnp = Layer()
    nnp.file("usr/local/bin/nnp", NNP, 0o755)
    nnp.host_binary("usr/local/libexec/nnp-id", "/usr/bin/id", 0o4755)

    def marker(name):
        return Layer().file(name, b"")

    def users(passwd, group):
        return Layer().file("etc/passwd", passwd).file("etc/group", group)

    images = {
        # registry.k8s.io/e2e-test-images: docker schema 2 manifests, as upstream's.
        "e2e-busybox": image([E2E + "busybox:1.29-2"], [base, tools], fmt="v2s2"),
        "e2e-nginx": image([E2E + "nginx:1.14-2"], [base, nginx(80)], cmd=("nginx", "-g", "daemon off;"),
                           ports=("80/tcp",), stop_signal="SIGTERM", fmt="v2s2"),
        "e2e-httpd": image([E2E + "httpd:2.4.39-4"], [base, httpd], cmd=("httpd-foreground",),
                           env=("HTTPD_PREFIX=/usr/local/apache2",), workdir="/usr/local/apache2",
                           ports=("80/tcp",), fmt="v2s2"),
        "e2e-nonewprivs": image([E2E + "nonewprivs:1.3"], [base, nnp], cmd=None,
                                entrypoint=("/usr/local/bin/nnp",), fmt="v2s2"),
        # registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 must be one image (one id).
        "pause": image(["registry.k8s.io/pause:3.9"], [base], cmd=None, entrypoint=("/bin/sleep", "infinity")),
        # cri-tools' own test images (images/build): OCI indexes (amd64 + arm64) where upstream
        # pushes manifest lists, plain OCI manifests elsewhere.
        "test-image-latest": image([CRI_TOOLS + "test-image-latest:latest"], [base, marker("test-image-latest")],
                                   extra_platforms=("arm64",)),
        "test-image-1": image([CRI_TOOLS + "test-image-1:latest"], [base, marker("test-image-1")], extra_platforms=("arm64",)),
        "test-image-2": image([CRI_TOOLS + "test-image-2:latest"], [base, marker("test-image-2")], extra_platforms=("arm64",)),
        "test-image-3": image([CRI_TOOLS + "test-image-3:latest"], [base, marker("test-image-3")], extra_platforms=("arm64",)),
        "test-image-tags": image([CRI_TOOLS + f"test-image-tags:{t}" for t in (1, 2, 3)], [base, marker("same-image")],
                                 extra_platforms=("arm64",)),
        "test-image-tag-test": image([CRI_TOOLS + "test-image-tag:test"], [base, marker("test")], extra_platforms=("arm64",)),
        "test-image-tag-all": image([CRI_TOOLS + "test-image-tag:all"], [base, marker("all")], extra_platforms=("arm64",)),
        "test-image-user-uid": image([CRI_TOOLS + "test-image-user-uid:latest"], [base], user="1002"),
        "test-image-user-username": image([CRI_TOOLS + "test-image-user-username:latest"], [base], user="www-data"),
        "test-image-user-uid-group": image([CRI_TOOLS + "test-image-user-uid-group:latest"], [base], user="1003:1004"),
        "test-image-user-username-group": image([CRI_TOOLS + "test-image-user-username-group:latest"], [base],
                                                user="www-data:1004"),
        # adduser -u 1000 -D default-user; addgroup -g 50000 group-defined-in-image; addgroup
        # default-user group-defined-in-image; USER 1000
        "test-image-predefined-group": image(
            [CRI_TOOLS + "test-image-predefined-group:latest"],
            [base, users(PASSWD + "default-user:x:1000:1000::/home/default-user:/bin/sh\n",
                         GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
             .dir("home/default-user", 0o755, 1000, 1000)],
            user="1000"),
        "hostnet-nginx": image([CRI_TOOLS + "hostnet-nginx-amd64:latest"], [base, nginx(12003)],
                               cmd=("nginx", "-g", "daemon off;"), ports=("80/tcp",), stop_signal="SIGQUIT"),
        # The image benchmarks' defaults (pkg/benchmark/image.go).
        "bench-busybox": image([f"public.ecr.aws/docker/library/busybox:{t}"
                                for t in ("1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl")], [base]),
    }
    return images


def names():
    out = []
    for img in recipes().values():
        out.extend(img["repos"])
    out.append("k8s.gcr.io/pause:3.9")  # served by the registry.k8s.io/pause repository
    return out


def host_inputs():
    """Every host file the images copy: they decide the stamp with this script."""
    files = [BUSYBOX]
    for binary in ("/usr/bin/pgrep", "/usr/bin/ipcs", "/usr/bin/sleep", "/usr/bin/id"):
        files.append(binary)
        files.extend(os.path.realpath(l) for l in ldd(binary))
    return sorted(set(files))


def stamp():
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    for path in host_inputs():
        h.update(path.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


class Layout:
    """An OCI image layout holding every image, each under its own ref name."""

    def __init__(self, path):
        self.path = path
        os.makedirs(f"{path}/blobs/sha256", exist_ok=True)
        self.manifests = []
        self.gz = {}  # id(Layer) -> (descriptor, diff_id)

    def put(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        blob = f"{self.path}/blobs/sha256/{digest}"
        if not os.path.exists(blob):
            with open(blob, "wb") as f:
                f.write(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def layer(self, layer):
        if id(layer) not in self.gz:
            tar = layer.tar()
            desc = self.put(gzip.compress(tar, compresslevel=6, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
            self.gz[id(layer)] = (desc, "sha256:" + hashlib.sha256(tar).hexdigest())
        return self.gz[id(layer)]

    def manifest(self, img, arch):
        layers = [self.layer(l) for l in img["layers"]]
        config = {
            "created": "2020-09-13T12:26:40Z",
            "architecture": arch,
            "os": "linux",
            "config": {k: v for k, v in img["config"].items() if v is not None},
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
            "history": [{"created": "2020-09-13T12:26:40Z", "created_by": "berth tests/critest/images.py"} for _ in layers],
        }
        config_desc = self.put(json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [d for d, _ in layers]}
        desc = self.put(json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
        desc["platform"] = {"architecture": arch, "os": "linux"}
        return desc

    def add(self, name, img):
        desc = self.manifest(img, "amd64")
        if img["extra_platforms"]:
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": [desc] + [self.manifest(img, arch) for arch in img["extra_platforms"]]}
            desc = self.put(json.dumps(index, sort_keys=True).encode(), "application/vnd.oci.image.index.v1+json")
        else:
            desc.pop("platform")
        desc["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.manifests.append(desc)

    def write(self):
        with open(f"{self.path}/index.json", "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f, sort_keys=True)
        with open(f"{self.path}/oci-layout", "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')


def registry_config(storage, addr):
    return (f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {addr}\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(addr, proc, timeout=30):
    host, port = addr.split(":")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"docker-registry exited with {proc.returncode}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"docker-registry did not come up on {addr}")


def repo_path(name):
    """gcr.io/a/b:t -> a/b:t (the mirror keeps the repository path)."""
    return name.split("/", 1)[1]


def prepare(cache):
    # One builder at a time (two runs at once share the cache); the second finds it current.
    os.makedirs(cache, exist_ok=True)
    with open(f"{cache}/.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build(cache)


def build(cache):
    key = stamp()
    stamp_file = f"{cache}/stamp"
    if os.path.exists(stamp_file) and open(stamp_file).read().strip() == key and os.path.isdir(f"{cache}/registry"):
        print(f"images: up to date in {cache} (stamp {key[:12]})")
        return
    start = time.time()
    # Only what this script owns: the cache also holds scripts/critest.sh's --kubelet-hostnames build.
    for owned in ("layout", "registry", "stamp"):
        path = f"{cache}/{owned}"
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    layout = Layout(f"{cache}/layout")
    images = recipes()
    for name, img in images.items():
        layout.add(name, img)
    layout.write()
    built = time.time()
    addr = f"127.0.0.1:{free_port()}"
    with open(f"{cache}/registry.yml", "w") as f:
        f.write(registry_config(f"{cache}/registry", addr))
    proc = subprocess.Popen(["docker-registry", "serve", f"{cache}/registry.yml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(addr, proc)
        for name, img in images.items():
            for repo in img["repos"]:
                cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
                if img["extra_platforms"]:
                    cmd.append("--all")
                if img["format"] == "v2s2":
                    cmd += ["--format", "v2s2"]
                cmd += [f"oci:{cache}/layout:{name}", f"docker://{addr}/{repo_path(repo)}"]
                subprocess.run(cmd, check=True)
    finally:
        proc.terminate()
        proc.wait()
    os.remove(f"{cache}/registry.yml")
    with open(stamp_file, "w") as f:
        f.write(key + "\n")
    print(f"images: built {len(images)} images ({sum(len(i['repos']) for i in images.values())} names) in "
          f"{built - start:.1f} s, pushed in {time.time() - built:.1f} s, into {cache}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--cache", required=True)
    sub.add_parser("list")
    r = sub.add_parser("registry-config")
    r.add_argument("--storage", required=True)
    r.add_argument("--addr", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(os.path.abspath(args.cache))
    elif args.command == "list":
        print("\n".join(names()))
    else:
        sys.stdout.write(registry_config(args.storage, args.addr))


if __name__ == "__main__":
    main()
