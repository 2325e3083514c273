//! PodSandboxStats: the pod's containers' samples, and their sum as the pod's CPU and memory.

use crate::container_stats::sample;
use crate::convert::{map, now, pod_metadata};
use crate::proto::{
    CpuUsage, LinuxPodSandboxStats, MemoryUsage, PodSandboxAttributes, PodSandboxStats, PodSandboxStatsRequest, PodSandboxStatsResponse, UInt64Value,
};
use crate::{status, Cri, Result};
use berth_containers::SandboxRecord;

pub(crate) async fn handle(cri: &Cri, request: PodSandboxStatsRequest) -> Result<PodSandboxStatsResponse> {
    let sandbox = cri.containers().find_sandbox(&request.pod_sandbox_id).map_err(status)?;
    Ok(PodSandboxStatsResponse { stats: Some(pod_stats(cri, &sandbox).await?) })
}

pub(crate) async fn pod_stats(cri: &Cri, sandbox: &SandboxRecord) -> Result<PodSandboxStats> {
    let mut containers = Vec::new();
    for record in cri.containers().list().into_iter().filter(|c| c.sandbox.as_deref() == Some(sandbox.id.as_str())) {
        match sample(cri, &record).await {
            Ok(sample) => containers.push(sample),
            Err(berth_containers::Error::NotFound(_)) => {}
            Err(e) => return Err(status(e)),
        }
    }
    let sum = |get: &dyn Fn(&crate::proto::ContainerStats) -> Option<u64>| containers.iter().filter_map(get).sum::<u64>();
    let timestamp = now();
    let cpu = sum(&|c| c.cpu.as_ref().and_then(|u| u.usage_core_nano_seconds.as_ref()).map(|v| v.value));
    let working_set = sum(&|c| c.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).map(|v| v.value));
    let usage = sum(&|c| c.memory.as_ref().and_then(|m| m.usage_bytes.as_ref()).map(|v| v.value));
    let linux = LinuxPodSandboxStats {
        cpu: Some(CpuUsage { timestamp, usage_core_nano_seconds: Some(UInt64Value { value: cpu }), usage_nano_cores: None }),
        memory: Some(MemoryUsage {
            timestamp,
            working_set_bytes: Some(UInt64Value { value: working_set }),
            usage_bytes: Some(UInt64Value { value: usage }),
            ..Default::default()
        }),
        containers,
        ..Default::default()
    };
    let attributes = PodSandboxAttributes {
        id: sandbox.id.clone(),
        metadata: Some(pod_metadata(sandbox)),
        labels: map(&sandbox.config.labels),
        annotations: map(&sandbox.config.annotations),
    };
    Ok(PodSandboxStats { attributes: Some(attributes), linux: Some(linux), windows: None })
}
