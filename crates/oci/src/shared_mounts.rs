//! Mounts of a container without a mount namespace of its own. The spec allows one (runc and crun
//! run it): the container shares the runtime's namespace, so the spec's mounts are made there,
//! beneath the rootfs, and outlive the init; runc leaves them mounted. Here the init reports each
//! mount as it makes it, before the next can cover it ([`SharedMounts::made`]: its mount ids, the
//! never-reused one where the kernel has it), and `delete` detaches them, newest first, with
//! whatever was mounted below them since ([`SharedMounts::take_down`]). Each is found by its id
//! in the mount table, so a rename of a directory above it does not hide it, and newest first,
//! a spec mount over it or over its parent directory is gone before it is reached. A `create`
//! that fails also sweeps new mounts at or below the spec's destinations (one made but not yet
//! reported). Left, as runc leaves them, because nothing tells them from a mount that came from
//! elsewhere: mounts the container makes directly on the rootfs, or directly on top of one of
//! the init's (which then stays too).
//!
//! Detaching one must reach nothing else:
//! - it is reached by a path resolved inside the rootfs, not through a last symlink, and only
//!   detached if the mount found there is the one recorded (by the 64-bit id; on kernels before
//!   6.8, which lack it, by the mount table's id, which a later mount may reuse);
//! - it is made private first, with everything below it: otherwise an unmount below a copy of a
//!   shared host tree (an rbind of one) would propagate to the host's originals;
//! - nothing is done from another mount namespace than create's;
//! - the rootfs itself, often the caller's own mount, is never touched unless the init mounted
//!   on it.
//!
//! Failures are warnings: a delete must not be stuck behind a mount it cannot take down.

use crate::sys::mount_api::{make_private, mount_id};
use crate::sys::{open_in_root, ResolveFlags};
use crate::{Error, Result};
use nix::mount::{umount2, MntFlags};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest mount table read: a host with tens of thousands of mounts stays below it.
const MAX_MOUNTINFO: u64 = 64 << 20;

/// What `create` recorded, kept in the container's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedMounts {
    /// Inode of the mount namespace create ran in.
    namespace: u64,
    /// mountinfo ids beneath the rootfs before the init ran.
    before: Vec<u64>,
    /// The spec's mount destinations inside the rootfs: a failed create sweeps only there.
    #[serde(default)]
    destinations: Vec<PathBuf>,
    /// The mounts the init made, in the order it made them.
    #[serde(default)]
    mounts: Vec<Made>,
}

/// One mount the init made, as it reported it right after making it (found again by its ids,
/// wherever it is by then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Made {
    /// Its id in the mount table.
    pub id: u64,
    /// Its 64-bit id, never reused until reboot (Linux 6.8+).
    pub unique: Option<u64>,
}

impl Made {
    /// The mount `fd` is on, as the init reports it.
    pub(crate) fn of(fd: BorrowedFd<'_>) -> std::io::Result<Made> {
        Ok(Made { id: mount_id(fd, false)?, unique: mount_id(fd, true).ok() })
    }

    /// Whether the mount `fd` is on is this one.
    fn is(&self, fd: BorrowedFd<'_>) -> bool {
        match self.unique {
            Some(unique) => mount_id(fd, true).is_ok_and(|id| id == unique),
            None => mount_id(fd, false).is_ok_and(|id| id == self.id),
        }
    }
}

impl SharedMounts {
    /// Before the init runs, for a spec with these mount destinations.
    pub(crate) fn record(rootfs: &Path, destinations: impl IntoIterator<Item = PathBuf>) -> Result<SharedMounts> {
        let rootfs = canonical(rootfs)?;
        let before = beneath(&rootfs)?.into_iter().map(|e| e.id).collect();
        let destinations = destinations.into_iter().map(|d| d.strip_prefix("/").map(Path::to_path_buf).unwrap_or(d)).collect();
        Ok(SharedMounts { namespace: namespace()?, before, destinations, mounts: Vec::new() })
    }

    /// The init made this mount.
    pub(crate) fn made(&mut self, mount: Made) {
        self.mounts.push(mount);
    }

    /// Detaches what the init made, newest first; with `sweep` (a create that failed), then every
    /// other new mount beneath the rootfs. Returns what it could not do.
    pub(crate) fn take_down(&self, rootfs: &Path, sweep: bool) -> Vec<Error> {
        let mut warnings = Vec::new();
        if let Err(e) = self.try_take_down(rootfs, sweep, &mut warnings) {
            warnings.push(e);
        }
        warnings
    }

