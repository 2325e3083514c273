//! RunPodSandbox: the pod's record, then its namespaces pinned without a process (network, IPC,
//! UTS of its own unless it asks for the node's), its hostname, /etc/hosts and resolv.conf from
//! its DNS config, its sysctls (namespaced ones only), cgroup parent, log directory, port
//! mappings (recorded for the network layer) and runtime handler. No pause image, no process.
//! Until CNI lands, a pod's network namespace has loopback only.

use crate::convert::btree;
use crate::proto::{NamespaceMode, PodSandboxConfig, Protocol, RunPodSandboxRequest, RunPodSandboxResponse};
use crate::{status, Cri, Result};
use berth_containers::{DnsConfig, PortMapping, SandboxConfig};
use tonic::Status;

pub(crate) async fn handle(cri: &Cri, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse> {
    let runtime = cri.runtime(&request.runtime_handler)?;
    let config = request.config.ok_or_else(|| Status::invalid_argument("RunPodSandbox needs a config"))?;
    let sandbox = sandbox_config(config, runtime)?;
    let record = cri.containers().create_sandbox(sandbox).await.map_err(status)?;
    tracing::info!(pod = %record.id, name = %record.config.name, namespace = %record.config.namespace, "pod ready");
    Ok(RunPodSandboxResponse { pod_sandbox_id: record.id })
}

fn sandbox_config(config: PodSandboxConfig, runtime: Option<String>) -> Result<SandboxConfig> {
    let metadata = config.metadata.ok_or_else(|| Status::invalid_argument("a pod needs metadata (name, namespace, uid)"))?;
    let linux = config.linux.unwrap_or_default();
    let options = linux.security_context.as_ref().and_then(|s| s.namespace_options.clone()).unwrap_or_default();
    if options.userns_options.as_ref().is_some_and(|u| u.mode == NamespaceMode::Pod as i32) {
        return Err(Status::unimplemented("user namespaces for pods are not supported by berth yet"));
    }
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
    })
}
