//! CheckpointContainer, ListMetricDescriptors and ListPodSandboxMetrics: not done by berth, so
//! UNIMPLEMENTED, which the kubelet takes as "this runtime has none" and falls back on.

use crate::{Cri, Result};

pub(crate) async fn handle<Request, Response>(_: &Cri, _: Request) -> Result<Response> {
    Err(tonic::Status::unimplemented("berth does not implement this CRI call"))
}
