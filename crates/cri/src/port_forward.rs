//! PortForward: a one-time URL on berth's streaming server whose connections reach the pod's
//! localhost ports from inside its network namespace.

use crate::proto::{PortForwardRequest, PortForwardResponse};
use crate::{status, Cri, Result};
use tonic::Status;

pub(crate) async fn handle(cri: &Cri, request: PortForwardRequest) -> Result<PortForwardResponse> {
    let sandbox = cri.containers().find_sandbox(&request.pod_sandbox_id).map_err(status)?;
    let ports = request
        .port
        .iter()
        .map(|p| u16::try_from(*p).ok().filter(|p| *p > 0).ok_or_else(|| Status::invalid_argument(format!("{p} is not a port"))))
        .collect::<Result<Vec<u16>>>()?;
    let url = cri.streaming_url(berth_streaming::Request::PortForward(berth_streaming::PortForwardRequest { pod_id: sandbox.id, ports }))?;
    Ok(PortForwardResponse { url })
}
