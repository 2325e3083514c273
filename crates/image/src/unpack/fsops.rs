//! The file-system calls the applier makes, each relative to a directory fd inside the layer.

use crate::Error;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Deeper trees than this are refused when removed (PATH_MAX allows about 2048 levels).
const MAX_DEPTH: usize = 1024;

pub(super) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor a nix call just returned, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub(super) fn sys(entry: &Path, what: &str, e: nix::errno::Errno) -> Error {
    Error::layer(entry.display().to_string(), format!("{what}: {e}"))
}

/// Opens `path` under `root` as if `root` were `/` (berth-sys's openat2 with RESOLVE_IN_ROOT).
pub(super) fn open_in_root(root: &OwnedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    berth_sys::open_in_root(root.as_fd(), path, flags.bits(), 0, berth_sys::ResolveFlags::IN_ROOT).map_err(errno)
}

/// The directory `dir` under `root`, made (0755) where missing, every prefix resolved inside.
pub(super) fn make_dirs(root: &OwnedFd, dir: &Path) -> nix::Result<OwnedFd> {
    berth_sys::mkdir_all_in_root(root.as_fd(), dir, 0o755).map_err(errno)
}

fn errno(e: std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// What is at `name` in `dir`, without following a symlink there.
pub(super) fn kind_at(dir: &OwnedFd, name: &OsStr) -> Option<SFlag> {
    let stat = fstatat(Some(dir.as_raw_fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()))
}

/// Removes `name` in `dir` whatever it is, a directory with everything below it included.
pub(super) fn remove_at(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    remove_at_depth(dir.as_raw_fd(), name, 0)
}

fn remove_at_depth(dir: RawFd, name: &OsStr, depth: usize) -> nix::Result<()> {
    let Ok(stat) = fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else { return Ok(()) };
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFDIR {
        return unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir);
    }
    if depth > MAX_DEPTH {
        return Err(nix::errno::Errno::ELOOP);
    }
    let mut listing =
        nix::dir::Dir::openat(Some(dir), name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    let names: Vec<OsString> =
        listing.iter().flatten().map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string()).filter(|n| n != "." && n != "..").collect();
    for child in names {
        remove_at_depth(listing.as_raw_fd(), &child, depth + 1)?;
    }
    unlinkat(Some(dir), name, UnlinkatFlags::RemoveDir)
}

/// Sets an extended attribute on an open file or directory.
pub(super) fn set_xattr(fd: &OwnedFd, name: &str, value: &[u8]) -> std::io::Result<()> {
    let name = std::ffi::CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: name is NUL-terminated and value is a valid slice, both alive for the call.
    let rc = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
