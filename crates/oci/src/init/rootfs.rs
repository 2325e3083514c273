//! Building the container's root: propagation, the rootfs bind, the spec's mounts, /dev, the hook
//! round trip before pivot_root, and pivot_root (or MS_MOVE + chroot with --no-pivot).

use super::mounts::{self, mount_one, propagation_flag};
use super::{devices, InitContext};
use crate::sync::Message;
use crate::sys::mount_api::{clone_tree, make_private, move_mount};
use crate::{Error, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, fchdir, pivot_root};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The rootfs and the bind sources as detached trees, cloned while the init is still the host's
/// root: its uid after joining a user namespace by path (a pod's), until it becomes root there.
/// From then on directories only the host's root may search (berthd's 0700 state directory, the
/// kubelet's pod directories) are closed to it, and every path through them; the trees stay
/// usable. Cloning needs a mount namespace of the container's, which it has by now.
#[derive(Default)]
pub(super) struct HostTrees {
    /// The rootfs's tree and the directory it is attached on.
    rootfs: Option<(OwnedFd, OwnedFd)>,
    /// By index of the spec's mounts: the bind mounts that are not idmapped.
    binds: Vec<Option<OwnedFd>>,
}

impl HostTrees {
    pub(super) fn clone_now(ctx: &InitContext<'_>) -> Result<HostTrees> {
        if !ctx.plan.mount_ns {
            return Ok(HostTrees::default());
        }
        let tree = clone_tree(ctx.rootfs, true).map_err(|e| Error::sys(format!("clone rootfs {}", ctx.rootfs.display()), e))?;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(ctx.rootfs)
            .map_err(|e| Error::io("open rootfs", ctx.rootfs, e))?;
        let mut binds = Vec::new();
        for (i, spec_mount) in ctx.spec.mounts().as_deref().unwrap_or(&[]).iter().enumerate() {
            let options = mounts::parse_options(spec_mount.options().as_deref().unwrap_or(&[]))?;
            let bind = options.bind || spec_mount.typ().as_deref() == Some("bind");
            let idmapped = ctx.idmapped_trees.get(i).is_some_and(Option::is_some);
            let source = spec_mount.source().as_deref().filter(|_| bind && !idmapped);
            binds.push(
                source
                    .map(|source| clone_tree(source, options.recursive).map_err(|e| Error::sys(format!("clone bind source {}", source.display()), e)))
                    .transpose()?,
            );
        }
        Ok(HostTrees { rootfs: Some((tree, dir.into())), binds })
    }
}

