//! /dev inside the container: the default device nodes, the spec's `linux.devices`, and the
//! conventional symlinks. In a user namespace mknod is forbidden, so host nodes are bind-mounted.

use super::mounts::{create_in_root, fd_path, relative, Kind};
use crate::sys::{open_in_root, ResolveFlags};
use crate::{Error, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

/// (path, major, minor): what every container gets, as runc and crun provide.
const DEFAULT_DEVICES: &[(&str, u64, u64)] =
    &[("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0)];

pub(super) fn create_defaults(root: BorrowedFd<'_>, in_userns: bool) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        create_node(root, Path::new(path), SFlag::S_IFCHR, *major, *minor, 0o666, 0, 0, in_userns)?;
    }
    Ok(())
}

pub(super) fn create_spec_devices(root: BorrowedFd<'_>, devices: &[LinuxDevice], in_userns: bool) -> Result<()> {
    for device in devices {
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(Error::Init(format!("device {} has type 'a'", device.path().display()))),
        };
        let (major, minor) = (u64::try_from(device.major()), u64::try_from(device.minor()));
        let (Ok(major), Ok(minor)) = (major, minor) else {
            return Err(Error::Init(format!("device {} has a negative number", device.path().display())));
        };
        let mode = device.file_mode().unwrap_or(0o666) & 0o7777;
        create_node(root, device.path(), kind, major, minor, mode, device.uid().unwrap_or(0), device.gid().unwrap_or(0), in_userns)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn create_node(root: BorrowedFd<'_>, path: &Path, kind: SFlag, major: u64, minor: u64, mode: u32, uid: u32, gid: u32, in_userns: bool) -> Result<()> {
    let rel = relative(path)?;
    let name = rel.file_name().ok_or_else(|| Error::Init(format!("device path {} has no name", path.display())))?;
    if in_userns {
        // Bind the host's node (same path) onto an empty file; the host's permissions apply.
        let target = create_in_root(root, &rel, Kind::File)?;
        return mount(Some(path), fd_path(target.as_fd()).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::sys(format!("bind device {}", path.display()), e));
    }
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = create_in_root(root, if parent_rel.as_os_str().is_empty() { Path::new(".") } else { parent_rel }, Kind::Dir)?;
    let dirfd = parent.as_raw_fd();
    // A node left by the image (or an earlier mount) is replaced, never written through.
    let _ = nix::unistd::unlinkat(Some(dirfd), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    mknodat(Some(dirfd), name, kind, Mode::from_bits_truncate(mode), makedev(major, minor))
        .map_err(|e| Error::sys(format!("mknod {}", path.display()), e))?;
    // mknod applies the umask; set the mode the spec asked for, and the owner, without following links.
    nix::sys::stat::fchmodat(Some(dirfd), name, Mode::from_bits_truncate(mode), nix::sys::stat::FchmodatFlags::FollowSymlink)
        .map_err(|e| Error::sys(format!("chmod {}", path.display()), e))?;
    nix::unistd::fchownat(Some(dirfd), name, Some(uid.into()), Some(gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| Error::sys(format!("chown {}", path.display()), e))?;
    Ok(())
}

pub(super) fn create_links(root: BorrowedFd<'_>) -> Result<()> {
    let dev = create_in_root(root, Path::new("/dev"), Kind::Dir)?;
    let mut links = vec![("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if open_in_root(root, Path::new("dev/pts/ptmx"), libc::O_PATH, 0, ResolveFlags::IN_ROOT).is_ok() {
        let _ = nix::unistd::unlinkat(Some(dev.as_raw_fd()), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}
