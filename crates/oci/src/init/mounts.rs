//! One runtime-spec mount, performed fd-relative: the destination is resolved inside the rootfs with
//! openat2(RESOLVE_IN_ROOT) and the mount is made on `/proc/self/fd/N`, so a symlink planted in the
//! image can never redirect a mount onto the host.

use crate::sys::{mkdir_all_in_root, open_in_root, ResolveFlags};
use crate::{Error, Result};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, PartialEq)]
pub(super) struct MountOptions {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// Recursive attributes (`rro`, `rnosuid`, …; runtime-spec 1.1): MOUNT_ATTR_* to set and to
    /// clear on the mount and every mount below it.
    pub attr_set: u64,
    pub attr_clr: u64,
}

/// The recursive options: (attributes to set, to clear).
fn recursive_attr(option: &str) -> Option<(u64, u64)> {
    use crate::sys::mount_api::*;
    Some(match option {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        // The atime field takes one value: clear it, set the one asked for (relatime is 0).
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME),
        "rrelatime" | "ratime" => (0, MOUNT_ATTR_ATIME),
        _ => return None,
    })
}

pub(super) fn parse_options(options: &[String]) -> Result<MountOptions> {
    let mut parsed = MountOptions {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        attr_set: 0,
        attr_clr: 0,
    };
    for option in options {
        if let Some((set, clr)) = recursive_attr(option) {
            parsed.attr_set = (parsed.attr_set & !clr) | set;
            parsed.attr_clr = (parsed.attr_clr & !set) | clr;
            continue;
        }
        let (set, clear) = match option.as_str() {
            "defaults" | "tmpcopyup" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                parsed.bind = true;
                continue;
            }
            "rbind" => {
                parsed.bind = true;
                parsed.recursive = true;
                continue;
            }
            // Done by the parent (crate::idmap); the tree arrives ready to attach.
            "idmap" | "ridmap" => continue,
            other => {
                if let Some(propagation) = propagation_flag(other) {
                    parsed.propagation |= propagation;
                } else {
                    parsed.data.push(other.to_string());
                }
                continue;
            }
        };
        parsed.flags.insert(set);
        parsed.flags.remove(clear);
    }
    Ok(parsed)
}

pub(super) fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What to create at a missing mount destination.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Dir,
    File,
}

/// A destination inside the rootfs as a relative path with only normal components.
pub(super) fn relative(dest: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in dest.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            // RESOLVE_IN_ROOT would clamp it anyway; refusing is clearer.
            Component::ParentDir | Component::Prefix(_) => return Err(Error::Init(format!("mount destination {} contains '..'", dest.display()))),
        }
    }
    Ok(out)
}

/// Opens `path` inside `root` (O_PATH), creating missing directories and, if asked, the last
/// component as an empty file. Every lookup stays inside `root`.
pub(super) fn create_in_root(root: BorrowedFd<'_>, path: &Path, kind: Kind) -> Result<OwnedFd> {
    let path = relative(path)?;
    if let Ok(fd) = open_in_root(root, &path, libc::O_PATH, 0, ResolveFlags::IN_ROOT) {
        return Ok(fd);
    }
    if kind != Kind::File {
        return mkdir_all_in_root(root, &path, 0o755).map_err(|e| Error::io("mkdir in rootfs", &path, e));
    }
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(Error::Init(format!("mount destination {} names no file", path.display()))),
    };
    // The parent is resolved inside the root; O_NOFOLLOW keeps a symlink planted at the name out.
    let dir = mkdir_all_in_root(root, parent, 0o755).map_err(|e| Error::io("mkdir in rootfs", parent, e))?;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| Error::sys(format!("create {}", path.display()), e))?;
    let _ = nix::unistd::close(fd);
    open_in_root(root, &path, libc::O_PATH, 0, ResolveFlags::IN_ROOT).map_err(|e| Error::io("open in rootfs", &path, e))
}

pub(super) fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Flags a user namespace may not clear on a bind mount it did not create; a remount must repeat them.
pub(super) fn locked_flags(path: &str) -> MsFlags {
    let Ok(stat) = nix::sys::statvfs::statvfs(path) else { return MsFlags::empty() };
    use nix::sys::statvfs::FsFlags;
    let mut flags = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if stat.flags().contains(fs) {
            flags |= ms;
        }
    }
    flags
}

