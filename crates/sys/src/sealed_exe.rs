//! CVE-2019-5736: a container must never reach a writable copy of the runtime binary. A process in
//! the container (or one that tricks `exec` into running /proc/self/exe) can open our executable
//! through /proc; if that is the host's file, it can overwrite the runtime for every later user.
//!
//! Before touching a container we re-execute ourselves through a read-only view of the binary:
//! - preferred: a detached, read-only clone of the mount holding the binary (open_tree +
//!   mount_setattr, Linux 5.12+). Nothing is copied and no mount namespace changes, so it costs two
//!   syscalls and the execve; the clone is attached nowhere and vanishes with its last user.
//! - fallback: an anonymous sealed copy (memfd + F_SEAL_WRITE), which costs a copy of the binary.
//!
//! Either way, what is reachable through /proc/<pid>/exe cannot be written. A private mount
//! namespace with a read-only bind would also work but would cut hooks' mounts off from the container.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether the running executable cannot be written: on a read-only mount (our own clone, or a
/// read-only install) or a sealed copy.
pub fn running_sealed() -> bool {
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else { return false };
    if nix::sys::statvfs::fstatvfs(&exe).is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)) {
        return true;
    }
    // SAFETY: F_GET_SEALS takes no pointer; on files that are not memfds it fails with EINVAL.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Re-executes this program (same argv and environment) through a read-only view of itself.
/// Returns only on failure; call it only when [`running_sealed`] is false.
pub fn reexec_sealed() -> io::Error {
    let readonly = readonly_clone().and_then(|fd| exec_fd(&fd));
    let fallback = sealed_copy().and_then(|fd| exec_fd(&fd));
    match (readonly, fallback) {
        (Ok(never), _) | (_, Ok(never)) => match never {},
        (Err(_), Err(e)) => e,
    }
}

/// An O_PATH fd on our binary inside a detached, read-only clone of the mount that holds it.
fn readonly_clone() -> io::Result<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (dir, name) = (exe.parent().unwrap_or(std::path::Path::new("/")), exe.file_name().unwrap_or_default());
    let tree = super::mount_api::clone_tree(dir, false)?;
    super::mount_api::set_tree_attr(tree.as_fd(), super::mount_api::MOUNT_ATTR_RDONLY, None, false)?;
    let name = CString::new(name.as_bytes())?;
    // SAFETY: name is a valid C string relative to the tree fd; a returned fd is ours.
    let fd = unsafe { libc::openat(tree.as_raw_fd(), name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sealed_copy() -> io::Result<OwnedFd> {
    let name = c"berth-oci";
    // SAFETY: name is a valid C string; the returned fd (if any) is ours.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut source = std::fs::File::open("/proc/self/exe")?;
    let mut target = std::fs::File::from(memfd.try_clone()?);
    // std::io::copy uses copy_file_range/sendfile here: the copy stays in the kernel.
    io::copy(&mut source, &mut target)?;
    // SAFETY: integer arguments on our own fd.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(memfd)
}

fn exec_fd(fd: &OwnedFd) -> io::Result<std::convert::Infallible> {
    let args: Vec<CString> = std::env::args_os().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry)
        })
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into CStrings that outlive the call.
    unsafe { libc::syscall(libc::SYS_execveat, fd.as_raw_fd(), c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH) };
    Err(io::Error::last_os_error())
}
