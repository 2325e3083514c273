//! berth-sys: the syscall layer every berth crate shares — each raw syscall nix does not wrap
//! (clone3, openat2, pidfd, the mount API, …), and the few fd-level helpers that must exist once
//! (opening and making directories inside a root, receiving passed fds), each in a small `unsafe`
//! block. Nothing outside this crate calls `libc::syscall` directly.

mod clone;
mod fds;
pub mod mount_api;
pub mod mountinfo;
mod net;
mod openat2;
mod pidfd;
pub mod sealed_exe;

pub use clone::{clone3, CloneResult};
pub use fds::{recv_with_fds, MAX_FDS};
pub use net::{connect_in_netns, loopback_up};
pub use openat2::{mkdir_all_in_root, open_in_root, read_regular_in_root, ResolveFlags};
pub use pidfd::{pidfd_open, pidfd_send_signal, setns_pidfd};

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Marks every fd from `first` up close-on-exec, so only stdio and preserved fds survive execve.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags in our own table; it takes no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Joins a fresh session keyring so containers never share the host's (or each other's) keys.
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let name = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: keyctl reads the NUL-terminated name we own for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if rc >= 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs a classic BPF program as the calling thread's seccomp filter (`flags`:
/// SECCOMP_FILTER_FLAG_*). Needs no_new_privs or CAP_SYS_ADMIN, as the kernel decides. With
/// SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns the notify fd (close-on-exec).
pub fn load_seccomp_filter(program: &[libc::sock_filter], flags: libc::c_ulong) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: fprog points into `program`, which outlives the call; the kernel copies the program.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &fprog as *const libc::sock_fprog) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    // SAFETY: with NEW_LISTENER a non-negative return is a new fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as RawFd) }))
}

/// ioprio_set(IOPRIO_WHO_PROCESS, self, class << 13 | level).
pub fn set_io_priority(class: u32, level: u32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let value = (class << 13) | (level & 0x1fff);
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel's `struct sched_attr` (version 1, 56 bytes).
#[repr(C)]
#[derive(Default)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

pub fn sched_setattr(attr: &mut SchedAttr) -> io::Result<()> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: attr is a valid, initialised sched_attr whose size field matches its layout.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *mut SchedAttr, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