/// Performs one spec mount inside `root` (an fd on the rootfs, still at its host path).
/// `idmapped`: the detached tree the parent made for an idmap mount, attached instead of a bind.
pub(super) fn mount_one(
    root: BorrowedFd<'_>,
    spec_mount: &Mount,
    cgroup_mounts: &[(String, PathBuf)],
    in_userns: bool,
    tree: Option<BorrowedFd<'_>>,
    mount_label: Option<&str>,
) -> Result<()> {
    let options = parse_options(spec_mount.options().as_deref().unwrap_or(&[]))?;
    let typ = spec_mount.typ().clone().unwrap_or_default();
    let dest = spec_mount.destination();
    let bind = options.bind || typ == "bind";
    if typ == "cgroup" && !bind {
        return mount_cgroup(root, dest, &options, cgroup_mounts);
    }
    // A bind source cloned already (idmapped by the parent, or cloned while the init could still
    // reach it): attached as it is. Its kind from the tree: the path may be out of reach by now.
    if let Some(tree) = tree {
        let source = spec_mount.source().as_deref().unwrap_or(Path::new(""));
        let mode = nix::sys::stat::fstat(tree.as_raw_fd()).map_err(|e| Error::sys(format!("stat bind source {}", source.display()), e))?.st_mode;
        let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
        let target = create_in_root(root, dest, if is_dir { Kind::Dir } else { Kind::File })?;
        crate::sys::mount_api::move_mount(tree, target.as_fd())
            .map_err(|e| Error::sys(format!("attach {} on {}", source.display(), dest.display()), e))?;
        remount_bind(root, dest, &options, in_userns)?;
    } else if bind {
        let source = spec_mount.source().as_ref().ok_or_else(|| Error::Init(format!("bind mount to {} has no source", dest.display())))?;
        let meta = std::fs::metadata(source).map_err(|e| Error::io("bind source", source, e))?;
        let target = create_in_root(root, dest, if meta.is_dir() { Kind::Dir } else { Kind::File })?;
        let mut flags = MsFlags::MS_BIND;
        if options.recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(Some(source), fd_path(target.as_fd()).as_str(), None::<&str>, flags, None::<&str>)
            .map_err(|e| Error::sys(format!("bind {} on {}", source.display(), dest.display()), e))?;
        remount_bind(root, dest, &options, in_userns)?;
    } else {
        let target = create_in_root(root, dest, Kind::Dir)?;
        // `linux.mountLabel` (SELinux, where it is enabled) labels the filesystems made for the
        // container, as runc labels them: by the mount option (tmpfs, devpts …), mqueue (which
        // has none) by its root's attribute below; proc and sysfs keep the kernel's labels.
        let label = mount_label.filter(|l| !l.is_empty());
        let mut data = options.data.clone();
        if let Some(label) = label.filter(|_| !matches!(typ.as_str(), "proc" | "sysfs" | "mqueue" | "cgroup" | "cgroup2")) {
            data.push(format!("context=\"{label}\""));
        }
        let data = data.join(",");
        let source = spec_mount.source().as_ref().map(|s| s.display().to_string()).unwrap_or_else(|| typ.clone());
        mount(
            Some(source.as_str()),
            fd_path(target.as_fd()).as_str(),
            Some(typ.as_str()),
            options.flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| Error::sys(format!("mount {typ} on {}", dest.display()), e))?;
        if let (Some(label), "mqueue") = (label, typ.as_str()) {
            let mounted = create_in_root(root, dest, Kind::Dir)?;
            let path = std::ffi::CString::new(fd_path(mounted.as_fd())).map_err(|e| Error::sys("mqueue path", std::io::Error::other(e)))?;
            // SAFETY: both strings are NUL-terminated and outlive the call; the value is `label`'s
            // bytes with their length; the kernel only reads them.
            let rc = unsafe { libc::setxattr(path.as_ptr(), c"security.selinux".as_ptr(), label.as_ptr().cast(), label.len(), 0) };
            if rc != 0 {
                return Err(Error::io("label with linux.mountLabel", dest, std::io::Error::last_os_error()));
            }
        }
    }
    if options.attr_set | options.attr_clr != 0 {
        // Opened anew, the destination is the root of the mount now on it.
        let mounted = create_in_root(root, dest, Kind::Dir)?;
        crate::sys::mount_api::set_mount_attr(mounted.as_fd(), options.attr_set, options.attr_clr, true)
            .map_err(|e| Error::sys(format!("set recursive mount attributes of {}", dest.display()), e))?;
    }
    if !options.propagation.is_empty() {
        let mounted = create_in_root(root, dest, Kind::Dir)?;
        mount(None::<&str>, fd_path(mounted.as_fd()).as_str(), None::<&str>, options.propagation, None::<&str>)
            .map_err(|e| Error::sys(format!("set propagation of {}", dest.display()), e))?;
    }
    Ok(())
}

