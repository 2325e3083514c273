//! RemoveContainer: killed if it still runs, then everything of it; a container already gone is
//! fine.

use crate::proto::{RemoveContainerRequest, RemoveContainerResponse};
use crate::{status, Cri, Result};
use berth_containers::Error;

pub(crate) async fn handle(cri: &Cri, request: RemoveContainerRequest) -> Result<RemoveContainerResponse> {
    match cri.containers().remove(&request.container_id, true).await {
        Ok(_) | Err(Error::NotFound(_)) => Ok(RemoveContainerResponse {}),
        Err(e) => Err(status(e)),
    }
}
