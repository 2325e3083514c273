//! After pivot_root: sysctls, masked paths and read-only paths, all inside the container's own view.

use crate::{Error, Result};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Linux;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes each sysctl through a file checked to be on procfs: with a /proc that is not the kernel's
/// (a tmpfs from the config, a volume mounted over it) the value would land somewhere else, or a
/// swapped-in path would redirect it (CVE-2025-52881 class).
pub(super) fn apply_sysctls(linux: &Linux) -> Result<()> {
    for (key, value) in linux.sysctl().iter().flatten() {
        let path = crate::sysctl::proc_path(key);
        let file =
            std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(&path).map_err(|e| Error::io("open sysctl", &path, e))?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| Error::sys(format!("statfs {}", path.display()), e))?;
        if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
            return Err(Error::Init(format!("sysctl {key}: {} is not on procfs", path.display())));
        }
        (&file).write_all(value.as_bytes()).map_err(|e| Error::io("set sysctl", &path, e))?;
    }
    Ok(())
}

/// The container's /dev/null, checked to be the null device: masks bind it over files, and a
/// /dev/null that the image or a volume replaced (a symlink to a procfs file, say) would turn each
/// mask into a writable window onto the kernel (CVE-2025-31133 class).
fn open_null_device() -> Result<OwnedFd> {
    let fd = open_path("/dev/null")?;
    let stat = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::sys("stat /dev/null", e))?;
    let is_char_device = stat.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_char_device || stat.st_rdev != libc::makedev(1, 3) {
        return Err(Error::Init("the container's /dev/null is not the null device (1:3); refusing to mask with it".into()));
    }
    Ok(fd)
}

/// An O_PATH handle on `path` itself, never on what a final symlink points to.
fn open_path(path: &str) -> Result<OwnedFd> {
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).map_err(|e| Error::sys(format!("open {path}"), e))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Hides each path: directories under an empty read-only tmpfs, files under /dev/null. Both ends
/// are opened first and mounted through their descriptors, so neither can be a symlink.
pub(super) fn mask(paths: &[String]) -> Result<()> {
    let mut null = None;
    for path in paths {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("masked path", path, e)),
        };
        if meta.file_type().is_symlink() {
            return Err(Error::Init(format!("masked path {path} is a symlink")));
        }
        let target = open_path(path)?;
        let result = if meta.is_dir() {
            mount(Some("tmpfs"), fd_path(&target).as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
        } else {
            let null = match &null {
                Some(null) => null,
                None => null.insert(open_null_device()?),
            };
            mount(Some(fd_path(null).as_str()), fd_path(&target).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        result.map_err(|e| Error::sys(format!("mask {path}"), e))?;
    }
    Ok(())
}

pub(super) fn make_readonly(paths: &[String]) -> Result<()> {
    for path in paths {
        if !Path::new(path).exists() {
            continue;
        }
        mount(Some(path.as_str()), path.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| Error::sys(format!("bind {path} for read-only"), e))?;
        let locked = super::mounts::locked_flags(path);
        mount(
            None::<&str>,
            path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | locked,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("remount {path} read-only"), e))?;
    }
    Ok(())
}
