//! `start`: release the init blocked on exec.fifo, then run poststart hooks.

use crate::state::{Container, Status, EXEC_FIFO};
use crate::{hooks, Error, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Starts a created container. Poststart hook failures do not fail the start (runtime-spec): they
/// are returned as warnings.
pub fn start(root: &Path, id: &str) -> Result<Vec<Error>> {
    let container = Container::load(root, id)?;
    let status = container.status();
    if status != Status::Created {
        return Err(Error::WrongState { id: id.into(), status: status.to_string(), action: "only a created container can be started" });
    }
    if container.config.process().is_none() {
        // The spec's rule: no process, nothing to start; the container stays created.
        return Err(Error::WrongState { id: id.into(), status: status.to_string(), action: "its config has no process to start" });
    }
    release(&container)?;
    let mut warnings = Vec::new();
    if let Some(spec_hooks) = container.config.hooks() {
        let state = container.state_json();
        for hook in spec_hooks.poststart().iter().flatten() {
            if let Err(e) = hooks::run(hook, &state) {
                warnings.push(e);
            }
        }
    }
    Ok(warnings)
}

fn release(container: &Container) -> Result<()> {
    let path = container.dir.join(EXEC_FIFO);
    // Non-blocking open never hangs; the read below waits for the init's byte.
    let mut fifo =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).map_err(|e| Error::io("open exec fifo", &path, e))?;
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {
                if !container.init_alive() {
                    return Err(Error::Init("the container init exited before start".into()));
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => return Err(Error::sys("poll exec fifo", e)),
        }
        let mut byte = [0u8; 1];
        match fifo.read(&mut byte) {
            Ok(1) => break,
            Ok(_) => return Err(Error::Init("the container init closed exec.fifo without starting".into())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(Error::io("read exec fifo", &path, e)),
        }
    }
    std::fs::remove_file(&path).map_err(|e| Error::io("remove exec fifo", &path, e))
}
