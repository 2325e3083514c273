//! clone3 without a new stack: like fork(2), but able to create namespaces in the same call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub enum CloneResult {
    Parent { pid: i32 },
    Child,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): the child starts life in the cgroup v2 directory `args.cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks with `flags` (CLONE_NEW* only). In a single-threaded process (berth-oci) the child may
/// run any code; in a multi-threaded one (berthd) only async-signal-safe calls until it execs or
/// exits, since another thread may have held a lock (the allocator's) at the fork.
/// With `cgroup` (a cgroup v2 directory fd) the child is born in that cgroup, so not one
/// instruction of it runs outside. Returns whether that happened: kernels before 5.7,
/// clone(2) and some cgroup types refuse it, and the caller then moves the child itself.
pub fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<(CloneResult, bool)> {
    if let Some(cgroup) = cgroup {
        let args = CloneArgs { flags: flags | CLONE_INTO_CGROUP, cgroup: cgroup.as_raw_fd() as u64, ..Default::default() };
        match raw_clone3(args) {
            Ok(result) => return Ok((result, true)),
            // Unknown flag (E2BIG/EINVAL on old kernels), or a cgroup that cannot take the child.
            Err(e) if matches!(e.raw_os_error(), Some(libc::E2BIG | libc::EINVAL | libc::EOPNOTSUPP | libc::EBUSY)) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok((clone_legacy(flags)?, false)),
            Err(e) => return Err(e),
        }
    }
    match raw_clone3(CloneArgs { flags, ..Default::default() }) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok((clone_legacy(flags)?, false)),
        other => Ok((other?, false)),
    }
}

fn raw_clone3(mut args: CloneArgs) -> io::Result<CloneResult> {
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: with stack == 0 the child continues on a copy-on-write copy of our stack exactly like
    // fork(); what the child may do then is the caller's contract (see clone3's doc).
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if rc == 0 { CloneResult::Child } else { CloneResult::Parent { pid: rc as i32 } })
}

/// Kernels before 5.3 lack clone3; clone(2) with a null stack behaves the same way.
fn clone_legacy(flags: u64) -> io::Result<CloneResult> {
    // SAFETY: as for clone3: a null stack makes clone behave like fork; what the child may do then
    // is the caller's contract (see clone3's doc).
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if rc == 0 { CloneResult::Child } else { CloneResult::Parent { pid: rc as i32 } })
}
