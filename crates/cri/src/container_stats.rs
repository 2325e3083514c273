//! ContainerStats: one sample read from the container's cgroup (no process spawned per call):
//! CPU time, memory use and working set (use less inactive file pages, as the kubelet counts it).

use crate::convert::{container_metadata, map, now};
use crate::proto::{ContainerAttributes, ContainerStats, ContainerStatsRequest, ContainerStatsResponse, CpuUsage, MemoryUsage, UInt64Value};
use crate::{status, Cri, Result};
use berth_containers::ContainerRecord;

pub(crate) async fn handle(cri: &Cri, request: ContainerStatsRequest) -> Result<ContainerStatsResponse> {
    let record = cri.containers().find(&request.container_id).map_err(status)?;
    Ok(ContainerStatsResponse { stats: Some(sample(cri, &record).await.map_err(status)?) })
}

/// The container's stats; a container that is not running has only its attributes.
pub(crate) async fn sample(cri: &Cri, record: &ContainerRecord) -> berth_containers::Result<ContainerStats> {
    let attributes = ContainerAttributes {
        id: record.id.clone(),
        metadata: Some(container_metadata(record)),
        labels: map(&record.labels),
        annotations: map(&record.annotations),
    };
    let mut stats = ContainerStats { attributes: Some(attributes), ..Default::default() };
    if record.state != berth_containers::State::Running {
        return Ok(stats);
    }
    let cgroup = match cri.containers().stats(&record.id).await {
        Ok(cgroup) => cgroup,
        // It exited between the look and the read.
        Err(berth_containers::Error::WrongState(_)) => return Ok(stats),
        Err(e) => return Err(e),
    };
    let timestamp = now();
    let value = |value| Some(UInt64Value { value });
    stats.cpu = Some(CpuUsage { timestamp, usage_core_nano_seconds: value(cgroup.cpu.usage.total), usage_nano_cores: None });
    let inactive = ["total_inactive_file", "inactive_file"].iter().find_map(|k| cgroup.memory.raw.get(*k)).copied().unwrap_or(0);
    let usage = cgroup.memory.usage.usage;
    stats.memory = Some(MemoryUsage {
        timestamp,
        working_set_bytes: value(usage.saturating_sub(inactive)),
        usage_bytes: value(usage),
        rss_bytes: ["total_rss", "anon"].iter().find_map(|k| cgroup.memory.raw.get(*k)).copied().and_then(value),
        ..Default::default()
    });
    Ok(stats)
}
