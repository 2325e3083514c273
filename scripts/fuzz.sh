#!/bin/sh
# Runs every fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 60) and fails on
# the first crash, leak or hang. Built with stable Rust: the coverage instrumentation cargo-fuzz
# would add (sanitizer "none") is passed as codegen flags, so neither nightly nor cargo-fuzz is
# needed; libFuzzer itself is compiled by libfuzzer-sys (needs g++). Seeds come from
# `berth-oci spec`; findings land in target/fuzz/artifacts/<target>/.
set -eu
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
out=$PWD/target/fuzz
targets="config_json process_json user_spec image_reference layer_tar spdy manifest_json registry_json image_archive"
for target in $targets; do mkdir -p "$out/corpus/$target" "$out/artifacts/$target"; done

# Seeds (before the fuzzing flags are set, so the main build is reused as it is).
cargo build -q --locked --bin berth-oci
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
bin=$PWD/target/debug/berth-oci
(cd "$seeds" && "$bin" spec && mv config.json default.json && "$bin" spec --rootless && mv config.json rootless.json)
cp "$seeds/default.json" "$seeds/rootless.json" "$out/corpus/config_json/"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["process"]))' "$seeds/default.json" > "$out/corpus/process_json/default.json"
printf '0' > "$out/corpus/user_spec/root"
printf '1000:1000' > "$out/corpus/user_spec/user"
printf 'busybox' > "$out/corpus/image_reference/short"
printf '127.0.0.1:5000/a/b:v1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' > "$out/corpus/image_reference/full"
# What crictl sends first: SYN_STREAMs whose header blocks are zlib (without the preset
# dictionary: the decoder takes both), a data frame with FIN, a ping.
python3 - "$out/corpus/spdy/exec" <<'PY'
import struct, sys, zlib
z = zlib.compressobj()
def block(pairs):
    raw = struct.pack(">I", len(pairs)) + b"".join(struct.pack(">I", len(s)) + s for p in pairs for s in p)
    return z.compress(raw) + z.flush(zlib.Z_SYNC_FLUSH)
def control(kind, flags, payload):
    return struct.pack(">HHI", 0x8003, kind, flags << 24 | len(payload)) + payload
def syn(stream, pairs):
    return control(1, 0, struct.pack(">IIH", stream, 0, 0) + block(pairs))
out = syn(1, [(b"streamtype", b"error")]) + syn(3, [(b"streamtype", b"stdin"), (b"port", b"80")])
out += struct.pack(">II", 3, 1 << 24 | 5) + b"hello" + control(6, 0, struct.pack(">I", 1))
open(sys.argv[1], "wb").write(out)
PY
# A small layer (a directory, a file, a symlink) as the applier's seed.
(cd "$seeds" && mkdir -p layer/etc && echo hi > layer/etc/hi && ln -s hi layer/etc/link && tar -C layer -cf "$out/corpus/layer_tar/small.tar" .)

# What registries and archives send: an index and a manifest, a config, an error body, a token,
# a challenge, and an OCI layout as `berth load` takes it (made with Python's tarfile).
python3 - "$out/corpus" <<'PY'
import hashlib, io, json, sys, tarfile
corpus = sys.argv[1]
def put(target, name, data):
    open(f"{corpus}/{target}/{name}", "wb").write(data if isinstance(data, bytes) else data.encode())
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    info = tarfile.TarInfo("etc/hi"); info.size = 3; t.addfile(info, io.BytesIO(b"hi\n"))
layer = layer.getvalue()
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}]}).encode()
index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": sha(manifest), "size": len(manifest), "platform": {"os": "linux", "architecture": "amd64"},
    "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}).encode()
put("manifest_json", "manifest", manifest); put("manifest_json", "index", index); put("manifest_json", "config", config)
put("registry_json", "error", '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1"}}]}')
put("registry_json", "token", '{"token":"abc","access_token":"abc","expires_in":300}')
put("registry_json", "challenge", 'Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"')
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w") as t:
    for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + \
            [("blobs/sha256/" + sha(b)[7:], b) for b in (layer, config, manifest)]:
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
put("image_archive", "oci-layout.tar", out.getvalue())
PY

export CARGO_TARGET_DIR="$out/build"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts and proc macros, which run on the host.
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo build -q --locked --manifest-path fuzz/Cargo.toml --release --bins --target "$triple"

for target in $targets; do
    echo "fuzz: $target for ${seconds}s"
    "$out/build/$triple/release/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$out/artifacts/$target/" -print_final_stats=1 "$out/corpus/$target" 2>"$out/$target.log" ||
        { tail -40 "$out/$target.log"; echo "fuzz: $target failed; reproducer in $out/artifacts/$target/" >&2; exit 1; }
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$out/$target.log" | sed "s/^/fuzz: $target /"
done
