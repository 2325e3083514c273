//! clone3 without a new stack: like fork(2), but able to create namespaces in the same call.

use std::io;

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

/// Forks with `flags` (CLONE_NEW* only). The process must be single-threaded, as berth-oci is.
pub fn clone3(flags: u64) -> io::Result<CloneResult> {
    let mut args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: with stack == 0 the child continues on a copy-on-write copy of our stack exactly like
    // fork(); berth-oci is single-threaded so no lock can be held by a thread that does not exist in
    // the child.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return clone_legacy(flags);
        }
        return Err(err);
    }
    Ok(if rc == 0 { CloneResult::Child } else { CloneResult::Parent { pid: rc as i32 } })
}

/// Kernels before 5.3 lack clone3; clone(2) with a null stack behaves the same way.
fn clone_legacy(flags: u64) -> io::Result<CloneResult> {
    // SAFETY: as for clone3: a null stack makes clone behave like fork in a single-threaded process.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if rc == 0 { CloneResult::Child } else { CloneResult::Parent { pid: rc as i32 } })
}
