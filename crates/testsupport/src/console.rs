//! The receiving end of a runc-style console socket: accept one connection and take the pty master
//! passed with SCM_RIGHTS.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Listens at `path`; `accept_master` then waits for the runtime to connect and send the master.
pub struct ConsoleSocket(UnixListener);

impl ConsoleSocket {
    pub fn bind(path: &Path) -> ConsoleSocket {
        ConsoleSocket(UnixListener::bind(path).expect("bind console socket"))
    }

    pub fn accept_master(&self) -> OwnedFd {
        let (stream, _) = self.0.accept().expect("accept console connection");
        let mut name = [0u8; 256];
        let (_, fds) = berth_sys::recv_with_fds(stream.as_fd(), &mut name).expect("recvmsg");
        fds.into_iter().next().expect("no fd was passed")
    }
}
