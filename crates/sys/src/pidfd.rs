//! pidfds: signal and join a container's init by a handle that cannot be recycled, never by a bare pid.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; a returned fd is new and owned by us.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: null siginfo is allowed and means "as kill(2) would send it".
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// setns(2) on a pidfd joins several of that process's namespaces atomically.
pub fn setns_pidfd(pidfd: BorrowedFd<'_>, nstypes: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments.
    let rc = unsafe { libc::setns(pidfd.as_raw_fd(), nstypes) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
