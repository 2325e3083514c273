//! ReopenContainerLog: the shim reopens the log file the kubelet has just rotated away.

use crate::proto::{ReopenContainerLogRequest, ReopenContainerLogResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ReopenContainerLogRequest) -> Result<ReopenContainerLogResponse> {
    cri.containers().reopen_log(&request.container_id).await.map_err(status)?;
    Ok(ReopenContainerLogResponse {})
}
