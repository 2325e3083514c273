//! Attach: a one-time URL on berth's streaming server for the container's stdio (through its shim).

use crate::proto::{AttachRequest, AttachResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: AttachRequest) -> Result<AttachResponse> {
    let record = cri.containers().running(&request.container_id).map_err(status)?;
    let url = cri.streaming_url(berth_streaming::Request::Attach(berth_streaming::AttachRequest {
        container_id: record.id,
        tty: request.tty,
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
    }))?;
    Ok(AttachResponse { url })
}
