//! Waiting for a child (the init of a foreground `run`, or an exec'd process) and turning its end
//! into a shell-style exit code, while forwarding the signals we receive to it.

use crate::{Error, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals a foreground runtime passes on to the container rather than acting on itself.
pub const FORWARDED: &[Signal] =
    &[Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH];

/// Blocks the forwarded signals and SIGCHLD, so they are only received on purpose (sigwait/signalfd).
pub fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block().map_err(|e| Error::sys("block signals", e))?;
    Ok(set)
}

/// Reaps every exited child without blocking; returns `pid`'s exit code (128+n for signal n) once it
/// has exited. Other children (reparented descendants of a subreaper) are reaped along the way.
pub fn try_reap(pid: i32) -> Result<Option<i32>> {
    let target = Pid::from_raw(pid);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == target => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, signal, _)) if p == target => return Ok(Some(128 + signal as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::errno::Errno::ECHILD) => return Err(Error::Init(format!("process {pid} is not our child"))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("waitpid", e)),
        }
    }
}

/// Waits for `pid` (our child), forwarding signals; returns its exit code.
pub fn wait_forwarding(pid: i32) -> Result<i32> {
    let set = block_signals()?;
    loop {
        // Reap first: SIGCHLD may have arrived before the signals were blocked.
        if let Some(code) = try_reap(pid)? {
            return Ok(code);
        }
        let signal = set.wait().map_err(|e| Error::sys("sigwait", e))?;
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}
