//! StartContainer: the library's start (the shim runs the runtime's start).

use crate::proto::{StartContainerRequest, StartContainerResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: StartContainerRequest) -> Result<StartContainerResponse> {
    cri.containers().start(&request.container_id).await.map_err(status)?;
    Ok(StartContainerResponse {})
}
