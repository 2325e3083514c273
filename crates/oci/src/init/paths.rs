//! After pivot_root: sysctls, masked paths and read-only paths, all inside the container's own view.

use crate::{Error, Result};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Linux;
use std::path::Path;

pub(super) fn apply_sysctls(linux: &Linux) -> Result<()> {
    for (key, value) in linux.sysctl().iter().flatten() {
        let path = crate::sysctl::proc_path(key);
        std::fs::write(&path, value).map_err(|e| Error::io("set sysctl", &path, e))?;
    }
    Ok(())
}

/// Hides each path: directories under an empty read-only tmpfs, files under /dev/null.
pub(super) fn mask(paths: &[String]) -> Result<()> {
    for path in paths {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("masked path", path, e)),
        };
        let result = if meta.is_dir() {
            mount(Some("tmpfs"), path.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
        } else {
            mount(Some("/dev/null"), path.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
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
        mount(None::<&str>, path.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | locked, None::<&str>)
            .map_err(|e| Error::sys(format!("remount {path} read-only"), e))?;
    }
    Ok(())
}
