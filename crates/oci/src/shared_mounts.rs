//! Mounts of a container without a mount namespace of its own. The spec allows one (runc and crun
//! run it): the container shares the runtime's namespace, so the spec's mounts are made there,
//! beneath the rootfs, and outlive the init; runc leaves them mounted. Here `create` records the
//! mounts its init made ([`SharedMounts::record`], then [`SharedMounts::note_made`] once the init
//! is ready) and `delete` detaches them, with whatever was mounted on them since
//! ([`SharedMounts::take_down`]). A `create` that fails detaches every mount that appeared beneath
//! the rootfs meanwhile. Mounts the container makes directly on the rootfs later are left, as
//! runc leaves them: nothing tells them from a mount that reached the rootfs from elsewhere.
//!
//! Detaching one must reach nothing else:
//! - it is reached by a path resolved inside the rootfs, not through a last symlink, and only
//!   detached if the mount found there is the one recorded (statx's mount id, the 64-bit one
//!   never reused where the kernel has it);
//! - it is made private first, with everything below it: otherwise an unmount below a copy of a
//!   shared host tree (an rbind of one) would propagate to the host's originals;
//! - nothing is done from another mount namespace than create's;
//! - the rootfs itself, often the caller's own mount, is never touched.
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
    /// The mounts the init made (not those on them), by path inside the rootfs and
    /// [`identity`]; None until the init is ready.
    made: Option<Vec<(PathBuf, u64)>>,
}

impl SharedMounts {
    pub(crate) fn record(rootfs: &Path) -> Result<SharedMounts> {
        let rootfs = canonical(rootfs)?;
        let before = beneath(&rootfs)?.into_iter().map(|e| e.id).collect();
        Ok(SharedMounts { namespace: namespace()?, before, made: None })
    }

    /// Once the init is ready: which mounts beneath the rootfs are new, and of those, the ones
    /// not on another new one.
    pub(crate) fn note_made(&mut self, rootfs: &Path) -> Result<()> {
        let rootfs = canonical(rootfs)?;
        let root = open_dir(&rootfs)?;
        let mut made = Vec::new();
        for entry in self.new_tops(&rootfs)? {
            let inside = entry.point.strip_prefix(&rootfs).unwrap_or(&entry.point).to_path_buf();
            // The mount the path reaches is the one listed (none stacked on it yet).
            let Some(target) = open_mount(root.as_fd(), &inside) else { continue };
            if mount_id(target.as_fd(), false).is_ok_and(|id| id == entry.id) {
                made.push((inside, identity(target.as_fd()).map_err(|e| Error::io("statx", &entry.point, e))?));
            }
        }
        self.made = Some(made);
        Ok(())
    }

    /// Detaches what the init made (or, for a create that failed, every new mount beneath the
    /// rootfs); returns what it could not do.
    pub(crate) fn take_down(&self, rootfs: &Path) -> Vec<Error> {
        let mut warnings = Vec::new();
        if let Err(e) = self.try_take_down(rootfs, &mut warnings) {
            warnings.push(e);
        }
        warnings
    }

    fn try_take_down(&self, rootfs: &Path, warnings: &mut Vec<Error>) -> Result<()> {
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
        let targets: Vec<(PathBuf, u64, bool)> = match &self.made {
            Some(made) => made.iter().rev().map(|(inside, id)| (inside.clone(), *id, true)).collect(),
            None => self
                .new_tops(&rootfs)?
                .into_iter()
                .rev()
                .map(|e| (e.point.strip_prefix(&rootfs).unwrap_or(&e.point).to_path_buf(), e.id, false))
                .collect(),
        };
        for (inside, id, unique) in targets {
            let Some(target) = open_mount(root.as_fd(), &inside) else { continue };
            let found = if unique { identity(target.as_fd()) } else { mount_id(target.as_fd(), false) };
            // Gone already, or something else is on top of it now: not ours to detach.
            if !found.is_ok_and(|found| found == id) {
                continue;
            }
            let point = rootfs.join(&inside);
            if let Err(e) = make_private(target.as_fd()) {
                warnings.push(Error::io("make private, so that its unmount stays here,", &point, e));
                continue;
            }
            match umount2(format!("/proc/self/fd/{}", target.as_raw_fd()).as_str(), MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => warnings.push(Error::sys(format!("unmount {}", point.display()), e)),
            }
        }
        Ok(())
    }

    /// The mounts beneath the rootfs that were not there before and do not sit on another new one.
    fn new_tops(&self, rootfs: &Path) -> Result<Vec<Entry>> {
        let before: HashSet<u64> = self.before.iter().copied().collect();
        let new: Vec<Entry> = beneath(rootfs)?.into_iter().filter(|e| !before.contains(&e.id)).collect();
        let ids: HashSet<u64> = new.iter().map(|e| e.id).collect();
        Ok(new.into_iter().filter(|e| !ids.contains(&e.parent)).collect())
    }
}

/// A mount's identity across create and delete: the never-reused id where the kernel has it.
fn identity(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    mount_id(fd, true).or_else(|_| mount_id(fd, false))
}

/// `inside` the rootfs, not through a last symlink; None where nothing is there any more.
fn open_mount(root: BorrowedFd<'_>, inside: &Path) -> Option<OwnedFd> {
    open_in_root(root, inside, libc::O_PATH | libc::O_NOFOLLOW, 0, ResolveFlags::IN_ROOT).ok()
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
    parent: u64,
    point: PathBuf,
}

/// The mounts strictly beneath the canonical `rootfs`, in the table's order (a mount after the
/// one it sits on).
fn beneath(rootfs: &Path) -> Result<Vec<Entry>> {
    let mut table = Vec::new();
    std::fs::File::open("/proc/self/mountinfo")
        .and_then(|f| f.take(MAX_MOUNTINFO).read_to_end(&mut table))
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse(&table).into_iter().filter(|e| e.point != rootfs && e.point.starts_with(rootfs)).collect())
}

/// The lines of a mountinfo table; lines that do not parse are skipped.
fn parse(table: &[u8]) -> Vec<Entry> {
    table
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let mut number = || std::str::from_utf8(fields.next()?).ok()?.parse::<u64>().ok();
            let (id, parent) = (number()?, number()?);
            let point = fields.nth(2)?;
            Some(Entry { id, parent, point: PathBuf::from(std::ffi::OsString::from_vec(crate::sys::mountinfo::unescape(point))) })
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
        let parsed: Vec<(u64, u64, PathBuf)> = parse(table).into_iter().map(|e| (e.id, e.parent, e.point)).collect();
        assert_eq!(
            parsed,
            vec![(22, 1, PathBuf::from("/proc")), (301, 22, PathBuf::from("/b/with space\\x")), (302, 301, PathBuf::from("/b/tab\tend"))]
        );
    }
}
