//! RuntimeConfig: the cgroup driver the kubelet must use to agree with berth (cgroupfs: berth
//! writes cgroups itself; a systemd driver does not exist yet).

use crate::proto::{CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse};
use crate::{Cri, Result};

pub(crate) async fn handle(_: &Cri, _: RuntimeConfigRequest) -> Result<RuntimeConfigResponse> {
    Ok(RuntimeConfigResponse { linux: Some(LinuxRuntimeConfiguration { cgroup_driver: CgroupDriver::Cgroupfs as i32 }) })
}
