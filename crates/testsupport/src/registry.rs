//! Images for image tests: OCI image layouts built here from tar layers, and a private instance of
//! Debian's docker-registry on 127.0.0.1 (own storage, own port) that `skopeo` pushes them to.
//! The registry is stopped by pid when dropped.

use serde_json::json;
use sha2::Digest as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// `user:password` when the registry wants basic auth.
    credentials: Option<String>,
    child: Child,
}

impl Registry {
    /// Starts a registry storing under `dir` and waits until it answers `/v2/`.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None)
    }

    /// Like [`Registry::start`], with basic auth (htpasswd) for `user`/`password`.
    pub fn start_with_auth(dir: &Path, user: &str, password: &str) -> Registry {
        Registry::start_with(dir, Some((user, password)))
    }

    fn start_with(dir: &Path, auth: Option<(&str, &str)>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        let storage = dir.join("registry-data");
        let mut yaml = format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n", storage.display());
        if let Some((user, password)) = auth {
            let htpasswd = dir.join("htpasswd");
            let out = Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("run htpasswd (apache2-utils)");
            assert!(out.status.success());
            std::fs::write(&htpasswd, out.stdout).unwrap();
            yaml.push_str(&format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", htpasswd.display()));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { address, credentials: auth.map(|(u, p)| format!("{u}:{p}")), child };
        // Up to a minute: under the VM's emulation, with other tests starting theirs, a registry
        // has been seen to need more than five seconds.
        for _ in 0..6000 {
            // 401 is an answer too: the auth-protected registry is up.
            if registry.get("/v2/").is_some_and(|status| status.contains(" 200 ") || status.contains(" 401 ")) {
                return registry;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("docker-registry on {} did not come up", registry.address);
    }

    /// The status line of a plain GET, if the registry answers.
    fn get(&self, path: &str) -> Option<String> {
        use std::io::{BufRead, BufReader};
        let mut stream = std::net::TcpStream::connect(&self.address).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.address).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line)
    }

    /// Pushes the OCI layout at `layout` (tag `tag`) as `<repository>:<tag>`, index and all.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str) {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]);
        if let Some(credentials) = &self.credentials {
            command.arg(format!("--dest-creds={credentials}"));
        }
        let out = command
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}:{tag}", self.address))
            .output()
            .expect("run skopeo");
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One image of a layout: its layers (uncompressed tars, compressed in the layout) and platform.
pub struct LayoutImage {
    pub architecture: &'static str,
    pub layers: Vec<Vec<u8>>,
    /// zstd instead of gzip for every layer.
    pub zstd: bool,
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn put_blob(layout: &Path, bytes: &[u8]) -> serde_json::Value {
    let digest = digest(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
    json!({"digest": digest, "size": bytes.len()})
}

/// Writes an OCI image layout at `layout` tagged `tag`: one manifest, or an index of several
/// (one per platform) when `images` has more than one.
pub fn write_layout(layout: &Path, tag: &str, images: &[LayoutImage]) -> PathBuf {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for image in images {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for tar in &image.layers {
            let (compressed, media_type) = if image.zstd {
                (zstd::encode_all(&tar[..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd")
            } else {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(tar).unwrap();
                (gz.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
            };
            let mut descriptor = put_blob(layout, &compressed);
            descriptor["mediaType"] = json!(media_type);
            layers.push(descriptor);
            diff_ids.push(digest(tar));
        }
        let config =
            json!({"architecture": image.architecture, "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let mut config_descriptor = put_blob(layout, config.to_string().as_bytes());
        config_descriptor["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
        let manifest =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config_descriptor, "layers": layers});
        let mut descriptor = put_blob(layout, manifest.to_string().as_bytes());
        descriptor["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
        descriptor["platform"] = json!({"os": "linux", "architecture": image.architecture});
        manifests.push(descriptor);
    }
    let top = if manifests.len() == 1 {
        manifests.pop().unwrap()
    } else {
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let mut descriptor = put_blob(layout, index.to_string().as_bytes());
        descriptor["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
        descriptor
    };
    let mut top = top;
    top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    std::fs::write(layout.join("index.json"), json!({"schemaVersion": 2, "manifests": [top]}).to_string()).unwrap();
    layout.to_path_buf()
}

/// Changes the image config of the one-image layout at `layout` (say, to add `Volumes`), and the
/// manifest and index that name it by digest.
pub fn patch_layout_config(layout: &Path, patch: impl FnOnce(&mut serde_json::Value)) {
    let blob = |descriptor: &serde_json::Value| layout.join("blobs/sha256").join(&descriptor["digest"].as_str().unwrap()[7..]);
    let read = |descriptor: &serde_json::Value| -> serde_json::Value { serde_json::from_slice(&std::fs::read(blob(descriptor)).unwrap()).unwrap() };
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifest = read(&index["manifests"][0]);
    let mut config = read(&manifest["config"]);
    patch(&mut config);
    let media = manifest["config"]["mediaType"].clone();
    manifest["config"] = put_blob(layout, config.to_string().as_bytes());
    manifest["config"]["mediaType"] = media;
    let (media, annotations) = (index["manifests"][0]["mediaType"].clone(), index["manifests"][0]["annotations"].clone());
    index["manifests"][0] = put_blob(layout, manifest.to_string().as_bytes());
    index["manifests"][0]["mediaType"] = media;
    index["manifests"][0]["annotations"] = annotations;
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

/// The layout at `layout` as one tar file beside it (`<layout>.tar`), as `berth load` takes it.
pub fn layout_archive(layout: &Path) -> PathBuf {
    let file = layout.with_extension("tar");
    let status = Command::new("tar").arg("-C").arg(layout).arg("-cf").arg(&file).arg(".").status().expect("run tar");
    assert!(status.success(), "tar of {}", layout.display());
    file
}

/// A tar of `dir` (as `tar -C dir -c .` makes it), for layers made from real trees.
pub fn tar_of(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar").args(["--numeric-owner", "-C"]).arg(dir).args(["-cf", "-", "."]).output().expect("run tar");
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// This machine's architecture as images name it.
pub fn host_architecture() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// An OCI layout at `<env>/layout` holding the env's busybox rootfs as a one-layer image tagged `tag`.
pub fn busybox_layout(env: &crate::TestEnv, tag: &str) -> PathBuf {
    let layers = vec![tar_of(&env.bundle.dir.join("rootfs"))];
    write_layout(&env.dir.join("layout"), tag, &[LayoutImage { architecture: host_architecture(), layers, zstd: false }])
}

/// A private registry holding [`busybox_layout`] as `test/busybox:v1`.
pub fn busybox_registry(env: &crate::TestEnv) -> Registry {
    let registry = Registry::start(&env.dir);
    registry.push(&busybox_layout(env, "v1"), "v1", "test/busybox");
    registry
}

/// Waits (up to 30 s) until a blob being written into the content-store ingest directory `ingest`
/// is past 100 KB: a download half way, for tests that interrupt one.
pub fn wait_for_partial_blob(ingest: &Path) {
    let started = std::time::Instant::now();
    while !std::fs::read_dir(ingest).map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 100_000))).unwrap_or(false) {
        assert!(started.elapsed().as_secs() < 30, "no download got half way into {}", ingest.display());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
