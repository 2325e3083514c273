//! The parent ↔ container-init protocol over one SOCK_SEQPACKET socketpair: one message per packet,
//! so there is no framing to get wrong, and EOF means the other side died.

use crate::{Error, Result};
use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Largest message: an error string or a hook state document.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// parent → child: your id maps are written (and, unless `InCgroup` follows, you are in your cgroup): go on.
    Go,
    /// parent → child: you are in your cgroup now (the move may finish after `Go`).
    InCgroup,
    /// child → parent: I unshared a user namespace; write its id maps.
    MapRequest,
    MapsDone,
    /// child → parent, without a mount namespace: I made this mount (crate::shared_mounts).
    Mounted(crate::shared_mounts::Made),
    /// child → parent: mounts are ready; run prestart/createRuntime hooks.
    RunHooks,
    /// parent → child: hooks done; here is the state document for createContainer/startContainer hooks.
    HooksDone(String),
    /// intermediate → parent: the container init is this (host) pid.
    InitPid(i32),
    /// child → parent: set up and waiting for `start`.
    Ready,
    /// child → parent: the seccomp notify fd rides along (SCM_RIGHTS); pass it to the listener.
    SeccompFd,
    Error(String),
}

pub(crate) struct SyncSocket(OwnedFd);

impl SyncSocket {
    pub(crate) fn pair() -> Result<(SyncSocket, SyncSocket)> {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(|e| Error::sys("socketpair", e))?;
        Ok((SyncSocket(a), SyncSocket(b)))
    }

    pub(crate) fn send(&self, message: &Message) -> Result<()> {
        self.send_fds(message, &[])
    }

    /// Sends `message` with `fd` attached.
    pub(crate) fn send_with_fd(&self, message: &Message, fd: &OwnedFd) -> Result<()> {
        self.send_fds(message, &[fd.as_raw_fd()])
    }

    fn send_fds(&self, message: &Message, fds: &[std::os::fd::RawFd]) -> Result<()> {
        let bytes = serde_json::to_vec(message).map_err(|e| Error::sys("encode sync message", std::io::Error::other(e)))?;
        let bytes = &bytes[..bytes.len().min(MAX_MESSAGE)];
        let rights = [ControlMessage::ScmRights(fds)];
        let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(self.0.as_raw_fd(), &[IoSlice::new(bytes)], control, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("send sync message", e)),
            }
        }
    }

    /// The next message, or None when the other side closed (it exited or died).
    pub(crate) fn recv(&self) -> Result<Option<Message>> {
        Ok(self.recv_with_fd()?.map(|(message, _)| message))
    }

    /// The next message and the fd that came with it, if any.
    pub(crate) fn recv_with_fd(&self) -> Result<Option<(Message, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, mut fds) = berth_sys::recv_with_fds(self.0.as_fd(), &mut buf).map_err(|e| Error::sys("receive sync message", e))?;
        if n == 0 {
            return Ok(None);
        }
        let message = serde_json::from_slice(&buf[..n]).map_err(|e| Error::sys("decode sync message", std::io::Error::other(e)))?;
        Ok(Some((message, fds.pop())))
    }

    /// Receives and insists on one particular message.
    pub(crate) fn expect(&self, what: &str, matches: impl Fn(&Message) -> bool) -> Result<Message> {
        match self.recv()? {
            Some(m) if matches(&m) => Ok(m),
            Some(Message::Error(e)) => Err(Error::Reported(e)),
            Some(other) => Err(Error::Init(format!("protocol error: expected {what}, got {other:?}"))),
            None => Err(Error::Init(format!("the other side exited while we waited for {what}"))),
        }
    }
}

impl AsFd for SyncSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}
