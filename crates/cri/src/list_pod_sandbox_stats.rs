//! ListPodSandboxStats: [`crate::pod_sandbox_stats`] for each pod the filter selects.

use crate::convert::{id_matches, selected};
use crate::pod_sandbox_stats::pod_stats;
use crate::proto::{ListPodSandboxStatsRequest, ListPodSandboxStatsResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ListPodSandboxStatsRequest) -> Result<ListPodSandboxStatsResponse> {
    let filter = request.filter.unwrap_or_default();
    let mut stats = Vec::new();
    for sandbox in cri.containers().list_sandboxes() {
        if id_matches(&filter.id, &sandbox.id) && selected(&filter.label_selector, &sandbox.config.labels) {
            stats.push(pod_stats(cri, &sandbox).await?);
        }
    }
    Ok(ListPodSandboxStatsResponse { stats })
}
