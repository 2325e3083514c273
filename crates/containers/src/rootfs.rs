//! A container's root filesystem: its active snapshot (the image's layers under the container's
//! own writable layer), mounted at `<bundle>/rootfs` from the mounts the snapshotter describes.
//! The committed snapshots are never written to; removing the container removes only its active
//! snapshot. A container of a pod with a user namespace sees the layers through idmapped mounts
//! ([`Idmap`]), as containerd does: nothing of the image is copied or chowned.

use crate::{Error, Result};
use berth_image::snapshots::Mount;
use berth_sys::mount_api;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};

/// A pod's user namespace as its containers' root filesystems see it: the image's layers
/// idmapped through it (a file root owns is its root's), the writable layer owned by its root.
pub struct Idmap {
    /// Where the user namespace is pinned.
    pub userns: PathBuf,
    /// The host uid and gid of its root.
    pub root: (u32, u32),
}

/// Performs `mounts` on `target` (created if missing), in order; an overlay through `idmap`
/// when there is one.
pub fn mount(mounts: &[Mount], target: &Path, idmap: Option<&Idmap>) -> Result<()> {
    std::fs::create_dir_all(target).map_err(|e| Error::io("create", target, e))?;
    for m in mounts {
        let flag = |name: &str| m.options.iter().any(|o| o == name);
        let result = match m.kind.as_str() {
            "overlay" if idmap.is_some() => idmapped_overlay(&m.options, target, idmap.expect("checked")),
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
                // An image without layers: only the writable layer, which the pod's root owns.
                if let Some((uid, gid)) = idmap.map(|i| i.root) {
                    std::os::unix::fs::lchown(&m.source, Some(uid), Some(gid)).map_err(|e| Error::io("chown", Path::new(&m.source), e))?;
                }
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

/// The overlay with each lower layer idmapped: a layer is cloned, idmapped and attached under
/// `<target>.idmapped/<n>` only long enough for overlayfs to take it (it keeps a private clone),
/// then detached; the upper directory is chowned to the pod's root. Needs Linux 5.19
/// (overlayfs on idmapped layers) and a filesystem that takes idmapped mounts.
fn idmapped_overlay(options: &[String], target: &Path, idmap: &Idmap) -> Result<()> {
    use std::os::fd::AsFd;
    let userns = std::fs::File::open(&idmap.userns).map_err(|e| Error::io("open the user namespace at", &idmap.userns, e))?;
    let staging = staging_dir(target);
    // What a berthd that died here left (layers still attached) goes first.
    clear_staging(&staging)?;
    let lowers: Vec<&str> = options.iter().find_map(|o| o.strip_prefix("lowerdir=")).map(|l| l.split(':').collect()).unwrap_or_default();
    let mut staged = Vec::new();
    let mounted = (|| {
        for (n, lower) in lowers.iter().enumerate() {
            let at = staging.join(n.to_string());
            std::fs::create_dir_all(&at).map_err(|e| Error::io("create", &at, e))?;
            let explain = |e: std::io::Error| {
                let hint = if e.raw_os_error() == Some(libc::EINVAL) { " (the filesystem does not take idmapped mounts)" } else { "" };
                Error::Invalid(format!("idmap the layer {lower} for a pod's user namespace: {e}{hint}"))
            };
            let tree = mount_api::clone_tree(Path::new(lower), false).map_err(explain)?;
            mount_api::set_tree_attr(tree.as_fd(), mount_api::MOUNT_ATTR_IDMAP, Some(userns.as_fd()), false).map_err(explain)?;
            let dir = std::fs::File::open(&at).map_err(|e| Error::io("open", &at, e))?;
            mount_api::move_mount(tree.as_fd(), dir.as_fd()).map_err(|e| Error::io("attach an idmapped layer at", &at, e))?;
            staged.push(at);
        }
        if let Some(upper) = options.iter().find_map(|o| o.strip_prefix("upperdir=")) {
            std::os::unix::fs::lchown(upper, Some(idmap.root.0), Some(idmap.root.1)).map_err(|e| Error::io("chown", Path::new(upper), e))?;
        }
        let lowerdir = format!("lowerdir={}", staged.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"));
        let data: Vec<&str> = options.iter().map(|o| if o.starts_with("lowerdir=") { lowerdir.as_str() } else { o.as_str() }).collect();
        nix::mount::mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.join(",").as_str()))
            .map_err(|e| Error::io("mount the idmapped overlay at", target, std::io::Error::from(e)))
    })();
    let cleared = clear_staging(&staging);
    if mounted.is_ok() && cleared.is_err() {
        // Not left mounted behind an error.
        let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    }
    mounted.and(cleared)
}

fn staging_dir(target: &Path) -> PathBuf {
    PathBuf::from(format!("{}.idmapped", target.display()))
}

/// Detaches whatever is attached in the staging directory and removes it, one empty directory
/// at a time: never a recursive delete, which would reach through a layer still attached (root
/// may write through an idmapped mount) and empty a layer other containers share.
fn clear_staging(staging: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(staging) else { return Ok(()) };
    for entry in entries.flatten() {
        let at = entry.path();
        match nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::io("detach an idmapped layer at", &at, e.into())),
        }
        std::fs::remove_dir(&at).map_err(|e| Error::io("remove", &at, e))?;
    }
    std::fs::remove_dir(staging).map_err(|e| Error::io("remove", staging, e))
}

/// Unmounts `target` if something is mounted there (detaching if busy), and whatever an
/// idmapped mount berthd died making left beside it.
pub fn unmount(target: &Path) -> Result<()> {
    let staging = clear_staging(&staging_dir(target));
    unmount_target(target).and(staging)
}

fn unmount_target(target: &Path) -> Result<()> {
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
