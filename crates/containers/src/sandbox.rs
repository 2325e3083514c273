//! Pods (sandboxes), as first-class records beside containers. What happens at create: the record
//! first (state `Creating`, persisted, undone at start-up if berthd died), then the pod's
//! directory (`<state>/<id>`) with its namespaces pinned there without a process
//! ([`crate::pod_namespaces`]) and its /etc/hostname, /etc/hosts and /etc/resolv.conf, then its
//! network (unless it has the host's: [`crate::pod_network`], when one is configured; else loopback
//! only), then `Ready`. A pod's containers share one shim and join its namespaces; stopping the
//! pod kills them, detaches its network and unpins its namespaces; removing it removes them all.

use crate::manager::{blocking, Containers};
use crate::pod_namespaces::{self, PodNamespace};
use crate::record::{short, Change};
use crate::user_namespace::UserNamespace;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Being created: undone at start-up if berthd died meanwhile.
    Creating,
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: SandboxConfig,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: u64,
    /// Its addresses from the pod network, the first the pod's IP (none: loopback only, or the
    /// host's network).
    #[serde(default)]
    pub ips: Vec<String>,
}

/// What a new pod is asked to be (the CRI's PodSandboxConfig, in the library's terms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The pod's hostname (its name when empty); with the host's network, the host's.
    #[serde(default)]
    pub hostname: String,
    /// Where its containers' logs go (the kubelet's pod log directory).
    #[serde(default)]
    pub log_directory: Option<PathBuf>,
    /// The cgroup its containers' cgroups go under.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    /// A runtime name from berthd's config (the default when None).
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub host_ipc: bool,
    #[serde(default)]
    pub host_pid: bool,
    /// One PID namespace for the pod's containers (shareProcessNamespace), with berth's infra
    /// process as its init.
    #[serde(default)]
    pub share_pid: bool,
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    /// Recorded for the network layer.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Namespaced sysctls only (see [`check_sysctl`]), applied in every container of the pod.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// A user namespace of the pod's own (`hostUsers: false`); None: the node's.
    #[serde(default)]
    pub user_namespace: Option<UserNamespace>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// tcp, udp or sctp.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// The sysctls a pod may set: those its own namespaces scope (IPC's `kernel.shm*`, `kernel.msg*`,
/// `kernel.sem`, `fs.mqueue.*`; the network's `net.*` unless it is the host's), as the kubelet's
/// safe-and-namespaced list has it. A value is one line.
pub fn check_sysctl(name: &str, value: &str, host_network: bool, host_ipc: bool) -> Result<()> {
    let ipc = matches!(name, "kernel.sem" | "kernel.shm_rmid_forced" | "kernel.shmall" | "kernel.shmmax" | "kernel.shmmni")
        || matches!(name, "kernel.msgmax" | "kernel.msgmnb" | "kernel.msgmni")
        || name.starts_with("fs.mqueue.");
    let net = name.starts_with("net.");
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)) && !name.contains("..");
    let scoped = (ipc && !host_ipc) || (net && !host_network);
    if !plain || !scoped {
        return Err(Error::Invalid(format!(
            "sysctl {name:?} is not namespaced in this pod (only IPC's kernel.shm*/msg*/sem, fs.mqueue.* and, without the host's network, net.*)"
        )));
    }
    if value.contains(['\n', '\0']) || value.len() > 4096 {
        return Err(Error::Invalid(format!("sysctl {name}: the value must be one line")));
    }
    Ok(())
}

impl SandboxConfig {
    fn check(&self) -> Result<()> {
        if self.name.is_empty() || self.namespace.is_empty() {
            return Err(Error::Invalid("a pod needs a name and a namespace".into()));
        }
        let hostname = self.hostname();
        if hostname.len() > 64 || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
            return Err(Error::Invalid(format!("hostname {hostname:?}: up to 64 of [A-Za-z0-9.-]")));
        }
        crate::create::check_keys(self.labels.keys().chain(self.annotations.keys()))?;
        for (name, value) in &self.sysctls {
            check_sysctl(name, value, self.host_network, self.host_ipc)?;
        }
        if let Some(user) = &self.user_namespace {
            user.check()?;
            if self.host_network || self.host_ipc || self.host_pid {
                return Err(Error::Invalid("a pod with a user namespace cannot use the node's network, IPC or PID namespace".into()));
            }
        }
        if let Some(dns) = &self.dns {
            if dns.servers.iter().chain(&dns.searches).chain(&dns.options).any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(Error::Invalid("DNS servers, searches and options are single words".into()));
            }
        }
        Ok(())
    }

    /// The hostname its containers see: the one asked for, else (and always with the host's
    /// network) the node's, as containerd and CRI-O do (a pod's name may be longer than a
    /// hostname can be).
    pub fn hostname(&self) -> String {
        if self.host_network || self.hostname.is_empty() {
            return nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        }
        self.hostname.clone()
    }

    /// The namespaces the pod has of its own (its containers join them).
    pub fn namespaces(&self) -> Vec<PodNamespace> {
        let mut kinds = Vec::new();
        if !self.host_network {
            kinds.extend([PodNamespace::Net, PodNamespace::Uts]);
        }
        if !self.host_ipc {
            kinds.push(PodNamespace::Ipc);
        }
        kinds
    }
}

