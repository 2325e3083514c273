//! Idmapped mounts (mount options `idmap`, `ridmap`): the parent, still root in the host's user
//! namespace as the kernel requires, clones each such bind source as a detached tree and idmaps it
//! (files owned by a mapping's containerID appear owned by its hostID); the init attaches the trees
//! inside the rootfs. Mappings come from the mount, else from the container's user namespace.

use crate::namespaces::user_namespace_fd;
use crate::spec::MountIdMappings;
use crate::sys::mount_api::{clone_tree, set_tree_attr, MOUNT_ATTR_IDMAP};
use crate::{Error, Result};
use oci_spec::runtime::{Linux, Mount};
use std::os::fd::{AsFd, OwnedFd};

/// Whether the mount asks to be idmapped, and recursively so.
pub(crate) fn requested(mount: &Mount) -> Option<bool> {
    let options = mount.options().as_deref().unwrap_or(&[]);
    if options.iter().any(|o| o == "ridmap") {
        Some(true)
    } else if options.iter().any(|o| o == "idmap") {
        Some(options.iter().any(|o| o == "rbind"))
    } else {
        None
    }
}

/// One detached, idmapped tree per mount that asks for one (None for the others), in spec order.
pub(crate) fn prepare(mounts: &[Mount], mappings: &[MountIdMappings], linux: &Linux) -> Result<Vec<Option<OwnedFd>>> {
    let none = MountIdMappings::default();
    let with_mappings = mounts.iter().enumerate().map(|(i, m)| (m, mappings.get(i).unwrap_or(&none)));
    with_mappings.map(|(m, ids)| requested(m).map(|recursive| tree(m, ids, linux, recursive)).transpose()).collect()
}

fn tree(mount: &Mount, ids: &MountIdMappings, linux: &Linux, recursive: bool) -> Result<OwnedFd> {
    let dest = mount.destination().display();
    let source = mount
        .source()
        .as_ref()
        .filter(|_| crate::spec::is_bind(mount))
        .ok_or_else(|| Error::Unsupported(format!("idmap on {dest}: only bind mounts can be idmapped")))?;
    let uid_mappings = ids.uid.as_ref().or(linux.uid_mappings().as_ref()).filter(|m| !m.is_empty());
    let gid_mappings = ids.gid.as_ref().or(linux.gid_mappings().as_ref()).filter(|m| !m.is_empty());
    let (Some(uid_mappings), Some(gid_mappings)) = (uid_mappings, gid_mappings) else {
        return Err(Error::Unsupported(format!("idmap on {dest} needs uidMappings and gidMappings (on the mount or the container)")));
    };
    let userns = user_namespace_fd(uid_mappings, gid_mappings)?;
    let explain = |e: std::io::Error| {
        let hint = match e.raw_os_error() {
            Some(libc::EINVAL) => " (the filesystem does not support idmapped mounts)",
            Some(libc::EPERM) => " (idmapped mounts need root in the host's user namespace)",
            _ => "",
        };
        Error::Unsupported(format!("idmap {} on {dest}: {e}{hint}", source.display()))
    };
    let tree = clone_tree(source, recursive).map_err(explain)?;
    set_tree_attr(tree.as_fd(), MOUNT_ATTR_IDMAP, Some(userns.as_fd()), recursive).map_err(explain)?;
    Ok(tree)
}
