//! ContainerStatus: state, times, exit code and reason (OOMKilled, Completed, Error), mounts and
//! user from its spec, log path, image; with `verbose`, its pid and spec as JSON under `info`.

use crate::convert::container_status;
use crate::proto::{ContainerStatusRequest, ContainerStatusResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ContainerStatusRequest) -> Result<ContainerStatusResponse> {
    let record = cri.containers().find(&request.container_id).map_err(status)?;
    let spec = cri.containers().spec(&record.id).await.unwrap_or_default();
    let log_path = record.log_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let mut info = std::collections::HashMap::new();
    if request.verbose {
        let json = serde_json::json!({"pid": record.pid, "sandboxID": record.sandbox, "runtime": record.runtime, "runtimeSpec": spec});
        info.insert("info".to_string(), json.to_string());
    }
    Ok(ContainerStatusResponse { status: Some(container_status(&record, &spec, log_path)), info })
}
