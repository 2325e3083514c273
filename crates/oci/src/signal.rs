//! `kill`: signals go through a pidfd opened on the recorded init and re-checked against its start
//! time, so a recycled pid is never signalled.

use crate::state::{Container, Status};
use crate::sys::{pidfd_open, pidfd_send_signal};
use crate::{cgroup, proc, Error, Result};
use berth_cgroups::FreezerState;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Parses "KILL", "SIGKILL", "kill" or "9" (see berth-spec's signal names).
pub fn parse_signal(text: &str) -> Result<i32> {
    berth_spec::signals::parse(text).map_err(|e| Error::Unsupported(e.to_string()))
}

/// A pidfd on the container's init, or None if that process is gone.
pub(crate) fn open_init(container: &Container) -> Option<OwnedFd> {
    let pidfd = pidfd_open(container.pid).ok()?;
    // Checked after opening: from here the pidfd pins this exact process.
    let same = proc::stat(container.pid).is_some_and(|s| s.start_time == container.start_time && s.state != 'Z');
    same.then_some(pidfd)
}

pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if status == Status::Stopped {
        return Err(Error::WrongState { id: id.into(), status: status.to_string(), action: "container not running" });
    }
    if all {
        return signal_all(&container, signal);
    }
    let pidfd =
        open_init(&container).ok_or_else(|| Error::WrongState { id: id.into(), status: "stopped".into(), action: "container not running" })?;
    pidfd_send_signal(pidfd.as_fd(), signal).map_err(|e| Error::sys(format!("signal {signal} to container {id}"), e))
}

/// Signals every process in the container's cgroup. The cgroup is frozen meanwhile (unless it already
/// was), so a process forking in a loop cannot create a child the signal misses.
fn signal_all(container: &Container, signal: i32) -> Result<()> {
    let cgroup = cgroup::open(container)?;
    if signal == libc::SIGKILL && cgroup.kill_all()? {
        return Ok(());
    }
    let was_frozen = cgroup.freezer_state()? == FreezerState::Frozen;
    let freeze = !was_frozen && cgroup.freeze(FreezerState::Frozen).is_ok();
    let signal = nix::sys::signal::Signal::try_from(signal).map_err(|e| Error::sys("signal", e))?;
    let result = cgroup.processes().map_err(Error::from).map(|pids| {
        for pid in pids {
            // A process may exit between listing and signalling: ESRCH is expected then.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    });
    if freeze {
        cgroup.freeze(FreezerState::Thawed)?;
    }
    result
}

/// Waits up to `ms` for the process behind `pidfd` to exit (a pidfd turns readable then, whether
/// or not the process is our child); whether it did.
pub(crate) fn wait_exited(pidfd: std::os::fd::BorrowedFd<'_>, ms: u16) -> Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).map(|n| n > 0).map_err(|e| Error::sys("wait for the container's exit", e))
}
