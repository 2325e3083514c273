//! RemovePodSandbox: the pod's containers (killed if still running), namespaces, files and record.
//! A pod that is gone is fine.

use crate::proto::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use crate::{status, Cri, Result};
use berth_containers::Error;

pub(crate) async fn handle(cri: &Cri, request: RemovePodSandboxRequest) -> Result<RemovePodSandboxResponse> {
    match cri.containers().remove_sandbox(&request.pod_sandbox_id).await {
        Ok(_) | Err(Error::NoPod(_)) => Ok(RemovePodSandboxResponse {}),
        Err(e) => Err(status(e)),
    }
}
