//! `delete`: stop what must be stopped, remove the cgroup, run poststop hooks, remove the state dir.

use crate::signal::open_init;
use crate::state::{Container, Status};
use crate::sys::pidfd_send_signal;
use crate::{cgroup, hooks, Error, Result};
use berth_cgroups::FreezerState;
use std::os::fd::AsFd;
use std::path::Path;

/// Deletes a container. Returns poststop hook failures as warnings (the spec says they must not fail
/// the delete).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<Vec<Error>> {
    let container = match Container::load(root, id) {
        Err(Error::NotFound(_)) if force => return Ok(Vec::new()),
        other => other?,
    };
    let status = container.status();
    match status {
        Status::Stopped => {}
        // A created container never ran user code; deleting it is always allowed, as in runc.
        Status::Created | Status::Creating => stop_init(&container)?,
        Status::Running | Status::Paused if force => stop_init(&container)?,
        Status::Running | Status::Paused => {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                action: "cannot delete a container that is not stopped (use --force)",
            })
        }
    }
    let mut warnings = Vec::new();
    let cgroup = cgroup::open(&container)?;
    if cgroup.exists() {
        // Without a pid namespace, children of the init can outlive it; they die with the container.
        let _ = cgroup.freeze(FreezerState::Thawed);
        if !cgroup.kill_all()? {
            for pid in cgroup.processes()? {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        cgroup.remove()?;
    } else if container.systemd_cgroup {
        // systemd ended the scope with its processes: the unit may stay listed as failed, and on
        // v1 the hierarchies made by hand stay; removing the gone unit takes both.
        if let Err(e) = cgroup.remove() {
            warnings.push(e.into());
        }
    }
    if let Some(shared) = &container.shared_mounts {
        warnings.extend(shared.take_down(&container.rootfs, false));
    }
    if let Some(spec_hooks) = container.config.hooks() {
        let state = serde_json::to_string(&container.oci_state(Status::Stopped)).unwrap_or_default();
        for hook in spec_hooks.poststop().iter().flatten() {
            if let Err(e) = hooks::run(hook, &state) {
                warnings.push(e);
            }
        }
    }
    std::fs::remove_dir_all(&container.dir).map_err(|e| Error::io("remove state dir", &container.dir, e))?;
    Ok(warnings)
}

/// SIGKILLs the init (thawing it first, or the kill would wait) and waits until it has exited.
fn stop_init(container: &Container) -> Result<()> {
    let Some(pidfd) = open_init(container) else { return Ok(()) };
    if let Ok(cgroup) = cgroup::open(container) {
        let _ = cgroup.freeze(FreezerState::Thawed);
    }
    pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL).map_err(|e| Error::sys(format!("kill container {}", container.id), e))?;
    match crate::signal::wait_exited(pidfd.as_fd(), 10_000)? {
        true => Ok(()),
        false => Err(Error::Init(format!("container {} did not exit within 10s of SIGKILL", container.id))),
    }
}