/// Applies a bind mount's flags (ro, nosuid, …), which a bind itself ignores, by a remount.
fn remount_bind(root: BorrowedFd<'_>, dest: &Path, options: &MountOptions, in_userns: bool) -> Result<()> {
    let remount_flags = options.flags & !(MsFlags::MS_REC);
    if remount_flags.is_empty() {
        return Ok(());
    }
    // The fd still names the directory under the new mount; reopen to reach the mount itself.
    let mounted = create_in_root(root, dest, Kind::Dir)?;
    let path = fd_path(mounted.as_fd());
    let locked = if in_userns { locked_flags(&path) } else { MsFlags::empty() };
    mount(None::<&str>, path.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | remount_flags | locked, None::<&str>)
        .map_err(|e| Error::sys(format!("remount {} with {:?}", dest.display(), remount_flags), e))
}

/// A `cgroup` mount shows only the container's own subtree: on v1 a tmpfs holding one bind mount per
/// hierarchy; on v2 (a single unnamed source) a bind of the container's directory itself.
fn mount_cgroup(root: BorrowedFd<'_>, dest: &Path, options: &MountOptions, cgroup_mounts: &[(String, PathBuf)]) -> Result<()> {
    if let [(name, host_dir)] = cgroup_mounts {
        if name.is_empty() {
            return bind_readonly_aware(root, dest, host_dir, options);
        }
    }
    let target = create_in_root(root, dest, Kind::Dir)?;
    let base_flags = options.flags & !MsFlags::MS_RDONLY;
    mount(Some("tmpfs"), fd_path(target.as_fd()).as_str(), Some("tmpfs"), base_flags, Some("mode=755"))
        .map_err(|e| Error::sys(format!("mount tmpfs for cgroups on {}", dest.display()), e))?;
    for (name, host_dir) in cgroup_mounts {
        bind_readonly_aware(root, &dest.join(name), host_dir, options)?;
    }
    if options.flags.contains(MsFlags::MS_RDONLY) {
        let mounted = create_in_root(root, dest, Kind::Dir)?;
        mount(None::<&str>, fd_path(mounted.as_fd()).as_str(), None::<&str>, MsFlags::MS_REMOUNT | options.flags, Some("mode=755"))
            .map_err(|e| Error::sys(format!("remount {} read-only", dest.display()), e))?;
    }
    Ok(())
}

/// Binds a cgroup directory at `dest` and applies the mount's flags (ro, nosuid, …) to the bind.
fn bind_readonly_aware(root: BorrowedFd<'_>, dest: &Path, source: &Path, options: &MountOptions) -> Result<()> {
    let target = create_in_root(root, dest, Kind::Dir)?;
    mount(Some(source), fd_path(target.as_fd()).as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| Error::sys(format!("bind cgroup {} on {}", source.display(), dest.display()), e))?;
    let mounted = create_in_root(root, dest, Kind::Dir)?;
    mount(None::<&str>, fd_path(mounted.as_fd()).as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | options.flags, None::<&str>)
        .map_err(|e| Error::sys(format!("remount cgroup {}", dest.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert!(!o.bind);
    }

    #[test]
    fn later_options_win() {
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(opts(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn bind_and_propagation() {
        let o = opts(&["rbind", "rprivate", "ro"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn destinations_stay_relative() {
        assert_eq!(relative(Path::new("/a/./b")).unwrap(), PathBuf::from("a/b"));
        assert!(relative(Path::new("/a/../../etc")).is_err());
    }
}
