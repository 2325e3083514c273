//! Volumes, docker's way: a named volume (`-v NAME:/dst`, `berth volume create`) is a directory
//! of berth's own, `<volumes>/<name>/_data`, that outlives the containers using it; an image's
//! `VOLUME` that no `-v` covers gets an anonymous one, which goes with its container. A volume
//! mounted for the first time while empty is filled with what the image has at its target
//! (docker's copy-up), so `-v db:/var/lib/db` starts from the image's files.
//!
//! The image's files are hostile: the copy resolves the target inside the container's root
//! (openat2 RESOLVE_IN_ROOT), walks it by file descriptor without following a symlink, copies
//! regular files (opened O_NOFOLLOW|O_NONBLOCK, type checked first), directories and symlinks
//! as they are, with their owners and modes, and skips devices, FIFOs and sockets.

use crate::{Error, Result};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A container's use of a volume, kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeUse {
    pub name: String,
    /// Where it is mounted in the container.
    pub target: String,
    pub read_only: bool,
    /// Made for an image's VOLUME, removed with the container.
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// The directory containers see.
    pub mountpoint: PathBuf,
    /// Seconds since the epoch.
    pub created: u64,
    pub anonymous: bool,
}

/// The volumes under one directory.
pub struct Volumes {
    root: PathBuf,
}

/// Marks an anonymous volume (its directory holds this file beside `_data`).
const ANONYMOUS: &str = "anonymous";

/// docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, and short enough for a file name.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128 && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Volumes {
    pub fn new(root: PathBuf) -> Volumes {
        Volumes { root }
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            return Err(Error::Invalid(format!("volume name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]* (a host directory needs an absolute path)")));
        }
        Ok(self.root.join(name))
    }

    /// The volume `name`, made (empty) when it does not exist.
    pub fn create(&self, name: &str) -> Result<VolumeInfo> {
        let dir = self.dir(name)?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(|e| Error::io("create", &self.root, e))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io("create volume", &dir, e)),
            _ => {}
        }
        // Containers of any user may use it: the data directory is the image's or the user's to
        // restrict; the volume's own directory (0700) keeps other host users out.
        let data = dir.join("_data");
        match std::fs::DirBuilder::new().mode(0o755).create(&data) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io("create volume", &data, e)),
            _ => {}
        }
        self.get(name)
    }

    /// The anonymous volume `name` (made at create, named then), made if missing.
    pub fn create_anonymous_named(&self, name: &str) -> Result<VolumeInfo> {
        let info = self.create(name)?;
        let mark = self.root.join(name).join(ANONYMOUS);
        std::fs::write(&mark, b"").map_err(|e| Error::io("mark volume", &mark, e))?;
        Ok(VolumeInfo { anonymous: true, ..info })
    }

    pub fn get(&self, name: &str) -> Result<VolumeInfo> {
        let dir = self.dir(name)?;
        let data = dir.join("_data");
        let metadata = std::fs::metadata(&data).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoVolume(name.to_string()),
            _ => Error::io("volume", &data, e),
        })?;
        let created = metadata.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        Ok(VolumeInfo { name: name.to_string(), mountpoint: dir.join("_data"), created, anonymous: dir.join(ANONYMOUS).exists() })
    }

    pub fn list(&self) -> Result<Vec<VolumeInfo>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list volumes in", &self.root, e)),
        };
        let mut volumes: Vec<VolumeInfo> =
            entries.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).filter_map(|name| self.get(&name).ok()).collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Removes the volume and everything in it; one that is not there is an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let dir = self.dir(name)?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove volume", &dir, e))
    }

    /// Fills the volume `name` with what `rootfs` holds at `target`, if the volume is empty.
    pub fn copy_up(&self, name: &str, rootfs: &Path, target: &str) -> Result<()> {
        let data = self.get(name)?.mountpoint;
        let empty = std::fs::read_dir(&data).map_err(|e| Error::io("read volume", &data, e))?.next().is_none();
        if !empty {
            return Ok(());
        }
        let fail = |e: std::io::Error| Error::io("copy the image's files into volume", &data, e);
        let root = own(nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| fail(e.into()))?);
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let source = match berth_sys::open_in_root(root.as_fd(), Path::new(target), flags, 0, berth_sys::ResolveFlags::IN_ROOT) {
            Ok(fd) => fd,
            // Nothing there (or not a directory): nothing to copy.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)) => return Ok(()),
            Err(e) => return Err(fail(e)),
        };
        let dest = own(nix::fcntl::open(&data, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| fail(e.into()))?);
        copy_metadata(&source, &dest).map_err(fail)?;
        copy_tree(source, dest).map_err(fail)
    }
}

