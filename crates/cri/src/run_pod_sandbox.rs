//! RunPodSandbox: the pod's record, then its namespaces pinned without a process (network, IPC,
//! UTS of its own unless it asks for the node's), its hostname, /etc/hosts and resolv.conf from
//! its DNS config, its sysctls (namespaced ones only), cgroup parent, log directory, port
//! mappings (recorded for the network layer), runtime handler and user namespace (POD mode: one
//! of its own, owning the others). No pause image, no process.
//! Until CNI lands, a pod's network namespace has loopback only.

use crate::convert::btree;
use crate::proto::{IdMapping, NamespaceMode, PodSandboxConfig, Protocol, RunPodSandboxRequest, RunPodSandboxResponse, UserNamespace};
use crate::{status, Cri, Result};
use berth_containers::{DnsConfig, IdRange, PortMapping, SandboxConfig};
use tonic::Status;

pub(crate) async fn handle(cri: &Cri, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse> {
    let runtime = cri.runtime(&request.runtime_handler)?;
    let config = request.config.ok_or_else(|| Status::invalid_argument("RunPodSandbox needs a config"))?;
    let sandbox = sandbox_config(config, runtime)?;
    if sandbox.user_namespace.is_some() && !cri.user_namespaces(sandbox.runtime.as_deref()) {
        return Err(Status::invalid_argument(format!(
            "runtime handler {:?} cannot run a pod in a user namespace (berth-oci can, where the layers take idmapped mounts)",
            request.runtime_handler
        )));
    }
    let record = cri.containers().create_sandbox(sandbox).await.map_err(status)?;
    tracing::info!(pod = %record.id, name = %record.config.name, namespace = %record.config.namespace, "pod ready");
    Ok(RunPodSandboxResponse { pod_sandbox_id: record.id })
}

fn sandbox_config(config: PodSandboxConfig, runtime: Option<String>) -> Result<SandboxConfig> {
    let metadata = config.metadata.ok_or_else(|| Status::invalid_argument("a pod needs metadata (name, namespace, uid)"))?;
    let linux = config.linux.unwrap_or_default();
    let options = linux.security_context.as_ref().and_then(|s| s.namespace_options.clone()).unwrap_or_default();
    let user_namespace = options.userns_options.as_ref().map(user_namespace).transpose()?.flatten();
    let log_directory = match config.log_directory.as_str() {
        "" => None,
        dir if dir.starts_with('/') && !dir.split('/').any(|c| c == "..") => Some(dir.into()),
        dir => return Err(Status::invalid_argument(format!("log directory {dir:?} must be absolute, without '..'"))),
    };
    let port_mappings = config
        .port_mappings
        .iter()
        .map(|p| PortMapping {
            protocol: Protocol::try_from(p.protocol).unwrap_or(Protocol::Tcp).as_str_name().to_ascii_lowercase(),
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        })
        .collect();
    Ok(SandboxConfig {
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        attempt: metadata.attempt,
        labels: btree(config.labels),
        annotations: btree(config.annotations),
        hostname: config.hostname,
        log_directory,
        cgroup_parent: Some(linux.cgroup_parent).filter(|p| !p.is_empty()),
        runtime,
        host_network: options.network == NamespaceMode::Node as i32,
        host_ipc: options.ipc == NamespaceMode::Node as i32,
        host_pid: options.pid == NamespaceMode::Node as i32,
        share_pid: options.pid == NamespaceMode::Pod as i32,
        dns: config.dns_config.map(|d| DnsConfig { servers: d.servers, searches: d.searches, options: d.options }),
        port_mappings,
        sysctls: btree(linux.sysctls),
        user_namespace,
    })
}

/// The pod's user namespace: the node's (NODE) or its own (POD) with exactly one uid and one gid
/// range, as the kubelet sends them (containerd and CRI-O take no more either). A namespace per
/// container (CONTAINER, TARGET) is no mode Kubernetes has for users.
fn user_namespace(options: &UserNamespace) -> Result<Option<berth_containers::UserNamespace>> {
    match NamespaceMode::try_from(options.mode) {
        Ok(NamespaceMode::Node) => Ok(None),
        Ok(NamespaceMode::Pod) => {
            let range = |what: &str, ids: &[IdMapping]| match ids {
                [one] => Ok(IdRange { container_id: one.container_id, host_id: one.host_id, length: one.length }),
                _ => Err(Status::invalid_argument(format!("a pod's user namespace takes exactly one {what} mapping, not {}", ids.len()))),
            };
            let userns = berth_containers::UserNamespace { uids: range("uid", &options.uids)?, gids: range("gid", &options.gids)? };
            userns.check().map_err(status)?;
            Ok(Some(userns))
        }
        _ => Err(Status::invalid_argument(format!("user namespace mode {}: only NODE or POD", options.mode))),
    }
}
