//! A container's root filesystem: the image's layer snapshots (read-only lower dirs, top layer
//! first) under an overlay with the container's own writable upper dir. The snapshots are never
//! written to; removing the container removes only its upper and work dirs.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub struct RootfsLayout {
    /// The image's snapshot dirs, bottom layer first (as chain ids are ordered).
    pub layers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
}

impl RootfsLayout {
    pub fn mount(&self) -> Result<()> {
        for dir in [&self.upper, &self.work, &self.target] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        if self.layers.is_empty() {
            return Err(Error::Invalid("the image has no layers".into()));
        }
        let lower = self.layers.iter().rev().map(|p| plain(p)).collect::<Result<Vec<_>>>()?;
        let options = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), plain(&self.upper)?, plain(&self.work)?);
        // Past one page the mount options are cut by the kernel; deep images would need
        // the new mount API's per-layer lowerdir+ (a later change).
        if options.len() >= 4096 {
            return Err(Error::Invalid(format!("the image has too many layers ({}) for one overlay mount here", self.layers.len())));
        }
        nix::mount::mount(Some("overlay"), &self.target, Some("overlay"), nix::mount::MsFlags::empty(), Some(options.as_str())).map_err(|e| match e {
            // The usual cause, and one the kernel does not name.
            nix::errno::Errno::EINVAL => Error::Invalid(format!(
                "mount the overlay at {}: invalid argument (is {} on a filesystem overlayfs takes as an upper layer? overlayfs itself, 9p and NFS are not)",
                self.target.display(),
                self.upper.display()
            )),
            other => Error::io("mount the overlay at", &self.target, std::io::Error::from(other)),
        })
    }
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

/// overlayfs splits its options at `,` and `:`: paths carrying them (or `\\`) are refused. Ours
/// are `<root>/snapshots/<hex>` and `<root>/containers/<hex>`, so only an odd root can hit this.
fn plain(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| Error::Invalid(format!("{} is not UTF-8", path.display())))?;
    if text.contains([',', ':', '\\']) {
        return Err(Error::Invalid(format!("{text}: overlay paths cannot contain ',', ':' or '\\'")));
    }
    Ok(text.to_string())
}