/// Sets up the rootfs and switches to it. Returns the state document the parent handed over for
/// createContainer/startContainer hooks (empty when there are none).
pub(super) fn prepare(ctx: &InitContext<'_>, mut trees: HostTrees) -> Result<String> {
    let spec = ctx.spec;
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Init("linux section is missing".into()))?;
    let root = if ctx.plan.mount_ns {
        bind_rootfs(ctx, linux, &mut trees)?
    } else {
        // The runtime's mount namespace, shared (crate::shared_mounts): its root keeps its
        // propagation, the rootfs is not bound onto itself, and the init chroots into it.
        std::fs::File::open(ctx.rootfs).map_err(|e| Error::io("open rootfs", ctx.rootfs, e))?
    };
    let root_fd = root.as_fd();

    let in_userns = ctx.plan.enters_user_namespace();
    let spec_mounts = spec.mounts().as_deref().unwrap_or(&[]);
    // (Left out where SELinux is not enabled: see process::check_lsm.)
    let mount_label = linux.mount_label().as_deref().filter(|_| super::process::selinux_enabled());
    for (i, spec_mount) in spec_mounts.iter().enumerate() {
        let tree = ctx.idmapped_trees.get(i).and_then(|t| t.as_ref()).or_else(|| trees.binds.get(i).and_then(|t| t.as_ref()));
        mount_one(root_fd, spec_mount, &ctx.cgroup_mounts, in_userns, tree.map(|t| t.as_fd()), mount_label)?;
        if !ctx.plan.mount_ns {
            // In the runtime's namespace a new mount joins the peer group of the copies made of
            // it elsewhere: private at once, so nothing mounted on it later propagates out, and
            // delete's unmount of it reaches its copies (crate::shared_mounts).
            let inside = spec_mount.destination().strip_prefix("/").unwrap_or(spec_mount.destination());
            let target = crate::sys::open_in_root(root_fd, inside, libc::O_PATH, 0, crate::sys::ResolveFlags::IN_ROOT)
                .map_err(|e| Error::io("open mount", spec_mount.destination(), e))?;
            make_private(target.as_fd()).map_err(|e| Error::io("make private", spec_mount.destination(), e))?;
            // Reported now, before a later mount can cover it: delete finds it by its id.
            let made = crate::shared_mounts::Made::of(target.as_fd()).map_err(|e| Error::io("statx", spec_mount.destination(), e))?;
            ctx.sync.send(&Message::Mounted(made))?;
        }
    }
    let dev_mount = spec_mounts.iter().find(|m| m.destination() == Path::new("/dev"));
    // A /dev bound from elsewhere (the host's, most often) is used as it is, as runc uses it: a
    // node made there, the spec's devices included, would be made in that directory for everyone
    // who sees it. Without a mount namespace, nodes go only on a /dev the spec mounts (it goes at
    // delete): the rootfs's own /dev stays as it is.
    let dev_is_bind = dev_mount.is_some_and(crate::spec::is_bind);
    if !dev_is_bind && (ctx.plan.mount_ns || dev_mount.is_some()) {
        devices::create_defaults(root_fd, in_userns)?;
        devices::create_spec_devices(root_fd, linux.devices().as_deref().unwrap_or(&[]), in_userns)?;
        devices::create_links(root_fd)?;
    }

    let hook_state = hooks_before_pivot(ctx)?;

    if !ctx.plan.mount_ns {
        // pivot_root would move the runtime's own root.
        fchdir(root.as_raw_fd()).map_err(|e| Error::sys("chdir to rootfs", e))?;
        nix::unistd::chroot(".").map_err(|e| Error::sys("chroot", e))?;
    } else if ctx.no_pivot {
        move_root(ctx.rootfs)?;
    } else {
        pivot(&root)?;
    }
    // (Refused without a mount namespace: it would be the runtime's root.)
    if let Some(name) = linux.rootfs_propagation().as_deref().filter(|n| !n.is_empty() && ctx.plan.mount_ns) {
        let flags = propagation_flag(name).ok_or_else(|| Error::Init(format!("unknown rootfsPropagation {name:?}")))?;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|e| Error::sys(format!("set rootfsPropagation {name}"), e))?;
    }
    chdir("/").map_err(|e| Error::sys("chdir /", e))?;
    Ok(hook_state)
}

/// In the container's own mount namespace: the root's propagation set, then the rootfs bound
/// onto itself (or the tree cloned earlier attached there), the mount pivot_root needs.
fn bind_rootfs(ctx: &InitContext<'_>, linux: &oci_spec::runtime::Linux, trees: &mut HostTrees) -> Result<std::fs::File> {
    // The root's propagation first, before any mount (runc's order): rslave by default, so nothing
    // mounted from here on propagates back to the host; rootfsPropagation rshared keeps the host's
    // shared mounts as peers, so that a bind of one with "rshared" propagates both ways. An
    // unbindable root could not be bound onto itself next (EINVAL): it stays rslave until
    // `prepare` makes it unbindable after pivot_root.
    let root_propagation = match linux.rootfs_propagation().as_deref().filter(|n| !n.is_empty()) {
        Some(name) => match propagation_flag(name).ok_or_else(|| Error::Init(format!("unknown rootfsPropagation {name:?}")))? {
            unbindable if unbindable.contains(MsFlags::MS_UNBINDABLE) => MsFlags::MS_SLAVE | MsFlags::MS_REC,
            flags => flags,
        },
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, root_propagation, None::<&str>).map_err(|e| Error::sys("set the root's propagation", e))?;
    if root_propagation.contains(MsFlags::MS_SHARED) {
        make_enclosing_mount_private(ctx.rootfs)?;
    }
    Ok(match trees.rootfs.take() {
        Some((tree, dir)) => {
            move_mount(tree.as_fd(), dir.as_fd()).map_err(|e| Error::sys(format!("attach rootfs {}", ctx.rootfs.display()), e))?;
            // The tree is now the mount on the rootfs: propagation as the root's, like a bind's.
            mount(None::<&str>, mounts::fd_path(tree.as_fd()).as_str(), None::<&str>, root_propagation, None::<&str>)
                .map_err(|e| Error::sys("set the rootfs's propagation", e))?;
            std::fs::File::from(tree)
        }
        None => {
            mount(Some(ctx.rootfs), ctx.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| Error::sys(format!("bind rootfs {}", ctx.rootfs.display()), e))?;
            std::fs::File::open(ctx.rootfs).map_err(|e| Error::io("open rootfs", ctx.rootfs, e))?
        }
    })
}

