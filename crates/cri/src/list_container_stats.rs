//! ListContainerStats: [`crate::container_stats`] for each pod container the filter selects.

use crate::container_stats::sample;
use crate::convert::{id_matches, selected};
use crate::proto::{ListContainerStatsRequest, ListContainerStatsResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ListContainerStatsRequest) -> Result<ListContainerStatsResponse> {
    let filter = request.filter.unwrap_or_default();
    let mut stats = Vec::new();
    for record in cri.containers().list() {
        let in_pod = record.sandbox.as_deref().is_some_and(|pod| id_matches(&filter.pod_sandbox_id, pod));
        if in_pod && id_matches(&filter.id, &record.id) && selected(&filter.label_selector, &record.labels) {
            match sample(cri, &record).await {
                Ok(sample) => stats.push(sample),
                // Removed meanwhile.
                Err(berth_containers::Error::NotFound(_)) => {}
                Err(e) => return Err(status(e)),
            }
        }
    }
    Ok(ListContainerStatsResponse { stats })
}
