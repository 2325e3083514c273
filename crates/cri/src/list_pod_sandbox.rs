//! ListPodSandbox: from memory (the kubelet asks every second), filtered by id (or its prefix),
//! state and labels.

use crate::convert::{id_matches, pod_sandbox, sandbox_state, selected};
use crate::proto::{ListPodSandboxRequest, ListPodSandboxResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ListPodSandboxRequest) -> Result<ListPodSandboxResponse> {
    let filter = request.filter.unwrap_or_default();
    let items = cri
        .containers()
        .list_sandboxes()
        .iter()
        .filter(|p| id_matches(&filter.id, &p.id))
        .filter(|p| filter.state.as_ref().is_none_or(|s| s.state == sandbox_state(p) as i32))
        .filter(|p| selected(&filter.label_selector, &p.config.labels))
        .map(pod_sandbox)
        .collect();
    Ok(ListPodSandboxResponse { items })
}
