//! Waiting for a child (the init of a foreground `run`, or an exec'd process) and turning its end
//! into a shell-style exit code, while forwarding the signals we receive to it.

use crate::{Error, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals a foreground runtime passes on to the container rather than acting on itself.
const FORWARDED: &[Signal] = &[Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH];

/// Waits for `pid` (our child), forwarding signals; returns its exit code (128+n for signal n).
pub fn wait_forwarding(pid: i32) -> Result<i32> {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block().map_err(|e| Error::sys("block signals", e))?;
    let target = Pid::from_raw(pid);
    loop {
        // Reap first: the child may already be gone, and SIGCHLD may have been delivered before we blocked.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == target => return Ok(code),
                Ok(WaitStatus::Signaled(p, signal, _)) if p == target => return Ok(128 + signal as i32),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue, // another reparented descendant: reaped, keep going
                Err(nix::errno::Errno::ECHILD) => return Err(Error::Init(format!("process {pid} is not our child"))),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("waitpid", e)),
            }
        }
        let signal = set.wait().map_err(|e| Error::sys("sigwait", e))?;
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(target, signal);
        }
    }
}
