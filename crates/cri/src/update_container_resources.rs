//! UpdateContainerResources: the new limits written to the running container's cgroup.

use crate::container_spec::resources_of;
use crate::proto::{UpdateContainerResourcesRequest, UpdateContainerResourcesResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: UpdateContainerResourcesRequest) -> Result<UpdateContainerResourcesResponse> {
    let linux = request.linux.unwrap_or_default();
    let (resources, _) = resources_of(&linux).map_err(status)?;
    cri.containers().update_resources(&request.container_id, resources).await.map_err(status)?;
    Ok(UpdateContainerResourcesResponse {})
}
