//! The receiving end of a runc-style console socket: accept one connection and take the pty master
//! passed with SCM_RIGHTS.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
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
        let mut iov = libc::iovec { iov_base: name.as_mut_ptr().cast(), iov_len: name.len() };
        // Room for one control message carrying one fd, 8-byte aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; every pointer in it refers to a live local buffer.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: the socket fd is open and msg describes valid buffers.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
        // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR/CMSG_DATA stay within it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS, "no fd was passed");
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32);
            OwnedFd::from_raw_fd(fd)
        }
    }
}
