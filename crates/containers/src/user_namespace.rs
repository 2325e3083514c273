//! A pod's user namespace (Kubernetes' `hostUsers: false`): one range of host ids for uids and one
//! for gids, each mapping the pod's root (container id 0) to an unprivileged host id, as the kubelet
//! allocates them. The namespace is made by a short-lived child cloned into it together with the
//! pod's network, IPC and UTS namespaces, so those are owned by it (its root may configure them,
//! mount sysfs and mqueue); berthd, root in the host's namespace, writes the maps and pins them.
//! Files reach the pod through idmapped mounts of the same mapping ([`crate::rootfs`], the CRI's
//! volumes), never by chowning an image.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// `length` ids from `container_id` in the namespace are `host_id`… on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// One range for uids, one for gids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub uids: IdRange,
    pub gids: IdRange,
}

impl UserNamespace {
    /// Each range maps the pod's root, fits in 32 bits and leaves the host's root out (a pod
    /// mapped onto it would be the host's root again).
    pub fn check(&self) -> Result<()> {
        for (what, range) in [("uid", self.uids), ("gid", self.gids)] {
            if range.container_id != 0 {
                return Err(Error::Invalid(format!("the pod's {what} mapping must start at container id 0 (its root), not {}", range.container_id)));
            }
            if range.length == 0 || range.host_id.checked_add(range.length).is_none() {
                return Err(Error::Invalid(format!(
                    "the pod's {what} mapping {} + {} does not fit in 32 bits or is empty",
                    range.host_id, range.length
                )));
            }
            if range.host_id == 0 {
                return Err(Error::Invalid(format!("the pod's {what} mapping includes the host's root (host id 0)")));
            }
        }
        Ok(())
    }

    /// The host uid and gid of the pod's root.
    pub fn root(&self) -> (u32, u32) {
        (self.uids.host_id, self.gids.host_id)
    }

    fn map_text(range: IdRange) -> String {
        format!("{} {} {}\n", range.container_id, range.host_id, range.length)
    }
}

/// Clones a child into a new user namespace with these maps plus the new namespaces in `flags`
/// (CLONE_NEW*; all owned by the user namespace, which the kernel creates first), runs `with`
/// on its pid while it waits, then kills and reaps it (on every path: a guard does it). The
/// namespaces outlive it only where `with` pinned them.
pub fn with_new_namespaces<T>(userns: &UserNamespace, flags: libc::c_int, with: impl FnOnce(i32) -> Result<T>) -> Result<T> {
    let (cloned, _) = berth_sys::clone3((libc::CLONE_NEWUSER | flags) as u64, None)
        .map_err(|e| Error::io("clone3 a user namespace for", std::path::Path::new("a pod"), e))?;
    let pid = match cloned {
        berth_sys::CloneResult::Child => child_waits(),
        berth_sys::CloneResult::Parent { pid } => pid,
    };
    let _child = Held(pid);
    write_maps(pid, userns)?;
    with(pid)
}

/// The child of a multi-threaded parent: only async-signal-safe calls until SIGKILL ends it. It
/// waits for no fd of its own (it holds copies of all of berthd's, so another thread's pipe
/// would never see EOF while it lives).
fn child_waits() -> ! {
    loop {
        // SAFETY: pause is async-signal-safe and takes no arguments.
        unsafe { libc::pause() };
    }
}

/// Kills and reaps the waiting child when dropped.
struct Held(i32);