    fn try_take_down(&self, rootfs: &Path, sweep: bool, warnings: &mut Vec<Error>) -> Result<()> {
        if namespace()? != self.namespace {
            return Err(Error::Unsupported(format!(
                "delete runs in another mount namespace than create: the container's mounts beneath {} are left",
                rootfs.display()
            )));
        }
        let rootfs = match std::fs::canonicalize(rootfs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(|e| Error::io("resolve", rootfs, e))?,
        };
        let root = open_dir(&rootfs)?;
        for made in self.mounts.iter().rev() {
            if let Err(e) = detach_made(root.as_fd(), &rootfs, made) {
                warnings.push(e);
            }
        }
        if sweep {
            // Where the spec's mounts went: each destination as written, and as it resolves
            // inside the rootfs (through the image's symlinks, as the init resolved it).
            let mut places = self.destinations.clone();
            places.extend(self.destinations.iter().filter_map(|d| resolved(root.as_fd(), &rootfs, d)));
            for entry in self.new_mounts(&rootfs)?.into_iter().rev() {
                let inside = entry.point.strip_prefix(&rootfs).unwrap_or(&entry.point).to_path_buf();
                if !places.iter().any(|d| inside.starts_with(d)) {
                    continue;
                }
                let Some(target) = open_mount(root.as_fd(), &inside) else { continue };
                // Gone already, or something else is on top of it now: not ours to detach.
                if mount_id(target.as_fd(), false).is_ok_and(|id| id == entry.id) {
                    if let Err(e) = detach(target.as_fd(), &entry.point) {
                        warnings.push(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// The mounts beneath the rootfs that were not there before, in the table's order (newest
    /// last): each one, stacked or below another, so that newest first reaches them all.
    fn new_mounts(&self, rootfs: &Path) -> Result<Vec<Entry>> {
        let before: HashSet<u64> = self.before.iter().copied().collect();
        Ok(beneath(rootfs)?.into_iter().filter(|e| !before.contains(&e.id)).collect())
    }
}

/// `inside` the rootfs as it resolves there now, relative to the rootfs; None if it does not.
fn resolved(root: BorrowedFd<'_>, rootfs: &Path, inside: &Path) -> Option<PathBuf> {
    let fd = open_in_root(root, or_root(inside), libc::O_PATH, 0, ResolveFlags::IN_ROOT).ok()?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    path.strip_prefix(rootfs).ok().map(Path::to_path_buf)
}

/// Finds `made` in the mount table, wherever it is now beneath the rootfs, and detaches it (with
/// what is mounted below it); gone already, moved out of the rootfs, or covered by another mount
/// at its point, it is left: what sits on it may be someone else's.
fn detach_made(root: BorrowedFd<'_>, rootfs: &Path, made: &Made) -> Result<()> {
    let Some(entry) = mount_table()?.into_iter().find(|e| e.id == made.id && e.point.starts_with(rootfs)) else { return Ok(()) };
    let inside = entry.point.strip_prefix(rootfs).unwrap_or(Path::new("")).to_path_buf();
    match open_mount(root, &inside) {
        Some(target) if made.is(target.as_fd()) => detach(target.as_fd(), &entry.point),
        _ => Ok(()),
    }
}

/// Makes the mount `target` is on private, with everything below it, then detaches it.
fn detach(target: BorrowedFd<'_>, point: &Path) -> Result<()> {
    make_private(target).map_err(|e| Error::io("make private, so that its unmount stays here,", point, e))?;
    match umount2(format!("/proc/self/fd/{}", target.as_raw_fd()).as_str(), MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(e) => Err(Error::sys(format!("unmount {}", point.display()), e)),
    }
}

/// `inside` the rootfs (empty: the rootfs itself), not through a last symlink; None where nothing
/// is there any more.
fn open_mount(root: BorrowedFd<'_>, inside: &Path) -> Option<OwnedFd> {
    open_in_root(root, or_root(inside), libc::O_PATH | libc::O_NOFOLLOW, 0, ResolveFlags::IN_ROOT).ok()
}

/// A path inside the rootfs as openat2 takes it: empty is the rootfs itself.
fn or_root(inside: &Path) -> &Path {
    if inside.as_os_str().is_empty() {
        Path::new(".")
    } else {
        inside
    }
}

fn open_dir(dir: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir).map_err(|e| Error::io("open rootfs", dir, e))
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))
}

/// The caller's mount namespace, by inode.
fn namespace() -> Result<u64> {
    std::fs::metadata("/proc/self/ns/mnt").map(|m| m.ino()).map_err(|e| Error::io("stat", "/proc/self/ns/mnt", e))
}

/// One line of /proc/self/mountinfo.
struct Entry {
    id: u64,
    point: PathBuf,
}

/// The mounts strictly beneath the canonical `rootfs`, in the table's order (a mount after the
/// one it sits on).
fn beneath(rootfs: &Path) -> Result<Vec<Entry>> {
    Ok(mount_table()?.into_iter().filter(|e| e.point != rootfs && e.point.starts_with(rootfs)).collect())
}

/// This mount namespace's table, bounded.
fn mount_table() -> Result<Vec<Entry>> {
    let mut table = Vec::new();
    std::fs::File::open("/proc/self/mountinfo")
        .and_then(|f| f.take(MAX_MOUNTINFO).read_to_end(&mut table))
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse(&table))
}

/// The lines of a mountinfo table; lines that do not parse are skipped.
fn parse(table: &[u8]) -> Vec<Entry> {
    table
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let mut number = || std::str::from_utf8(fields.next()?).ok()?.parse::<u64>().ok();
            let (id, _parent) = (number()?, number()?);
            let point = fields.nth(2)?;
            Some(Entry { id, point: PathBuf::from(std::ffi::OsString::from_vec(crate::sys::mountinfo::unescape(point))) })
        })
        .collect()
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
        let parsed: Vec<(u64, PathBuf)> = parse(table).into_iter().map(|e| (e.id, e.point)).collect();
        assert_eq!(parsed, vec![(22, PathBuf::from("/proc")), (301, PathBuf::from("/b/with space\\x")), (302, PathBuf::from("/b/tab\tend"))]);
    }
}
