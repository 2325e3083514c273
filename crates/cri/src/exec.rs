//! Exec: a one-time URL on berth's streaming server where the client (crictl, or the kubelet for
//! `kubectl exec`) upgrades to SPDY or a WebSocket and the command then runs, through the shim.

use crate::proto::{ExecRequest, ExecResponse};
use crate::{status, Cri, Result};

pub(crate) async fn handle(cri: &Cri, request: ExecRequest) -> Result<ExecResponse> {
    let record = cri.containers().running(&request.container_id).map_err(status)?;
    let url = cri.streaming_url(berth_streaming::Request::Exec(berth_streaming::ExecRequest {
        container_id: record.id,
        cmd: request.cmd,
        tty: request.tty,
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
    }))?;
    Ok(ExecResponse { url })
}
