//! The console socket: the runtime sends the pty master it made for the container (or an exec)
//! over a unix socket we listen on; we keep the master.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

pub struct ConsoleSocket {
    listener: UnixListener,
    /// Relative to the shim's working directory (its own directory).
    name: PathBuf,
    /// What the runtime connects to: short, whatever the directory's length.
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds `name` in the working directory (the shim runs in its directory, so socket paths
    /// stay within a socket address's 107 bytes).
    pub fn bind(name: &str) -> Result<ConsoleSocket, String> {
        let _ = std::fs::remove_file(name);
        let listener = UnixListener::bind(name).map_err(|e| format!("console socket {name}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| format!("console socket: {e}"))?;
        Ok(ConsoleSocket { listener, name: PathBuf::from(name), path: PathBuf::from(format!("/proc/{}/cwd/{name}", std::process::id())) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits (a little at a time, while `runtime` lives) for the master; None if the runtime
    /// exited without sending one.
    pub fn receive(&self, runtime: &mut std::process::Child) -> Result<Option<OwnedFd>, String> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return receive_fd(&stream).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("console socket accept: {e}")),
            }
            if runtime.try_wait().map_err(|e| format!("wait for the runtime: {e}"))?.is_some() {
                // It may have connected just before exiting.
                return match self.listener.accept() {
                    Ok((stream, _)) => receive_fd(&stream).map(Some),
                    Err(_) => Ok(None),
                };
            }
            let fd = std::os::fd::AsFd::as_fd(&self.listener);
            let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(20u8));
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.name);
    }
}

fn receive_fd(stream: &std::os::unix::net::UnixStream) -> Result<OwnedFd, String> {
    stream.set_nonblocking(false).map_err(|e| format!("console socket: {e}"))?;
    let mut buf = [0u8; 4096];
    let (_, fds) = berth_sys::recv_with_fds(std::os::fd::AsFd::as_fd(stream), &mut buf).map_err(|e| format!("console socket recvmsg: {e}"))?;
    fds.into_iter().next().ok_or_else(|| "the runtime sent no pty master over the console socket".to_string())
}
