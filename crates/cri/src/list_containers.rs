//! ListContainers: the pods' containers from memory (the kubelet asks every second), filtered by
//! id (or its prefix), state, pod and labels. Containers of `berth run` are not the kubelet's.

use crate::convert::{container, container_state, id_matches, selected};
use crate::proto::{ListContainersRequest, ListContainersResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ListContainersRequest) -> Result<ListContainersResponse> {
    let filter = request.filter.unwrap_or_default();
    let containers = cri
        .containers()
        .list()
        .iter()
        .filter(|c| c.sandbox.as_deref().is_some_and(|pod| id_matches(&filter.pod_sandbox_id, pod)))
        .filter(|c| id_matches(&filter.id, &c.id))
        .filter(|c| filter.state.as_ref().is_none_or(|s| s.state == container_state(c.state) as i32))
        .filter(|c| selected(&filter.label_selector, &c.labels))
        .map(container)
        .collect();
    Ok(ListContainersResponse { containers })
}