/// The most directories deep a copy-up goes (an image could nest them past any stack).
const MAX_DEPTH: usize = 512;

/// Copies the directory `source` into the (empty) directory `dest`, by file descriptor, depth
/// first: the fds held are two per level, however wide a directory is.
fn copy_tree(source: OwnedFd, dest: OwnedFd) -> std::io::Result<()> {
    let pending = copy_entries(&source, &dest)?;
    // Per level: the directory pair and the subdirectories of it not copied yet.
    let mut stack = vec![(source, dest, pending)];
    loop {
        let depth = stack.len();
        let Some((source, dest, pending)) = stack.last_mut() else { break };
        let Some(name) = pending.pop() else {
            stack.pop();
            continue;
        };
        if depth > MAX_DEPTH {
            return Err(std::io::Error::other(format!("directories nested more than {MAX_DEPTH} deep")));
        }
        let open = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let from = own(nix::fcntl::openat(Some(source.as_raw_fd()), name.as_c_str(), open, Mode::empty())?);
        let to = own(nix::fcntl::openat(Some(dest.as_raw_fd()), name.as_c_str(), open, Mode::empty())?);
        copy_metadata(&from, &to)?;
        let pending = copy_entries(&from, &to)?;
        stack.push((from, to, pending));
    }
    Ok(())
}

/// Copies the files and links of `source` into `dest` and makes its subdirectories there (empty);
/// returns their names, to be copied next.
fn copy_entries(source: &OwnedFd, dest: &OwnedFd) -> std::io::Result<Vec<std::ffi::CString>> {
    let mut subdirectories = Vec::new();
    let mut dir = Dir::from_fd(source.try_clone()?.into_raw_fd())?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        let stat = fstatat(Some(source.as_raw_fd()), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        let (uid, gid) = (Some(Uid::from_raw(stat.st_uid)), Some(Gid::from_raw(stat.st_gid)));
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(Some(dest.as_raw_fd()), name.as_c_str(), Mode::from_bits_truncate(0o700))?;
                subdirectories.push(name);
            }
            SFlag::S_IFREG => {
                let read = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let from = own(nix::fcntl::openat(Some(source.as_raw_fd()), name.as_c_str(), read, Mode::empty())?);
                let write = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let to = own(nix::fcntl::openat(Some(dest.as_raw_fd()), name.as_c_str(), write, Mode::from_bits_truncate(0o600))?);
                std::io::copy(&mut std::fs::File::from(from.try_clone()?), &mut std::fs::File::from(to.try_clone()?))?;
                copy_metadata(&from, &to)?;
            }
            SFlag::S_IFLNK => {
                let link = nix::fcntl::readlinkat(Some(source.as_raw_fd()), name.as_c_str())?;
                symlinkat(link.as_os_str(), Some(dest.as_raw_fd()), name.as_c_str())?;
                fchownat(Some(dest.as_raw_fd()), name.as_c_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            }
            // Devices, FIFOs and sockets are not data a volume starts with.
            _ => {}
        }
    }
    Ok(subdirectories)
}

/// Owner and mode of `from` onto `to`.
fn copy_metadata(from: &OwnedFd, to: &OwnedFd) -> std::io::Result<()> {
    let stat = nix::sys::stat::fstat(from.as_raw_fd())?;
    nix::unistd::fchown(to.as_raw_fd(), Some(Uid::from_raw(stat.st_uid)), Some(Gid::from_raw(stat.st_gid)))?;
    fchmod(to.as_raw_fd(), Mode::from_bits_truncate(stat.st_mode & 0o7777))?;
    Ok(())
}

