//! A container's root filesystem: its active snapshot (the image's layers under the container's
//! own writable layer), mounted at `<bundle>/rootfs` from the mounts the snapshotter describes.
//! The committed snapshots are never written to; removing the container removes only its active
//! snapshot.

use crate::{Error, Result};
use berth_image::snapshots::Mount;
use nix::mount::MsFlags;
use std::path::Path;

/// Performs `mounts` on `target` (created if missing), in order.
pub fn mount(mounts: &[Mount], target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(|e| Error::io("create", target, e))?;
    for m in mounts {
        let flag = |name: &str| m.options.iter().any(|o| o == name);
        let result = match m.kind.as_str() {
            "overlay" => {
                let data = m.options.join(",");
                nix::mount::mount(Some(m.source.as_str()), target, Some("overlay"), MsFlags::empty(), Some(data.as_str())).map_err(|e| match e {
                    // The usual cause, and one the kernel does not name.
                    nix::errno::Errno::EINVAL => Error::Invalid(format!(
                        "mount the overlay at {}: invalid argument (is the state directory on a filesystem overlayfs takes as an upper layer? overlayfs itself, 9p and NFS are not)",
                        target.display()
                    )),
                    other => Error::io("mount the overlay at", target, std::io::Error::from(other)),
                })
            }
            "bind" => {
                let recursive = if flag("rbind") { MsFlags::MS_REC } else { MsFlags::empty() };
                let bind = |flags| nix::mount::mount(Some(m.source.as_str()), target, None::<&str>, MsFlags::MS_BIND | flags, None::<&str>);
                bind(recursive)
                    .and_then(|()| if flag("ro") { bind(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY) } else { Ok(()) })
                    .map_err(|e| Error::io("bind mount at", target, std::io::Error::from(e)))
            }
            other => Err(Error::Invalid(format!("cannot mount a {other:?} snapshot at {}", target.display()))),
        };
        if let Err(e) = result {
            let _ = unmount(target);
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts `target` if something is mounted there (detaching if busy).
pub fn unmount(target: &Path) -> Result<()> {
    // Nothing there (a create that failed early): nothing to ask the kernel, which would want
    // privileges even to say so.
    if std::fs::symlink_metadata(target).is_err() {
        return Ok(());
    }
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("unmount", target, std::io::Error::from(e))),
    }
}
