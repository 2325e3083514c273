//! openat2(2) with RESOLVE_IN_ROOT: the primitive every path inside a container rootfs goes through,
//! so `..` and symlinks (absolute or relative) can never resolve outside the rootfs.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[derive(Clone, Copy)]
pub struct ResolveFlags(u64);

impl ResolveFlags {
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    /// Inside the root, magic links (/proc/self/fd/…) refused: they could point anywhere.
    pub const IN_ROOT: ResolveFlags = ResolveFlags(Self::RESOLVE_IN_ROOT | Self::RESOLVE_NO_MAGICLINKS);
}

/// Opens `path` relative to `root` as if `root` were `/`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: libc::c_int, mode: libc::mode_t, resolve: ResolveFlags) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: mode as u64, resolve: resolve.0 };
    loop {
        // SAFETY: c_path and how outlive the call; the kernel copies `how` (size given) and reads the path.
        let rc =
            unsafe { libc::syscall(libc::SYS_openat2, root.as_raw_fd(), c_path.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>()) };
        if rc >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) });
        }
        let err = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
}

/// The regular file `path` inside `root` (resolved in the root), read up to `max` bytes; None
/// when it does not exist. Opened O_PATH and its type checked before it is opened for reading: a
/// FIFO planted there would block the reader for ever, a device node would be opened on the host
/// (outside the container's device cgroup). Not regular, or longer than `max`: InvalidData.
pub fn read_regular_in_root(root: BorrowedFd<'_>, path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let handle = match open_in_root(root, path, libc::O_PATH, 0, ResolveFlags::IN_ROOT) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    let meta = std::fs::File::from(handle.try_clone()?).metadata()?;
    if !meta.file_type().is_file() {
        return Err(invalid("not a regular file".into()));
    }
    // The very inode just checked, opened for reading through its O_PATH fd (never the path again).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!("larger than {max} bytes")));
    }
    Ok(Some(bytes))
}

/// The directory `dir` under `root` (opened O_PATH), made with `mode` where missing. Each prefix
/// is resolved inside the root again after it is made, so a symlink on the way (planted before or
/// meanwhile) still resolves inside `root`.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, dir: &Path, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    match open_in_root(root, dir, flags, 0, ResolveFlags::IN_ROOT) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let mut current = open_in_root(root, Path::new("."), flags, 0, ResolveFlags::IN_ROOT)?;
    let mut prefix = std::path::PathBuf::new();
    for component in dir.components() {
        prefix.push(component);
        match open_in_root(root, &prefix, flags, 0, ResolveFlags::IN_ROOT) {
            Ok(fd) => {
                current = fd;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let name = CString::new(component.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: mkdirat reads the NUL-terminated name we own; the directory fd is ours.
        let rc = unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), mode) };
        if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(io::Error::last_os_error());
        }
        current = open_in_root(root, &prefix, flags, 0, ResolveFlags::IN_ROOT)?;
    }
    Ok(current)
}
