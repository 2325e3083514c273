//! SCMP_ACT_NOTIFY, the runtime's half: the init reports its notify fd to `create` (or `exec`),
//! which connects to the profile's `listenerPath` and sends the container process state the
//! runtime-spec defines (state.md, containerProcessState) with the fd attached as SCM_RIGHTS.
//! Our copy is closed afterwards: only the listener can answer the container's syscalls.

use crate::state::{OciState, OCI_VERSION};
use crate::{Error, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::LinuxSeccomp;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The name of the fd in the state's `fds`, as the runtime-spec defines it.
const SECCOMP_FD_NAME: &str = "seccompFd";

pub(crate) fn hand_over(profile: &LinuxSeccomp, notify_fd: OwnedFd, pid: i32, state: &OciState<'_>) -> Result<()> {
    let path = profile.listener_path().as_ref().ok_or_else(|| Error::Init("seccomp: a notify fd but no listenerPath".into()))?;
    let message = serde_json::json!({
        "ociVersion": OCI_VERSION,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "metadata": profile.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    });
    let bytes = serde_json::to_vec(&message).map_err(|e| Error::Init(format!("seccomp: encode the listener message: {e}")))?;
    let listener = UnixStream::connect(path).map_err(|e| Error::io("connect to the seccomp listener", path, e))?;
    let fds = [notify_fd.as_raw_fd()];
    sendmsg::<()>(listener.as_raw_fd(), &[IoSlice::new(&bytes)], &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| Error::io("send the notify fd to the seccomp listener", path, e.into()))?;
    Ok(())
}
