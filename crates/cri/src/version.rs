//! Version: CRI v1, and berth's name and version.

use crate::proto::{VersionRequest, VersionResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(_: &Cri, _: VersionRequest) -> Result<VersionResponse> {
    Ok(VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "berth".into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: "v1".into(),
    })
}
