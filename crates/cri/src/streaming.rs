//! Exec, Attach and PortForward: each returns a URL on berth's streaming server, which is not
//! built yet, so until then UNIMPLEMENTED (ExecSync works without it).

use crate::{Cri, Result};

pub(crate) async fn handle<Request, Response>(_: &Cri, _: Request) -> Result<Response> {
    Err(tonic::Status::unimplemented("berth's streaming server (exec, attach, port-forward) is not there yet; ExecSync works"))
}
