//! Status: the runtime is ready; the network is not (no CNI yet: pods get loopback only), with
//! the reason the kubelet shows; every runtime handler and what it supports; with `verbose`, the
//! CRI configuration as JSON under `config`.

use crate::proto::{RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest, StatusResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: StatusRequest) -> Result<StatusResponse> {
    let conditions = vec![
        RuntimeCondition { r#type: "RuntimeReady".into(), status: true, reason: String::new(), message: String::new() },
        RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "berth: no CNI network yet; pods get loopback only".into(),
        },
    ];
    // Recursive read-only mounts and user namespaces are not supported by berth-oci yet: said so,
    // the kubelet does not ask for them.
    let features = RuntimeHandlerFeatures { recursive_read_only_mounts: false, user_namespaces: false };
    let handlers = std::iter::once(String::new()).chain(cri.config().runtime_handlers.iter().cloned());
    let runtime_handlers = handlers.map(|name| RuntimeHandler { name, features: Some(features) }).collect();
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let config = &cri.config();
        let json = serde_json::json!({
            "runtimeHandlers": config.runtime_handlers,
            "defaultRuntime": config.default_runtime,
            "pinnedImages": config.pinned_images,
            "cgroupDriver": "cgroupfs",
        });
        info.insert("config".to_string(), json.to_string());
    }
    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions }),
        info,
        runtime_handlers,
        features: Some(RuntimeFeatures { supplemental_groups_policy: true }),
    })
}
