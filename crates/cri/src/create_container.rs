//! CreateContainer: the request checked (what berth cannot do is UNIMPLEMENTED, a bad path or a
//! name taken in the pod is refused before anything exists), then the containers library's
//! create with the pod's shim, the CRI log path under the pod's log directory, and the spec made
//! from the ContainerConfig ([`crate::container_spec`]).

use crate::container_spec::CriSpec;
use crate::convert::btree;
use crate::proto::{CreateContainerRequest, CreateContainerResponse, ImageSpec, NamespaceMode};
use crate::{status, Cri, Result};
use berth_containers::blueprint::Blueprint;
use berth_containers::pod_namespaces::PodNamespace;
use tonic::Status;

pub(crate) async fn handle(cri: &Cri, request: CreateContainerRequest) -> Result<CreateContainerResponse> {
    let config = request.config.ok_or_else(|| Status::invalid_argument("CreateContainer needs a config"))?;
    let sandbox = cri.containers().find_sandbox(&request.pod_sandbox_id).map_err(status)?;
    let metadata = config.metadata.clone().ok_or_else(|| Status::invalid_argument("a container needs metadata (a name)"))?;
    if metadata.name.is_empty() {
        return Err(Status::invalid_argument("a container needs a name"));
    }
    let image = config.image.as_ref().map(|i: &ImageSpec| i.image.clone()).unwrap_or_default();
    if image.is_empty() {
        return Err(Status::invalid_argument("a container needs an image"));
    }
    crate::mounts::check(&config, cri.recursive_read_only(sandbox.config.runtime.as_deref()), sandbox.config.user_namespace.as_ref())?;
    if let Some(taken) = cri
        .containers()
        .list()
        .into_iter()
        .find(|c| c.sandbox.as_deref() == Some(sandbox.id.as_str()) && c.metadata_name == metadata.name && c.attempt == metadata.attempt)
    {
        return Err(Status::already_exists(format!("container {} (attempt {}) exists in the pod: {}", metadata.name, metadata.attempt, taken.id)));
    }
    let log_path = match (&sandbox.config.log_directory, config.log_path.as_str()) {
        (_, "") => None,
        (Some(dir), relative) if !relative.starts_with('/') && !relative.split('/').any(|c| c == ".." || c.is_empty()) => Some(dir.join(relative)),
        (None, _) => return Err(Status::invalid_argument("a log path needs the pod's log directory")),
        (_, path) => return Err(Status::invalid_argument(format!("log path {path:?} must be relative to the pod's log directory, without '..'"))),
    };
    // The kubelet makes its pod log directories; other clients count on the runtime for it.
    if let Some(dir) = log_path.as_ref().and_then(|p: &std::path::PathBuf| p.parent()) {
        std::fs::create_dir_all(dir).map_err(|e| Status::internal(format!("create the log directory {}: {e}", dir.display())))?;
    }
    let pod_dir = cri.containers().sandbox_dir(&sandbox.id);
    let options = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone()).unwrap_or_default();
    let target_pid = match options.pid == NamespaceMode::Target as i32 {
        true => {
            let target = cri.containers().find(&options.target_id).map_err(status)?;
            if target.state != berth_containers::State::Running || target.sandbox.as_deref() != Some(sandbox.id.as_str()) {
                return Err(Status::failed_precondition(format!("target container {} is not running in this pod", options.target_id)));
            }
            Some(std::path::PathBuf::from(format!("/proc/{}/ns/pid", target.pid)))
        }
        false => None,
    };
    let namespaces = [PodNamespace::Net, PodNamespace::Ipc, PodNamespace::Uts, PodNamespace::Pid, PodNamespace::User]
        .into_iter()
        .filter_map(|kind| cri.containers().sandbox_namespace(&sandbox, kind).map(|path| (kind, path)))
        .collect();
    let blueprint = Blueprint {
        network: None,
        network_of: None,
        image,
        name: None,
        metadata_name: metadata.name.clone(),
        labels: btree(config.labels.clone()),
        annotations: btree(config.annotations.clone()),
        sandbox: Some(sandbox.id.clone()),
        attempt: metadata.attempt,
        tty: config.tty,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        runtime: sandbox.config.runtime.clone(),
        auto_remove: false,
        restart: Default::default(),
        log_path,
        spec: Box::new(CriSpec { config, sandbox, pod_dir, namespaces, target_pid }),
    };
    let record = cri.containers().create_from(blueprint).await.map_err(status)?;
    Ok(CreateContainerResponse { container_id: record.id })
}
