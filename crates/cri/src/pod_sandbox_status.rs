//! PodSandboxStatus: from memory; with `verbose`, the pod's record as JSON under `info`.

use crate::convert::{now, pod_status};
use crate::proto::{PodSandboxStatusRequest, PodSandboxStatusResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: PodSandboxStatusRequest) -> Result<PodSandboxStatusResponse> {
    let record = cri.containers().find_sandbox(&request.pod_sandbox_id).map_err(status)?;
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let json = serde_json::json!({"id": record.id, "config": record.config, "state": record.state});
        info.insert("info".to_string(), json.to_string());
    }
    Ok(PodSandboxStatusResponse { status: Some(pod_status(&record)), info, containers_statuses: Vec::new(), timestamp: now() })
}
