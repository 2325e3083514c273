//! berthd's configuration file (TOML, default /etc/berth/berthd.toml; absent means defaults).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The image store and container metadata and writable layers: 0700.
    pub root: PathBuf,
    /// The socket serving berth.v1 and the CRI; its directory is made 0700.
    pub socket: PathBuf,
    /// A group (name or number) whose members may use the socket without root, as docker's
    /// `docker` group: the socket becomes 0660 and its directory 0710, both of that group.
    pub socket_group: Option<String>,
    /// More paths serving the same (each in a 0700 directory), for clients configured with
    /// another runtime's path, such as a kubelet's `unix:///run/containerd/containerd.sock`.
    pub extra_sockets: Vec<PathBuf>,
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Layers downloaded at once per pull.
    pub concurrency: usize,
    /// Seconds a registry may take to connect, to send the next bytes of an answer, or to
    /// answer a request whole (all but a blob's body); past it the pull or push fails.
    pub registry_timeout: u64,
    /// Bytes one image may unpack to (all its layers' uncompressed tar streams): a pull, load or
    /// import past it fails instead of filling the disk. 256 GiB by default.
    pub max_image_size: u64,
    /// Mirrors by registry (`"docker.io" = ["mirror.local:5000"]`), tried in order before it.
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Credentials by registry (`host[:port]`), first choice.
    pub auth: std::collections::BTreeMap<String, Credentials>,
    /// A docker `config.json` (auths, credential helpers) consulted next, read at each pull.
    pub docker_config: Option<PathBuf>,
    /// Bundles and shim directories (a tmpfs: containers do not survive a reboot): 0700.
    pub state: PathBuf,
    /// The berth-shim binary; next to berthd (else on PATH) by default.
    pub shim: Option<PathBuf>,
    /// Runtime names to OCI runtime binaries, added to (or replacing) the defaults: berth-oci
    /// (next to berthd), runc and crun (on PATH).
    pub runtimes: std::collections::BTreeMap<String, PathBuf>,
    pub default_runtime: String,
    /// What `berth run --init` runs as a container's PID 1: a static init such as tini's
    /// (`tini-static`, then `catatonit`, then `docker-init` on PATH by default).
    pub init_path: Option<PathBuf>,
    /// A container's log is rotated past this many bytes (one old file kept).
    pub log_max_size: u64,
    /// Images the CRI reports pinned: the kubelet never garbage-collects them.
    pub pinned_images: Vec<String>,
    /// Pods' network configs (CNI `.conflist`/`.conf`, the lowest name first).
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugin binaries are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Seconds one CNI plugin call may take before it is killed (and the pod's ADD undone).
    pub cni_timeout: u64,
    /// Where the streaming server (the URLs of CRI Exec, Attach and PortForward) listens; port 0
    /// takes a free one. Loopback by default, as containerd and cri-o do: the kubelet on the
    /// same node proxies for the API server.
    pub streaming_address: std::net::SocketAddr,
    /// HTTPS for the streaming server: a PEM certificate chain and its key (both, or neither).
    pub streaming_tls_cert: Option<PathBuf>,
    pub streaming_tls_key: Option<PathBuf>,
    /// Where Prometheus metrics are served (`/metrics`, plain HTTP); none when unset.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The network of a `berth run` that names none: `bridge` (berth's default network, as in
    /// docker), `none`, `host` or a network's name.
    pub default_network: String,
    /// The default network's bridge and IPv4 subnet, made on its first use.
    pub default_bridge: String,
    pub default_subnet: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            socket: PathBuf::from(berth_api::DEFAULT_SOCKET),
            socket_group: None,
            plain_http: Vec::new(),
            concurrency: 4,
            mirrors: Default::default(),
            auth: Default::default(),
            docker_config: None,
            state: PathBuf::from("/run/berth"),
            shim: None,
            runtimes: Default::default(),
            default_runtime: "berth-oci".into(),
            init_path: None,
            log_max_size: 10 << 20,
            pinned_images: Vec::new(),
            extra_sockets: Vec::new(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cni_timeout: 60,
            registry_timeout: 60,
            max_image_size: 256 << 30,
            streaming_address: ([127, 0, 0, 1], 0).into(),
            streaming_tls_cert: None,
            streaming_tls_key: None,
            metrics_address: None,
            default_network: "bridge".into(),
            default_bridge: "berth0".into(),
            default_subnet: "10.210.0.0/24".into(),
        }
    }
}

/// Reads `path`; a missing file at the default location means the defaults.
pub fn load(path: &Path, required: bool) -> anyhow::Result<Config> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("config {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("read config {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etc/berthd.toml (what scripts/install.sh installs) is a config berthd takes as it is, its
    /// settings are the defaults, and it names every key.
    #[test]
    fn the_example_config_documents_every_key() {
        let example = include_str!("../../../etc/berthd.toml");
        let parsed: Config = toml::from_str(example).unwrap();
        let (parsed, defaults) = (serde_json::to_value(&parsed).unwrap(), serde_json::to_value(Config::default()).unwrap());
        assert_eq!(parsed, defaults, "the example's settings are the defaults");
        for key in defaults.as_object().unwrap().keys() {
            let line = |l: &str| l.trim_start_matches('#').trim_start().to_string();
            let named = example.lines().map(line).any(|l| l.starts_with(&format!("{key} =")) || l.starts_with(&format!("[{key}.")));
            assert!(named, "etc/berthd.toml does not document {key}");
        }
        // Uncommented, each line is still a valid config (the examples' values are of the right type).
        let uncommented: String = example
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|rest| rest.contains(" = ") || rest.starts_with('[')).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        toml::from_str::<Config>(&uncommented).unwrap_or_else(|e| panic!("uncommented: {e}"));
    }
}