impl Containers {
    pub async fn create_sandbox(&self, config: SandboxConfig) -> Result<SandboxRecord> {
        config.check()?;
        if config.user_namespace.is_some() && !self.user_namespaces_supported() {
            return Err(Error::Invalid(format!("user namespaces for pods: {} does not take idmapped mounts", self.paths.data.display())));
        }
        let record =
            SandboxRecord { id: crate::create::random_id()?, config, state: SandboxState::Creating, created_at: crate::now_ns(), ips: Vec::new() };
        {
            let mut sandboxes = self.sandboxes();
            let key = |c: &SandboxConfig| (c.name.clone(), c.namespace.clone(), c.uid.clone(), c.attempt);
            if let Some(other) = sandboxes.values().find(|s| key(&s.config) == key(&record.config)) {
                let c = &record.config;
                return Err(Error::Conflict(format!("pod {}/{} (attempt {}) exists: {}", c.namespace, c.name, c.attempt, short(&other.id))));
            }
            sandboxes.insert(record.id.clone(), record.clone());
        }
        if let Err(e) = self.persister.write(Change::PutSandbox(Box::new(record.clone()))).await {
            self.sandboxes().remove(&record.id);
            return Err(e);
        }
        let (dir, config, shim) = (self.sandbox_dir(&record.id), record.config.clone(), self.binaries.shim.clone());
        let made = blocking(move || {
            crate::manager::make_dir(&dir)?;
            pod_namespaces::pin(&dir, &config.namespaces(), &config.hostname(), config.user_namespace.as_ref())?;
            if config.share_pid && !config.host_pid {
                pod_namespaces::start_infra(&dir, &shim, config.user_namespace.is_some())?;
            }
            write_etc_files(&dir, &config)
        })
        .await;
        let ready = match made {
            Ok(()) => match self.attach_network(&record).await {
                Ok(ips) => self.set_sandbox_ready(&record.id, ips).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match ready {
            Ok(ready) => Ok(ready),
            Err(e) => {
                let _ = self.remove_sandbox(&record.id).await;
                Err(e)
            }
        }
    }

    /// The pod's interface from the pod network: its addresses. None for a pod with the host's
    /// network, or when no network is configured (then the pod has loopback only and the CRI's
    /// NetworkReady says why).
    async fn attach_network(&self, sandbox: &SandboxRecord) -> Result<Vec<String>> {
        let c = &sandbox.config;
        let Some(network) = self.pod_network().filter(|_| !c.host_network) else { return Ok(Vec::new()) };
        if let Err(reason) = network.ready().await {
            tracing::info!(pod = %short(&sandbox.id), "no pod network ({reason}): loopback only");
            return Ok(Vec::new());
        }
        let attachment = crate::pod_network::PodAttachment {
            sandbox_id: sandbox.id.clone(),
            netns: pod_namespaces::pin_path(&self.sandbox_dir(&sandbox.id), PodNamespace::Net),
            name: c.name.clone(),
            namespace: c.namespace.clone(),
            uid: c.uid.clone(),
            port_mappings: c.port_mappings.clone(),
        };
        network.attach(&attachment).await
    }

    /// Undoes [`Self::attach_network`] (by the pod's id: whatever was attached, even by an ADD
    /// berthd died in); nothing attached is fine.
    async fn detach_network(&self, sandbox: &SandboxRecord) -> Result<()> {
        match self.pod_network() {
            Some(network) if !sandbox.config.host_network => network.detach(&sandbox.id).await,
            _ => Ok(()),
        }
    }

    /// Whether pods may have user namespaces here: the filesystem of berth's data directory (the
    /// image layers) takes idmapped mounts. Tried once per process.
    pub fn user_namespaces_supported(&self) -> bool {
        static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SUPPORTED.get_or_init(|| crate::user_namespace::idmap_supported(&self.paths.data))
    }

    /// The pod's directory: its namespace pins and /etc files.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.bundle_dir(id)
    }

    /// Where the pod's namespace of `kind` is pinned, if it has one of its own.
    pub fn sandbox_namespace(&self, sandbox: &SandboxRecord, kind: PodNamespace) -> Option<PathBuf> {
        let c = &sandbox.config;
        let own = c.namespaces().contains(&kind)
            || (kind == PodNamespace::Pid && c.share_pid && !c.host_pid)
            || (kind == PodNamespace::User && c.user_namespace.is_some());
        own.then(|| pod_namespaces::pin_path(&self.sandbox_dir(&sandbox.id), kind))
    }

    /// Every pod, oldest first.
    pub fn list_sandboxes(&self) -> Vec<SandboxRecord> {
        let mut pods: Vec<SandboxRecord> = self.sandboxes().values().cloned().collect();
        pods.sort_by_key(|p| p.created_at);
        pods
    }

    /// By id or unique id prefix.
    pub fn find_sandbox(&self, key: &str) -> Result<SandboxRecord> {
        let sandboxes = self.sandboxes();
        if let Some(found) = sandboxes.get(key) {
            return Ok(found.clone());
        }
        let mut matching = sandboxes.values().filter(|s| !key.is_empty() && s.id.starts_with(key));
        match (matching.next(), matching.next()) {
            (Some(one), None) => Ok(one.clone()),
            (Some(_), Some(_)) => Err(Error::Invalid(format!("{key} names more than one pod; give more of the id"))),
            _ => Err(Error::NoPod(key.to_string())),
        }
    }

    /// Kills the pod's containers (SIGKILL after `timeout`) and unpins its namespaces; the pod
    /// stays, `NotReady`. Stopping a stopped pod is fine.
    pub async fn stop_sandbox(&self, key: &str, timeout: Duration) -> Result<SandboxRecord> {
        let sandbox = self.find_sandbox(key)?;
        let members: Vec<String> =
            self.list().into_iter().filter(|c| c.sandbox.as_deref() == Some(&sandbox.id) && c.state.is_live()).map(|c| c.id).collect();
        let mut stops = tokio::task::JoinSet::new();
        for id in members {
            let this = self.clone();
            stops.spawn(async move { this.stop(&id, timeout).await });
        }
        while let Some(stopped) = stops.join_next().await {
            match stopped.map_err(|e| Error::Shim(format!("stop a pod's container: {e}")))? {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // The network goes while the namespace is still pinned (plugins find the interface).
        self.detach_network(&sandbox).await?;
        let dir = self.sandbox_dir(&sandbox.id);
        blocking(move || {
            pod_namespaces::stop_infra(&dir)?;
            pod_namespaces::unpin(&dir)
        })
        .await?;
        self.set_sandbox_state(&sandbox.id, SandboxState::NotReady).await
    }

    /// Removes the pod's containers (killed if they run), its namespaces and directory, then the
    /// pod.
    pub async fn remove_sandbox(&self, key: &str) -> Result<SandboxRecord> {
        let sandbox = self.find_sandbox(key)?;
        let members: Vec<String> = self.list().into_iter().filter(|c| c.sandbox.as_deref() == Some(&sandbox.id)).map(|c| c.id).collect();
        for id in members {
            match self.remove(&id, true).await {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.detach_network(&sandbox).await?;
        let dir = self.sandbox_dir(&sandbox.id);
        blocking(move || {
            pod_namespaces::stop_infra(&dir)?;
            pod_namespaces::unpin(&dir)?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove", &dir, e)),
            }
        })
        .await?;
        self.persister.write(Change::RemoveSandbox(sandbox.id.clone())).await?;
        self.sandboxes().remove(&sandbox.id);
        Ok(sandbox)
    }

    /// At start-up: pods berthd died creating are removed; pods whose namespaces went (a reboot
    /// emptied the state directory) are not ready.
    pub(crate) async fn recover_sandboxes(&self) -> Result<usize> {
        let mut removed = 0;
        for sandbox in self.list_sandboxes() {
            if sandbox.state == SandboxState::Creating {
                // berthd must come up whatever a half-made pod's cleanup meets (a plugin that
                // fails its DEL): the pod stays, not ready, for the kubelet's next removal.
                match self.remove_sandbox(&sandbox.id).await {
                    Ok(_) => removed += 1,
                    Err(e) => {
                        tracing::warn!(pod = %short(&sandbox.id), "removing a pod berthd died creating: {e}; it stays, not ready");
                        self.set_sandbox_state(&sandbox.id, SandboxState::NotReady).await?;
                    }
                }
            } else if sandbox.state == SandboxState::Ready {
                let dir = self.sandbox_dir(&sandbox.id);
                let c = &sandbox.config;
                let infra_gone = c.share_pid && !c.host_pid && pod_namespaces::infra_pid(&dir).is_none();
                let user_gone = c.user_namespace.is_some() && !pod_namespaces::is_pinned(&dir, PodNamespace::User);
                if infra_gone || user_gone || !c.namespaces().iter().all(|kind| pod_namespaces::is_pinned(&dir, *kind)) {
                    self.set_sandbox_state(&sandbox.id, SandboxState::NotReady).await?;
                }
            }
        }
        Ok(removed)
    }

    async fn set_sandbox_ready(&self, id: &str, ips: Vec<String>) -> Result<SandboxRecord> {
        let record = {
            let mut sandboxes = self.sandboxes();
            let record = sandboxes.get_mut(id).ok_or_else(|| Error::NoPod(id.to_string()))?;
            record.state = SandboxState::Ready;
            record.ips = ips;
            record.clone()
        };
        self.persister.write(Change::PutSandbox(Box::new(record.clone()))).await?;
        Ok(record)
    }

    async fn set_sandbox_state(&self, id: &str, state: SandboxState) -> Result<SandboxRecord> {
        let record = {
            let mut sandboxes = self.sandboxes();
            let record = sandboxes.get_mut(id).ok_or_else(|| Error::NoPod(id.to_string()))?;
            record.state = state;
            if state != SandboxState::Ready {
                // Its network was detached: the addresses are someone else's now.
                record.ips.clear();
            }
            record.clone()
        };
        self.persister.write(Change::PutSandbox(Box::new(record.clone()))).await?;
        Ok(record)
    }

    fn sandboxes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SandboxRecord>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf (its containers bind them): with the
/// host's network, the host's hosts file; resolv.conf from the pod's DNS config, else the host's.
fn write_etc_files(dir: &Path, config: &SandboxConfig) -> Result<()> {
    let hostname = config.hostname();
    let hosts = if config.host_network {
        read_host_file("/etc/hosts")?
    } else {
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n")
    };
    let resolv = match &config.dns {
        Some(dns) => {
            let mut text: String = dns.servers.iter().map(|s| format!("nameserver {s}\n")).collect();
            if !dns.searches.is_empty() {
                text += &format!("search {}\n", dns.searches.join(" "));
            }
            if !dns.options.is_empty() {
                text += &format!("options {}\n", dns.options.join(" "));
            }
            text
        }
        None => read_host_file("/etc/resolv.conf")?,
    };
    for (name, text) in [("hostname", format!("{hostname}\n")), ("hosts", hosts), ("resolv.conf", resolv)] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
        // The pod's root owns them, as root owns them in any other pod (containerd does the same).
        if let Some((uid, gid)) = config.user_namespace.as_ref().map(UserNamespace::root) {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(|e| Error::io("chown", &path, e))?;
        }
    }
    Ok(())
}

/// A host file, at most 1 MiB of it (an absent one is empty).
fn read_host_file(path: &str) -> Result<String> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else { return Ok(String::new()) };
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text).map_err(|e| Error::io("read", Path::new(path), e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls() {
        for ok in ["kernel.shmmax", "kernel.msgmni", "kernel.sem", "fs.mqueue.msg_max", "net.ipv4.ip_forward", "net.core.somaxconn"] {
            check_sysctl(ok, "1", false, false).unwrap();
        }
        for bad in ["kernel.panic", "vm.overcommit_memory", "kernel.hostname", "", "net/../../kernel.panic", "fs.file-max"] {
            assert!(check_sysctl(bad, "1", false, false).is_err(), "{bad}");
        }
        assert!(check_sysctl("net.ipv4.ip_forward", "1", true, false).is_err(), "net.* with the host's network");
        assert!(check_sysctl("kernel.shmmax", "1", false, true).is_err(), "IPC sysctls with the host's IPC");
        assert!(check_sysctl("kernel.shmmax", "1\nkernel.panic=1", false, false).is_err(), "one line");
    }
}
