//! Status: the runtime is ready; the network is when the pod network (CNI) has a usable config,
//! else not, with the reason the kubelet shows; every runtime handler and what it supports; with `verbose`, the
//! CRI configuration as JSON under `config`.

use crate::proto::{RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest, StatusResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: StatusRequest) -> Result<StatusResponse> {
    let network = match cri.containers().pod_network() {
        Some(network) => network.ready().await,
        None => Err("berth: no pod network configured".into()),
    };
    let network = match network {
        Ok(()) => RuntimeCondition { r#type: "NetworkReady".into(), status: true, reason: String::new(), message: String::new() },
        Err(why) => RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: format!("{why} (pods get loopback only)"),
        },
    };
    let conditions = vec![RuntimeCondition { r#type: "RuntimeReady".into(), status: true, reason: String::new(), message: String::new() }, network];
    // What each handler's runtime can do: the kubelet asks for neither where it is false.
    let (names, default_runtime) = cri.containers().runtime_names();
    let handlers = std::iter::once(String::new()).chain(names.iter().cloned());
    let runtime_handlers = handlers
        .map(|name| {
            let runtime = (!name.is_empty()).then_some(name.as_str());
            let features = RuntimeHandlerFeatures {
                recursive_read_only_mounts: cri.recursive_read_only(runtime),
                user_namespaces: cri.user_namespaces(runtime),
            };
            RuntimeHandler { name, features: Some(features) }
        })
        .collect();
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let config = &cri.config();
        let json = serde_json::json!({
            "runtimeHandlers": names,
            "defaultRuntime": default_runtime,
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
