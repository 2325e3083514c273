//! ExecSync: a process run to its end in the container through its shim, killed at the timeout
//! (none: no limit), stdout and stderr kept up to the shim's cap each.

use crate::proto::{ExecSyncRequest, ExecSyncResponse};
use crate::{status, Cri, Result};
use berth_containers::ExecOptions;
use tonic::Status;

/// What "no timeout" means here: a day.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub(crate) async fn handle(cri: &Cri, request: ExecSyncRequest) -> Result<ExecSyncResponse> {
    if request.cmd.is_empty() {
        return Err(Status::invalid_argument("ExecSync needs a command"));
    }
    let timeout = if request.timeout > 0 { std::time::Duration::from_secs(request.timeout as u64) } else { FOREVER };
    let exec = ExecOptions { args: request.cmd, ..Default::default() };
    let output = cri.containers().exec_sync(&request.container_id, exec, timeout).await.map_err(status)?;
    if output.exit.timed_out {
        return Err(Status::deadline_exceeded(format!("command timed out after {} s", timeout.as_secs())));
    }
    Ok(ExecSyncResponse { stdout: output.stdout, stderr: output.stderr, exit_code: output.exit.code })
}