fn own(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl crate::Containers {
    /// The volume `name` (a random one when empty), made if missing.
    pub fn create_volume(&self, name: &str) -> Result<VolumeInfo> {
        match name {
            "" => self.volumes.create(&crate::create::random_id()?),
            name => self.volumes.create(name),
        }
    }

    /// The volume and the names of the containers that use it.
    pub fn inspect_volume(&self, name: &str) -> Result<(VolumeInfo, Vec<String>)> {
        Ok((self.volumes.get(name)?, self.volume_users(name)))
    }

    pub fn list_volumes(&self) -> Result<Vec<(VolumeInfo, Vec<String>)>> {
        Ok(self
            .volumes
            .list()?
            .into_iter()
            .map(|v| {
                let users = self.volume_users(&v.name);
                (v, users)
            })
            .collect())
    }

    /// Removes a volume no container uses, running or not (as docker refuses to).
    pub fn remove_volume(&self, name: &str) -> Result<VolumeInfo> {
        let info = self.volumes.get(name)?;
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(Error::Conflict(format!("volume {name} is in use by {}", users.join(", "))));
        }
        self.volumes.remove(name)?;
        Ok(info)
    }

    /// Removes the volumes no container uses: the anonymous ones, or with `all` the named ones
    /// too (docker's `volume prune` and `--all`). Returns their names.
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for volume in self.volumes.list()? {
            if (all || volume.anonymous) && self.volume_users(&volume.name).is_empty() {
                self.volumes.remove(&volume.name)?;
                removed.push(volume.name);
            }
        }
        Ok(removed)
    }

    pub(crate) fn volume_users(&self, name: &str) -> Vec<String> {
        let table = self.table();
        table.records().filter(|r| r.volumes.iter().any(|v| v.name == name)).map(|r| r.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_up_takes_wide_and_deep_trees_and_never_leaves_the_root() {
        let base = std::env::temp_dir().join(format!("berth-volumes-{}", std::process::id()));
        let (rootfs, volumes) = (base.join("rootfs"), Volumes::new(base.join("volumes")));
        // 600 sibling directories (wider than the depth bound), one 40 deep, and a link out.
        for i in 0..600 {
            std::fs::create_dir_all(rootfs.join(format!("data/d{i}"))).unwrap();
            std::fs::write(rootfs.join(format!("data/d{i}/f")), format!("{i}")).unwrap();
        }
        let deep: std::path::PathBuf = (0..40).map(|i| format!("n{i}")).collect();
        std::fs::create_dir_all(rootfs.join("data").join(&deep)).unwrap();
        std::fs::write(rootfs.join("data").join(&deep).join("leaf"), "deep").unwrap();
        std::os::unix::fs::symlink("/", rootfs.join("escape")).unwrap();
        volumes.create("wide").unwrap();
        volumes.copy_up("wide", &rootfs, "/data").unwrap();
        let data = volumes.get("wide").unwrap().mountpoint;
        assert_eq!(std::fs::read_to_string(data.join("d599/f")).unwrap(), "599");
        assert_eq!(std::fs::read_to_string(data.join(&deep).join("leaf")).unwrap(), "deep");
        // A target through a link that points out of the root resolves inside it: the root's
        // own /data, not the host's.
        volumes.create("linked").unwrap();
        volumes.copy_up("linked", &rootfs, "/escape/data").unwrap();
        assert!(volumes.get("linked").unwrap().mountpoint.join("d0/f").exists());
        // A second copy-up into a volume that has content does nothing.
        std::fs::remove_file(data.join("d0/f")).unwrap();
        volumes.copy_up("wide", &rootfs, "/data").unwrap();
        assert!(!data.join("d0/f").exists());
        assert!(matches!(volumes.create("../x"), Err(Error::Invalid(_))));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
