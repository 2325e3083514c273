//! What every API asks create for, whatever its request looks like: the container's identity
//! (kept in its record) and a [`SpecMaker`] that turns the request into a runtime spec once the
//! rootfs is mounted. berth.v1's `run` flags ([`crate::run_spec`]) and the CRI's
//! ContainerConfig (berth-cri) are two makers; create itself does the same for both.

use crate::image_config::RunConfig;
use crate::Result;
use oci_spec::runtime::Spec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Blueprint {
    /// The image by name (normalised), id or digest.
    pub image: String,
    /// Unique among containers; a short id when None.
    pub name: Option<String>,
    /// The name the API knows it by where that need not be unique (the CRI's metadata name).
    pub metadata_name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The pod (by id or unique prefix) it joins: it runs under the pod's shim.
    pub sandbox: Option<String>,
    /// Which attempt of the pod's container it is (CRI).
    pub attempt: u32,
    pub tty: bool,
    /// Keep stdin open.
    pub stdin: bool,
    /// The first attach's end of input closes stdin (the CRI's `stdin_once`).
    pub stdin_once: bool,
    /// A runtime name from berthd's config (the default runtime when None).
    pub runtime: Option<String>,
    /// Removed once it has exited, by the library: whether or not anyone still waits.
    pub auto_remove: bool,
    /// When berthd starts it again after it exits (`berth run`; the kubelet restarts its own).
    pub restart: crate::restart::RestartPolicy,
    /// Where the shim writes its CRI-format log (the kubelet chooses); in its bundle when None.
    pub log_path: Option<PathBuf>,
    /// A bridge network to join (`berth run`; a pod's containers have their pod's).
    pub network: Option<crate::container_network::ContainerNetwork>,
    /// Another container (by id or name) whose network namespace it joins.
    pub network_of: Option<String>,
    pub spec: Box<dyn SpecMaker>,
}

/// Makes a container's spec from an API's request.
pub trait SpecMaker: Send + 'static {
    /// The process's argv, for the record: checked before anything of the container exists.
    fn command(&self, image: &RunConfig) -> Result<Vec<String>>;

    /// The named volumes it mounts and the image's VOLUMEs it leaves to anonymous ones (whose
    /// names are made at create); none by default (the CRI mounts host paths only).
    fn volumes(&self, _image: &RunConfig) -> Result<Vec<crate::volumes::VolumeUse>> {
        Ok(Vec::new())
    }

    /// Ports to publish besides the network's own request (the image's EXPOSEd ones with
    /// `-P`), each on a host port chosen at create; none by default.
    fn published(&self, _image: &RunConfig) -> Result<Vec<crate::sandbox::PortMapping>> {
        Ok(Vec::new())
    }

    /// The healthcheck berthd runs; none by default (the kubelet probes pods itself).
    fn healthcheck(&self, _image: &RunConfig) -> Result<Option<crate::health::HealthCheck>> {
        Ok(None)
    }

    /// The spec, once the rootfs is mounted (users resolve from its own /etc/passwd then). May
    /// write files into the bundle (say /etc/hosts to bind), which goes with the container.
    fn spec(self: Box<Self>, context: &SpecContext) -> Result<Spec>;
}

pub struct SpecContext<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    /// The mounted root filesystem (`<bundle>/rootfs`).
    pub rootfs: &'a Path,
    pub image: &'a RunConfig,
    /// Its bridge network, joined: the namespace is pinned at `<bundle>/ns/net`.
    pub network: Option<&'a crate::container_network::ContainerNetwork>,
    /// The bundle of the container whose network it joins (its hosts, hostname and resolv.conf
    /// are there): the namespace is pinned at `<bundle>/ns/net` too.
    pub network_of: Option<&'a Path>,
    /// Its volumes, ready: (use, the directory to bind).
    pub volumes: &'a [(crate::volumes::VolumeUse, PathBuf)],
}