/// The mount holding `rootfs` (this mount namespace's copy) made private: the rootfs bind made on
/// it next then neither propagates to the host nor sits on a shared parent, which pivot_root
/// refuses. The enclosing mount is the nearest ancestor (the rootfs included) that is a mount point:
/// MS_PRIVATE on any other path fails with EINVAL.
fn make_enclosing_mount_private(rootfs: &Path) -> Result<()> {
    for dir in rootfs.ancestors() {
        match mount(None::<&str>, dir, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL) => continue,
            Err(e) => return Err(Error::sys(format!("make {} private", dir.display()), e)),
        }
    }
    Err(Error::Init(format!("no mount holds {}", rootfs.display())))
}

/// prestart/createRuntime run in the runtime's namespaces (by the parent); createContainer runs here,
/// in the container's namespaces but before pivot_root, as the spec orders.
fn hooks_before_pivot(ctx: &InitContext<'_>) -> Result<String> {
    let Some(hooks) = ctx.spec.hooks() else { return Ok(String::new()) };
    let any = [hooks.prestart(), hooks.create_runtime(), hooks.create_container(), hooks.start_container()]
        .iter()
        .any(|h| h.as_ref().is_some_and(|h| !h.is_empty()));
    if !any {
        return Ok(String::new());
    }
    // createContainer hooks run in all the container's namespaces, the cgroup one included.
    ctx.enter_cgroup()?;
    ctx.sync.send(&Message::RunHooks)?;
    let Message::HooksDone(state) = ctx.sync.expect("hooks", |m| matches!(m, Message::HooksDone(_)))? else {
        unreachable!("expect matched HooksDone")
    };
    crate::hooks::run_all(hooks.create_container().as_ref(), &state)?;
    Ok(state)
}

/// pivot_root(".", ".") then detach the old root from under us: no temporary directory in the image.
fn pivot(new_root: &std::fs::File) -> Result<()> {
    let old_root = std::fs::File::open("/").map_err(|e| Error::io("open", "/", e))?;
    fchdir(std::os::fd::AsRawFd::as_raw_fd(new_root)).map_err(|e| Error::sys("chdir to rootfs", e))?;
    pivot_root(".", ".").map_err(|e| Error::sys("pivot_root", e))?;
    fchdir(std::os::fd::AsRawFd::as_raw_fd(&old_root)).map_err(|e| Error::sys("chdir to old root", e))?;
    // The old root may be shared with the host: make it slave first so the unmount stays ours.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).map_err(|e| Error::sys("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("detach old root", e))?;
    Ok(())
}

fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(|e| Error::sys("chdir to rootfs", e))?;
    mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| Error::sys("move rootfs to /", e))?;
    nix::unistd::chroot(".").map_err(|e| Error::sys("chroot", e))?;
    Ok(())
}

pub(super) fn remount_root_readonly() -> Result<()> {
    let locked = mounts::locked_flags("/");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked, None::<&str>)
        .map_err(|e| Error::sys("remount / read-only", e))
}
