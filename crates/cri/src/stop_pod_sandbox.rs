//! StopPodSandbox: every container of the pod killed (at once: the kubelet has already stopped
//! them gracefully), its namespaces unpinned; the pod stays, not ready. A pod that is gone or
//! already stopped is fine.

use crate::proto::{StopPodSandboxRequest, StopPodSandboxResponse};
use crate::{status, Cri, Result};
use berth_containers::Error;

pub(crate) async fn handle(cri: &Cri, request: StopPodSandboxRequest) -> Result<StopPodSandboxResponse> {
    match cri.containers().stop_sandbox(&request.pod_sandbox_id, std::time::Duration::ZERO).await {
        Ok(_) | Err(Error::NoPod(_)) => Ok(StopPodSandboxResponse {}),
        Err(e) => Err(status(e)),
    }
}