impl Drop for Held {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

fn write_maps(pid: i32, userns: &UserNamespace) -> Result<()> {
    for (file, range) in [("uid_map", userns.uids), ("gid_map", userns.gids)] {
        let path = std::path::PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, UserNamespace::map_text(range)).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}

/// Whether a pod's containers can have their root filesystem here: the filesystem under `path`
/// (berth's data directory, where the layers are) takes idmapped mounts, and overlayfs takes
/// an idmapped layer (Linux 5.19). Tried once with an empty layer in a scratch directory below
/// `path`, mounted and taken apart again.
pub fn idmap_supported(path: &std::path::Path) -> bool {
    let scratch = path.join(format!(".idmap-probe-{}", std::process::id()));
    let probe = UserNamespace {
        uids: IdRange { container_id: 0, host_id: 65536, length: 65536 },
        gids: IdRange { container_id: 0, host_id: 65536, length: 65536 },
    };
    let tried = with_new_namespaces(&probe, 0, |pid| overlay_on_an_idmapped_layer(&scratch, &format!("/proc/{pid}/ns/user")));
    for dir in ["merged", "staged", "work/work", "work/index", "work", "upper", "lower", ""] {
        let _ = std::fs::remove_dir(scratch.join(dir));
    }
    if let Err(e) = &tried {
        tracing::info!("no idmapped layers under {}: {e}; pods cannot have user namespaces", path.display());
    }
    tried.is_ok()
}

fn overlay_on_an_idmapped_layer(scratch: &std::path::Path, userns: &str) -> Result<()> {
    use berth_sys::mount_api::{clone_tree, move_mount, set_tree_attr, MOUNT_ATTR_IDMAP};
    use nix::mount::{umount2, MntFlags, MsFlags};
    use std::os::fd::AsFd;
    for dir in ["lower", "upper", "work", "staged", "merged"] {
        std::fs::create_dir_all(scratch.join(dir)).map_err(|e| Error::io("create", &scratch.join(dir), e))?;
    }
    let userns = std::fs::File::open(userns).map_err(|e| Error::io("open", std::path::Path::new(userns), e))?;
    let lower = scratch.join("lower");
    let tree = clone_tree(&lower, false).map_err(|e| Error::io("clone the mount of", &lower, e))?;
    set_tree_attr(tree.as_fd(), MOUNT_ATTR_IDMAP, Some(userns.as_fd()), false).map_err(|e| Error::io("idmap a clone of", &lower, e))?;
    let staged = scratch.join("staged");
    let at = std::fs::File::open(&staged).map_err(|e| Error::io("open", &staged, e))?;
    move_mount(tree.as_fd(), at.as_fd()).map_err(|e| Error::io("attach an idmapped layer at", &staged, e))?;
    let data = format!("lowerdir={},upperdir={},workdir={}", staged.display(), scratch.join("upper").display(), scratch.join("work").display());
    let merged = scratch.join("merged");
    let mounted = nix::mount::mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()));
    if mounted.is_ok() {
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
    }
    let _ = umount2(&staged, MntFlags::MNT_DETACH);
    mounted.map_err(|e| Error::io("mount an overlay on an idmapped layer at", &merged, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userns(container_id: u32, host_id: u32, length: u32) -> UserNamespace {
        let range = IdRange { container_id, host_id, length };
        UserNamespace { uids: range, gids: range }
    }

    #[test]
    fn a_mapping_maps_the_pods_root_and_not_the_hosts() {
        userns(0, 65536, 65536).check().unwrap();
        assert!(userns(1, 1000, 100000).check().is_err(), "container id 0 unmapped");
        assert!(userns(0, 0, 65536).check().is_err(), "the host's root");
        assert!(userns(0, 1000, 0).check().is_err(), "empty");
        assert!(userns(0, u32::MAX - 10, 65536).check().is_err(), "past 32 bits");
        assert_eq!(userns(0, 1000, 5).root(), (1000, 1000));
    }

    #[test]
    fn the_child_is_in_a_namespace_with_the_maps() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let seen = with_new_namespaces(&userns(0, 100000, 65536), libc::CLONE_NEWNET, |pid| {
            let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
            let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
            Ok((map, std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap() != ours))
        })
        .unwrap();
        assert_eq!(seen.0.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
        assert!(seen.1, "a network namespace of its own");
    }
}
