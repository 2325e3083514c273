//! UpdateRuntimeConfig: the kubelet tells the node's pod CIDR, which only the network layer (CNI,
//! not yet here) would use; accepted and logged.

use crate::proto::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(_: &Cri, request: UpdateRuntimeConfigRequest) -> Result<UpdateRuntimeConfigResponse> {
    let cidr = request.runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
    tracing::info!(pod_cidr = %cidr, "runtime config from the kubelet");
    Ok(UpdateRuntimeConfigResponse {})
}
