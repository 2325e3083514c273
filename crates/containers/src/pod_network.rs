//! A pod's network, behind a trait: [`CniNetwork`] gives each pod an interface from the node's
//! CNI config (berth-cni: the first network config in the conf dir, plugins from the bin dirs,
//! results cached under berth's root); [`MemoryNetwork`] hands out addresses in memory (tests
//! without root). Both pass [`conformance`].
//!
//! A pod is attached after its namespaces are pinned and before it is `Ready`; it is detached
//! when stopped and again when removed (idempotent). Detach works from the CNI cache alone (by the
//! pod's id), so it also undoes an ADD berthd died in, after a config change, or after a restart.

use crate::sandbox::PortMapping;
use crate::{Error, Result};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the network layer is told of a pod.
#[derive(Debug, Clone)]
pub struct PodAttachment {
    pub sandbox_id: String,
    /// The pod's pinned network namespace.
    pub netns: PathBuf,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub port_mappings: Vec<PortMapping>,
}

pub trait PodNetwork: Send + Sync {
    /// Whether a pod can be attached now (the CRI's NetworkReady), else why not.
    fn ready(&self) -> BoxFuture<'_, std::result::Result<(), String>>;
    /// Gives the pod its interface; its IP addresses, the first the pod's IP.
    fn attach<'a>(&'a self, pod: &'a PodAttachment) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Takes whatever `attach` set up for the pod away; nothing to take is fine.
    fn detach<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// The node's CNI config: the lowest-named usable list in `conf_dir`, read at each call (a config
/// dropped in later is picked up: NetworkReady turns true).
pub struct CniNetwork {
    pub conf_dir: PathBuf,
    pub cni: berth_cni::Cni,
}

/// The interface name inside a pod, as every runtime names it.
const IFNAME: &str = "eth0";

impl CniNetwork {
    fn network(&self) -> std::result::Result<berth_cni::NetworkList, String> {
        let loaded = berth_cni::load_dir(&self.conf_dir);
        if let Some(first) = loaded.networks.into_iter().next() {
            return Ok(first);
        }
        let mut reason = format!("no usable CNI network config in {}", self.conf_dir.display());
        for e in loaded.errors {
            reason += &format!("; {e}");
        }
        Err(reason)
    }
}

fn cni_error(e: berth_cni::Error) -> Error {
    match e {
        berth_cni::Error::Invalid(m) => Error::Invalid(m),
        other => Error::Network(other.to_string()),
    }
}

impl PodNetwork for CniNetwork {
    fn ready(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        Box::pin(async move {
            let network = self.network()?;
            self.cni.status(&network).await.map_err(|e| format!("network {}: {e}", network.name))
        })
    }

    fn attach<'a>(&'a self, pod: &'a PodAttachment) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let network = self.network().map_err(Error::Network)?;
            let mappings: Vec<serde_json::Value> = pod
                .port_mappings
                .iter()
                .filter(|p| p.host_port > 0)
                .map(|p| {
                    serde_json::json!({"hostPort": p.host_port, "containerPort": p.container_port,
                        "protocol": if p.protocol.is_empty() { "tcp".to_string() } else { p.protocol.to_lowercase() },
                        "hostIP": p.host_ip})
                })
                .collect();
            let attachment = berth_cni::Attachment {
                container_id: pod.sandbox_id.clone(),
                netns: pod.netns.clone(),
                ifname: IFNAME.into(),
                args: vec![
                    ("K8S_POD_NAMESPACE".into(), pod.namespace.clone()),
                    ("K8S_POD_NAME".into(), pod.name.clone()),
                    ("K8S_POD_INFRA_CONTAINER_ID".into(), pod.sandbox_id.clone()),
                    ("K8S_POD_UID".into(), pod.uid.clone()),
                ],
                capability_args: [("portMappings".to_string(), serde_json::Value::Array(mappings))].into_iter().collect(),
            };
            let output = self.cni.add(&network, &attachment).await.map_err(cni_error)?;
            Ok(output.result.sandbox_ips())
        })
    }

    fn detach<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(del_cached(&self.cni, sandbox_id))
    }
}

/// DEL of every attachment the CNI cache holds for `id` (a pod's or a container's), from what ADD
/// cached: so also an ADD berthd died in, or one whose config is gone.
pub(crate) async fn del_cached(cni: &berth_cni::Cni, id: &str) -> Result<()> {
    for entry in cni.cache().all().into_iter().filter(|e| e.container_id == id) {
        let mut attachment = entry.attachment();
        // A namespace no longer pinned (a reboot, a crash between unpin and DEL) is gone with its
        // interfaces: DEL gets no netns, as the spec allows, and releases the rest.
        if !crate::pod_namespaces::is_mounted_over(&attachment.netns) {
            attachment.netns = PathBuf::new();
        }
        cni.del(&entry.network, &attachment).await.map_err(cni_error)?;
    }
    Ok(())
}

/// Addresses from 10.88.0.0/24 in memory, with the same contract as CNI.
#[derive(Default)]
pub struct MemoryNetwork {
    attached: std::sync::Mutex<std::collections::BTreeMap<String, u8>>,
}

impl MemoryNetwork {
    /// The pods attached now.
    pub fn attached(&self) -> Vec<String> {
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

impl PodNetwork for MemoryNetwork {
    fn ready(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn attach<'a>(&'a self, pod: &'a PodAttachment) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
            if attached.contains_key(&pod.sandbox_id) {
                return Err(Error::Network(format!("pod {} is attached already", pod.sandbox_id)));
            }
            let free = (2..=254u8).find(|n| !attached.values().any(|v| v == n)).ok_or_else(|| Error::Network("no address left".into()))?;
            attached.insert(pod.sandbox_id.clone(), free);
            Ok(vec![format!("10.88.0.{free}")])
        })
    }

    fn detach<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.attached.lock().unwrap_or_else(|e| e.into_inner()).remove(sandbox_id);
            Ok(())
        })
    }
}

/// The contract every [`PodNetwork`] keeps, given one that is ready and a netns path maker (a
/// real pinned namespace for CNI; any path for the fake).
pub async fn conformance(network: &dyn PodNetwork, netns: &mut dyn FnMut(&str) -> PathBuf) {
    network.ready().await.expect("ready");
    let pod = |id: &str, netns: PathBuf| PodAttachment {
        sandbox_id: id.into(),
        netns,
        name: format!("pod-{id}"),
        namespace: "default".into(),
        uid: format!("uid-{id}"),
        port_mappings: Vec::new(),
    };
    let (a, b) = (pod("conformancea", netns("conformancea")), pod("conformanceb", netns("conformanceb")));
    let a_ips = network.attach(&a).await.expect("attach a");
    let b_ips = network.attach(&b).await.expect("attach b");
    assert!(!a_ips.is_empty() && !b_ips.is_empty(), "an attached pod has an address");
    assert_ne!(a_ips[0], b_ips[0], "two pods, two addresses");
    for _ in 0..2 {
        network.detach(&a.sandbox_id).await.expect("detach a (twice: idempotent)");
    }
    network.detach("never-attached").await.expect("detaching a pod never attached is fine");
    let again = network.attach(&a).await.expect("a detached pod can be attached again");
    assert!(!again.is_empty());
    network.detach(&a.sandbox_id).await.unwrap();
    network.detach(&b.sandbox_id).await.unwrap();
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_network_keeps_the_contract() {
        let network = super::MemoryNetwork::default();
        super::conformance(&network, &mut |id| format!("/run/netns/{id}").into()).await;
        assert!(network.attached().is_empty());
    }
}
