//! StopContainer: its stop signal, SIGKILL after `timeout` seconds; stopping a stopped or
//! removed container is fine.

use crate::proto::{StopContainerRequest, StopContainerResponse};
use crate::{status, Cri, Result};
use berth_containers::Error;

pub(crate) async fn handle(cri: &Cri, request: StopContainerRequest) -> Result<StopContainerResponse> {
    let timeout = std::time::Duration::from_secs(request.timeout.max(0) as u64);
    match cri.containers().stop(&request.container_id, timeout).await {
        Ok(_) | Err(Error::NotFound(_)) => Ok(StopContainerResponse {}),
        Err(e) => Err(status(e)),
    }
}
