//! The new mount API (Linux 5.12+): detached mount trees that are changed before anyone can see
//! them, then attached by fd. Used for the read-only view of our own binary and for idmapped mounts.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The atime field (relatime 0, noatime, strictatime): set one, clear the field.
pub const MOUNT_ATTR_ATIME: u64 = 0x70;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `path` (with the mounts below it if `recursive`), attached
/// nowhere until [`move_mount`]; it vanishes with its last fd.
pub fn clone_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: c_path is a valid C string; a returned fd is a new detached mount owned by us.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c_path.as_ptr(), flags) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as i32) })
}

/// Sets `attr_set` (MOUNT_ATTR_*) on the detached tree `tree`; `userns` goes with MOUNT_ATTR_IDMAP.
pub fn set_tree_attr(tree: BorrowedFd<'_>, attr_set: u64, userns: Option<BorrowedFd<'_>>, recursive: bool) -> io::Result<()> {
    set_attr(tree, attr_set, 0, userns, recursive)
}

/// Sets `attr_set` and clears `attr_clr` (MOUNT_ATTR_*) on the mount `mount` refers to, and with
/// `recursive` on every mount below it: what runtime-spec 1.1's recursive options (`rro`,
/// `rnosuid`, …) ask for, which mount(2)'s flags cannot do.
pub fn set_mount_attr(mount: BorrowedFd<'_>, attr_set: u64, attr_clr: u64, recursive: bool) -> io::Result<()> {
    set_attr(mount, attr_set, attr_clr, None, recursive)
}

/// Makes the mount `mount` refers to, and every mount below it, private: an unmount of it then
/// reaches no peer group it was part of.
pub fn make_private(mount: BorrowedFd<'_>) -> io::Result<()> {
    mount_setattr(mount, &MountAttr { attr_set: 0, attr_clr: 0, propagation: libc::MS_PRIVATE, userns_fd: 0 }, true)
}

/// statx's 64-bit mount id, never reused while the system runs (Linux 6.8+).
const STATX_MNT_ID_UNIQUE: libc::c_uint = 0x4000;

/// The id of the mount `fd` is on: with `unique`, the 64-bit one never reused until reboot
/// (Linux 6.8+); else the one /proc/self/mountinfo shows, which a later mount may reuse.
pub fn mount_id(fd: BorrowedFd<'_>, unique: bool) -> io::Result<u64> {
    let mask = if unique { STATX_MNT_ID_UNIQUE } else { libc::STATX_MNT_ID };
    // SAFETY: statx is plain data; all-zero is a valid value for the kernel to fill.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is empty with AT_EMPTY_PATH (the fd itself); stx is valid for writes.
    let rc = unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, mask, &mut stx) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & mask == 0 {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "statx gives no such mount id on this kernel"));
    }
    Ok(stx.stx_mnt_id)
}

fn set_attr(tree: BorrowedFd<'_>, attr_set: u64, attr_clr: u64, userns: Option<BorrowedFd<'_>>, recursive: bool) -> io::Result<()> {
    let attr = MountAttr { attr_set, attr_clr, propagation: 0, userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64) };
    mount_setattr(tree, &attr, recursive)
}

fn mount_setattr(tree: BorrowedFd<'_>, attr: &MountAttr, recursive: bool) -> io::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: attr is a valid mount_attr of the size passed; the path is empty with AT_EMPTY_PATH.
    let rc = unsafe {
        libc::syscall(libc::SYS_mount_setattr, tree.as_raw_fd(), c"".as_ptr(), flags, attr as *const MountAttr, std::mem::size_of::<MountAttr>())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached tree `tree` on the directory or file `target` (an fd, O_PATH is enough).
pub fn move_mount(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: both fds are valid for the call; both paths are empty C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
