//! berth-cri: the Kubernetes CRI v1 — `runtime.v1.RuntimeService` and `runtime.v1.ImageService` —
//! over berth's containers and images libraries, as a library berthd serves on its socket. The
//! protos come from the `k8s-cri` crate. One file per RPC, as containerd's `internal/cri/server`
//! has it: what happens at RunPodSandbox is in `run_pod_sandbox.rs`; `service.rs` only
//! dispatches. Records become CRI messages in `convert.rs`; a ContainerConfig becomes a runtime
//! spec in `container_spec.rs` (with `security.rs` and `mounts.rs`). Every error leaves through
//! berth-errdefs' one mapping to gRPC status; what berth does not do answers UNIMPLEMENTED.
//!
//! Owns: nothing on disk (the containers library keeps pods, containers and their files; the image
//! library the images; the pod network is the containers library's, CNI in berthd). Exec, Attach
//! and PortForward return URLs on berth's streaming server (berth-streaming, started by berthd
//! with this crate's [`StreamingRuntime`]).

mod container_spec;
mod convert;
mod mounts;
mod security;
mod service;

mod attach;
mod container_stats;
mod container_status;
mod create_container;
mod exec;
mod exec_sync;
mod get_container_events;
mod image_fs_info;
mod image_status;
mod list_container_stats;
mod list_containers;
mod list_images;
mod list_pod_sandbox;
mod list_pod_sandbox_stats;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod pull_image;
mod remove_container;
mod remove_image;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod streaming_runtime;
mod unimplemented;
mod update_container_resources;
mod update_runtime_config;
mod version;

pub use k8s_cri::v1 as proto;
pub use streaming_runtime::StreamingRuntime;

use berth_containers::Containers;
use berth_image::registries::SharedRegistries;
use berth_image::Store;
use std::sync::Arc;

/// What berthd's configuration says about the CRI.
#[derive(Debug, Clone)]
pub struct Config {
    /// Images reported pinned (never garbage collected by the kubelet).
    pub pinned_images: Vec<String>,
}

/// The CRI services; cheap to clone (each service holds one).
#[derive(Clone)]
pub struct Cri {
    inner: Arc<Inner>,
}

struct Inner {
    containers: Containers,
    store: Arc<Store>,
    registries: SharedRegistries,
    config: Config,
    /// Where Exec, Attach and PortForward send their clients (None: those answer UNAVAILABLE).
    streaming: Option<Arc<berth_streaming::Server>>,
}

impl Cri {
    pub fn new(
        containers: Containers,
        store: Arc<Store>,
        registries: SharedRegistries,
        config: Config,
        streaming: Option<Arc<berth_streaming::Server>>,
    ) -> Cri {
        Cri { inner: Arc::new(Inner { containers, store, registries, config, streaming }) }
    }

    pub fn runtime_service(&self) -> proto::runtime_service_server::RuntimeServiceServer<Cri> {
        proto::runtime_service_server::RuntimeServiceServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn image_service(&self) -> proto::image_service_server::ImageServiceServer<Cri> {
        proto::image_service_server::ImageServiceServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn containers(&self) -> &Containers {
        &self.inner.containers
    }

    fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether the runtime behind a handler (None: the default) mounts recursively read-only:
    /// berth-oci does (mount_setattr); runc 1.1 and crun 1.8 here are not counted on.
    fn recursive_read_only(&self, runtime: Option<&str>) -> bool {
        runtime.map_or_else(|| self.containers().runtime_names().1, str::to_string) == "berth-oci"
    }

    /// Whether a handler's pods may have user namespaces: berth-oci joins one by path and makes
    /// idmapped volume mounts (runc 1.1 here makes none), where the layers take idmapped mounts.
    fn user_namespaces(&self, runtime: Option<&str>) -> bool {
        self.recursive_read_only(runtime) && self.containers().user_namespaces_supported()
    }

    /// The one-time URL on the streaming server for `request`.
    fn streaming_url(&self, request: berth_streaming::Request) -> Result<String> {
        let server = self.inner.streaming.as_ref().ok_or_else(|| tonic::Status::unavailable("berthd runs no streaming server"))?;
        server.url(request).map_err(|e| match e {
            berth_streaming::Error::Invalid(m) => tonic::Status::invalid_argument(m),
            berth_streaming::Error::TooManyInFlight => tonic::Status::resource_exhausted(e.to_string()),
        })
    }

    /// The runtime a handler names: the default for "", else one of berthd's runtimes.
    fn runtime(&self, handler: &str) -> Result<Option<String>> {
        if handler.is_empty() {
            return Ok(None);
        }
        // RuntimeClass handlers are the names of berthd's runtimes (as a reload left them).
        let (handlers, _) = self.containers().runtime_names();
        if handlers.iter().any(|h| h == handler) {
            return Ok(Some(handler.to_string()));
        }
        Err(tonic::Status::invalid_argument(format!("unknown runtime handler {handler:?} (berthd's runtimes: {})", handlers.join(", "))))
    }
}

/// The largest request berthd decodes (the kubelet's are far smaller; gRPC's default is 4 MiB).
const MAX_MESSAGE: usize = 16 << 20;

type Result<T> = std::result::Result<T, tonic::Status>;

/// A library error as a gRPC status (berth-errdefs' one mapping).
fn status(error: impl berth_errdefs::HasKind + std::fmt::Display) -> tonic::Status {
    berth_errdefs::status(error)
}
