//! What a `berth run` user asks for (docker's flags): mapped onto a spec at create
//! (crate::run_spec); the record keeps the container's identity, not these.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Replaces the image's Cmd (after the entrypoint).
    pub args: Vec<String>,
    /// Replaces the image's Entrypoint (and drops its Cmd), when given.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, over the image's Env.
    pub env: Vec<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; the image's User when None.
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub volumes: Vec<Volume>,
    pub read_only: bool,
    /// Bytes.
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub network: Network,
    /// Ports published on the host (`-p`), with a bridge network.
    pub publish: Vec<crate::sandbox::PortMapping>,
    /// Every port the image exposes published too, on a host port berthd chooses (`-P`).
    pub publish_all: bool,
    /// `--add-host`: (name, address) lines added to its /etc/hosts.
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// `--dns*`: what of its resolv.conf replaces the host's (each part only when given).
    pub dns: crate::sandbox::DnsConfig,
    /// `--device`: (host node, path inside, cgroup permissions of `rwm`).
    pub devices: Vec<(std::path::PathBuf, String, String)>,
    /// `--ulimit`: (rlimit name as docker spells it, `nofile`; soft; hard).
    pub ulimits: Vec<(String, u64, u64)>,
    pub hostname: Option<String>,
    pub tty: bool,
    /// Keep stdin open (`-i`).
    pub stdin: bool,
    /// The terminal's (width, height) at the start, with `tty`.
    pub console_size: Option<(u16, u16)>,
    pub labels: BTreeMap<String, String>,
    /// A runtime name from berthd's config (berth-oci when None).
    pub runtime: Option<String>,
    /// Removed once it has exited (`--rm`), by the library: whether or not anyone still waits.
    pub auto_remove: bool,
    /// `--restart`.
    pub restart: crate::restart::RestartPolicy,
    /// `--tmpfs` and `--mount type=tmpfs`: (target, options).
    pub tmpfs: Vec<(String, Vec<String>)>,
    /// `--init`: the host's init binary, bound into the container and run as its PID 1 with the
    /// command under it.
    pub init: Option<std::path::PathBuf>,
    /// The pod (by id or unique prefix) it joins: it runs under the pod's shim.
    pub sandbox: Option<String>,
    /// `--health-*` and `--no-healthcheck`, over the image's HEALTHCHECK.
    pub health: crate::health::HealthOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// A network namespace of its own with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace of its own on one of berth's bridge networks ([`crate::networks`];
    /// `bridge` is the default one).
    Bridge(String),
    /// Another container's network namespace (`container:NAME`, as in docker): its interfaces,
    /// its loopback, its /etc/hosts, /etc/resolv.conf and hostname.
    Container(String),
}

impl std::str::FromStr for Network {
    type Err = String;
    /// `none`, `host`, `container:NAME`, or a network's name; empty is none (the API's caller picks its default).
    fn from_str(s: &str) -> Result<Network, String> {
        match s {
            "" | "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other if other.starts_with("container:") => match &other["container:".len()..] {
                "" => Err("network \"container:\": name the container whose network to join".into()),
                name => Ok(Network::Container(name.to_string())),
            },
            other => Ok(Network::Bridge(other.to_string())),
        }
    }
}
