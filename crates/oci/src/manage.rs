//! Operations on a live container's cgroup: pause, resume, update, ps, stats.

use crate::state::{Container, Status};
use crate::{cgroup, Error, Result};
use berth_cgroups::{FreezerState, Stats};
use oci_spec::runtime::LinuxResources;
use std::path::Path;

fn load_live(root: &Path, id: &str, action: &'static str) -> Result<(Container, Status)> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if status == Status::Stopped {
        return Err(Error::WrongState { id: id.into(), status: status.to_string(), action });
    }
    Ok((container, status))
}

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (container, status) = load_live(root, id, "cannot pause a stopped container")?;
    if status != Status::Running {
        return Err(Error::WrongState { id: id.into(), status: status.to_string(), action: "only a running container can be paused" });
    }
    Ok(cgroup::open(&container)?.freeze(FreezerState::Frozen)?)
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let (container, status) = load_live(root, id, "cannot resume a stopped container")?;
    if status != Status::Paused {
        return Err(Error::WrongState { id: id.into(), status: status.to_string(), action: "only a paused container can be resumed" });
    }
    Ok(cgroup::open(&container)?.freeze(FreezerState::Thawed)?)
}

/// Applies new resources to a live container and records them, so `state` and later updates see them.
///
/// Device rules change only when `resources` gives other ones than those recorded (runc's update
/// never changes them; new ones given are worth applying). Unset or the same, the cgroup's rules
/// and the record's stay: containerd passes the container's whole resources, its device rules
/// included, with each update, and on v1 a rewrite would freeze a running container for nothing.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<()> {
    let (mut container, _) = load_live(root, id, "cannot update a stopped container")?;
    let recorded = container.config.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.devices().clone());
    let (mut record, mut apply) = (resources.clone(), resources.clone());
    if resources.devices().is_none() || *resources.devices() == recorded {
        apply.set_devices(None);
        record.set_devices(recorded);
    } else if let Some(linux) = container.config.linux() {
        let mut linux = linux.clone();
        linux.set_resources(Some(resources.clone()));
        apply = cgroup::resources_with_spec_devices(&linux);
    }
    cgroup::open(&container)?.apply(&apply)?;
    if let Some(linux) = container.config.linux_mut() {
        linux.set_resources(Some(record));
    }
    container.save()
}

/// Host pids of every process in the container.
pub fn processes(root: &Path, id: &str) -> Result<Vec<i32>> {
    let container = Container::load(root, id)?;
    Ok(cgroup::open(&container)?.processes()?)
}

/// Readable until `delete` removes the cgroup, so a kill that stopped the container still counts.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64> {
    Ok(cgroup::open(&Container::load(root, id)?)?.oom_kills()?)
}

/// Whether the container's init is still alive (events streams end when it is not).
pub fn is_running(root: &Path, id: &str) -> bool {
    Container::load(root, id).is_ok_and(|c| c.status() != Status::Stopped)
}

pub fn stats(root: &Path, id: &str) -> Result<Stats> {
    let (container, _) = load_live(root, id, "cannot read stats of a stopped container")?;
    Ok(cgroup::open(&container)?.stats()?)
}
