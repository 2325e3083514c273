//! Mounts of a container without a mount namespace of its own. The spec allows one (runc and crun
//! run it): the container shares the runtime's namespace, so the spec's mounts are made there,
//! beneath the rootfs, and outlive the init. `create` records which mounts beneath the rootfs
//! were there before it ([`present`]); `delete`, or a `create` that fails, takes down every other
//! one ([`take_down`]), including those the container made there itself. The rootfs itself (often
//! the caller's own mount, containerd's overlay) is never touched.

use crate::sys::{open_in_root, ResolveFlags};
use crate::{Error, Result};
use nix::mount::{umount2, MntFlags};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest mount table read: a host with tens of thousands of mounts stays below it.
const MAX_MOUNTINFO: u64 = 64 << 20;

/// The mount ids beneath `rootfs` now.
pub(crate) fn present(rootfs: &Path) -> Result<Vec<u64>> {
    Ok(beneath(rootfs)?.into_iter().map(|(id, _)| id).collect())
}

/// Unmounts (detached, deepest first) every mount beneath `rootfs` whose id is not in `keep`.
pub(crate) fn take_down(rootfs: &Path, keep: &[u64]) -> Result<()> {
    let mounts = beneath(rootfs)?;
    if mounts.iter().all(|(id, _)| keep.contains(id)) {
        return Ok(());
    }
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(rootfs)
        .map_err(|e| Error::io("open rootfs", rootfs, e))?;
    let rootfs = canonical(rootfs)?;
    for (_, point) in mounts.into_iter().rev().filter(|(id, _)| !keep.contains(id)) {
        let Ok(inside) = point.strip_prefix(&rootfs) else { continue };
        // Resolved inside the rootfs and not through a last symlink: one the container planted
        // cannot turn the unmount onto a host path.
        let target = match open_in_root(root.as_fd(), inside, libc::O_PATH | libc::O_NOFOLLOW, 0, ResolveFlags::IN_ROOT) {
            Ok(fd) => fd,
            // Gone with a mount above it, taken down already.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(Error::io("open mount point", &point, e)),
        };
        match umount2(format!("/proc/self/fd/{}", target.as_raw_fd()).as_str(), MntFlags::MNT_DETACH) {
            // EINVAL: no longer a mount point (detached with its parent).
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(Error::sys(format!("unmount {}", point.display()), e)),
        }
    }
    Ok(())
}

/// (mount id, mount point) of each mount strictly beneath `rootfs`, in the table's order (a mount
/// after the one it sits on).
fn beneath(rootfs: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rootfs = canonical(rootfs)?;
    let mut table = Vec::new();
    std::fs::File::open("/proc/self/mountinfo")
        .and_then(|f| f.take(MAX_MOUNTINFO).read_to_end(&mut table))
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse(&table).into_iter().filter(|(_, point)| point != &rootfs && point.starts_with(&rootfs)).collect())
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))
}

/// (mount id, mount point) of each line of a mountinfo table; lines that do not parse are skipped.
fn parse(table: &[u8]) -> Vec<(u64, PathBuf)> {
    table
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let point = fields.nth(3)?;
            Some((id, PathBuf::from(std::ffi::OsString::from_vec(unescape(point)))))
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in a mount point as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_their_escapes_undone() {
        let table = b"22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n\
                      301 22 0:50 / /b/with\\040space\\134x rw - tmpfs tmpfs rw\n\
                      garbage\n\
                      302 301 0:51 / /b/tab\\011end rw - tmpfs tmpfs rw";
        assert_eq!(parse(table), vec![(22, PathBuf::from("/proc")), (301, PathBuf::from("/b/with space\\x")), (302, PathBuf::from("/b/tab\tend")),]);
    }

    #[test]
    fn a_backslash_without_three_octal_digits_stays() {
        assert_eq!(unescape(b"a\\9b\\04"), b"a\\9b\\04".to_vec());
    }
}
