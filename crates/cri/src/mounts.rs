//! A ContainerConfig's mounts and devices as spec options, checked first: every path absolute and
//! free of `..`; propagation private, rslave or rshared; recursive read-only only read-only and
//! private (the kubelet's rule) and where the runtime makes it; idmapped (the kubelet's volumes of a
//! pod with a user namespace) with their one mapping; what berth cannot do (image volumes)
//! refused as UNIMPLEMENTED rather than half done. The pod's
//! /etc/hostname, /etc/hosts and /etc/resolv.conf are bound unless a mount of the config's already
//! targets them (the kubelet brings its own /etc/hosts).

use crate::proto::{ContainerConfig, IdMapping, Mount, MountPropagation};
use berth_containers::spec_opts::{self, SpecOpt};
use berth_containers::{IdRange, UserNamespace};
use std::path::{Path, PathBuf};
use tonic::Status;

/// An absolute path with no `..` component.
pub(crate) fn plain_absolute(path: &str) -> bool {
    path.starts_with('/') && !path.split('/').any(|c| c == "..") && !path.contains('\0')
}

/// What create cannot honour, said before anything is made.
pub(crate) fn check(config: &ContainerConfig, recursive_read_only: bool, user_namespace: Option<&UserNamespace>) -> Result<(), Status> {
    for mount in &config.mounts {
        if mount.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(Status::unimplemented(format!("image volume at {}: berth does not mount images as volumes yet", mount.container_path)));
        }
        if mount.recursive_read_only {
            if !recursive_read_only {
                return Err(Status::unimplemented(format!(
                    "recursive read-only mount at {}: the pod's runtime does not make them",
                    mount.container_path
                )));
            }
            if !mount.readonly || MountPropagation::try_from(mount.propagation) != Ok(MountPropagation::PropagationPrivate) {
                return Err(Status::invalid_argument(format!(
                    "recursive read-only mount at {}: it must be read-only and private",
                    mount.container_path
                )));
            }
        }
        // The pod's own mapping only (what the kubelet sends): another one would hand the pod
        // files as ids it does not have.
        if let Some(ids) = idmap(mount)? {
            if user_namespace != Some(&ids) {
                return Err(Status::invalid_argument(format!(
                    "idmapped mount at {}: only a pod with a user namespace has them, with the pod's own mapping",
                    mount.container_path
                )));
            }
        }
        if !plain_absolute(&mount.container_path) || !plain_absolute(&mount.host_path) {
            return Err(Status::invalid_argument(format!(
                "mount {:?} -> {:?}: both paths must be absolute, without '..'",
                mount.host_path, mount.container_path
            )));
        }
        if MountPropagation::try_from(mount.propagation).is_err() {
            return Err(Status::invalid_argument(format!("mount at {}: unknown propagation {}", mount.container_path, mount.propagation)));
        }
    }
    for device in &config.devices {
        if !plain_absolute(&device.container_path) || !plain_absolute(&device.host_path) {
            return Err(Status::invalid_argument(format!("device {:?}: both paths must be absolute, without '..'", device.host_path)));
        }
    }
    if !config.cdi_devices.is_empty() {
        return Err(Status::unimplemented("CDI devices are not supported by berth yet"));
    }
    Ok(())
}

/// The mapping a mount is idmapped with (the kubelet gives a pod's volumes the pod's own): one
/// uid and one gid range, each mapping root.
fn idmap(mount: &Mount) -> Result<Option<UserNamespace>, Status> {
    if mount.uid_mappings.is_empty() && mount.gid_mappings.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument(format!("idmapped mount at {}: one uid and one gid mapping of root", mount.container_path));
    let range = |ids: &[IdMapping]| match ids {
        [one] => Ok(IdRange { container_id: one.container_id, host_id: one.host_id, length: one.length }),
        _ => Err(bad()),
    };
    let ids = UserNamespace { uids: range(&mount.uid_mappings)?, gids: range(&mount.gid_mappings)? };
    ids.check().map_err(|_| bad())?;
    Ok(Some(ids))
}

/// The config's mounts and devices, then the pod's /etc files where the config has none
/// (writable, as containerd binds them, unless the root filesystem is read-only).
pub(crate) fn options(config: &ContainerConfig, pod_dir: &Path, readonly_rootfs: bool) -> Vec<SpecOpt> {
    let mut opts = Vec::new();
    for mount in &config.mounts {
        if mount.selinux_relabel {
            tracing::info!(path = %mount.container_path, "SELinux relabel asked for and ignored: berth has no SELinux support");
        }
        let propagation = match MountPropagation::try_from(mount.propagation) {
            Ok(MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        };
        let mode = if mount.readonly { "ro" } else { "rw" };
        let source = PathBuf::from(&mount.host_path);
        // As containerd does: a missing host directory is made (the kubelet's hostPath volumes
        // of type DirectoryOrCreate count on the runtime for it).
        if !source.exists() {
            if let Err(e) = std::fs::create_dir_all(&source) {
                tracing::warn!(path = %source.display(), "create a missing mount source: {e}");
            }
        }
        let mut options: Vec<String> = ["rbind", propagation, mode].map(String::from).to_vec();
        if mount.recursive_read_only {
            options.push("rro".into());
        }
        // Checked by [`check`] before.
        let ids = idmap(mount).ok().flatten();
        opts.push(spec_opts::with_idmapped_bind(source, mount.container_path.clone(), options, ids));
    }
    // The root's propagation follows the most open mount, as containerd sets it: a bidirectional
    // mount needs an rshared root (else the runtime's rslave root cuts it off from the host's peer
    // group before the bind is made), a host-to-container one an rslave root.
    let propagations: Vec<_> = config.mounts.iter().filter_map(|m| MountPropagation::try_from(m.propagation).ok()).collect();
    let root = if propagations.contains(&MountPropagation::PropagationBidirectional) {
        Some("rshared")
    } else if propagations.contains(&MountPropagation::PropagationHostToContainer) {
        Some("rslave")
    } else {
        None
    };
    if let Some(root) = root {
        opts.push(Box::new(move |spec: &mut oci_spec::runtime::Spec| {
            spec.linux_mut().get_or_insert_with(Default::default).set_rootfs_propagation(Some(root.to_string()));
            Ok(())
        }));
    }
    for device in &config.devices {
        let permissions = if device.permissions.is_empty() { "rwm".to_string() } else { device.permissions.clone() };
        opts.push(spec_opts::with_device(PathBuf::from(&device.host_path), device.container_path.clone(), permissions));
    }
    for name in ["hostname", "hosts", "resolv.conf"] {
        let target = format!("/etc/{name}");
        if !config.mounts.iter().any(|m| m.container_path.trim_end_matches('/') == target) {
            let mode = if readonly_rootfs { "ro" } else { "rw" };
            opts.push(spec_opts::with_bind(
                pod_dir.join(name),
                target,
                ["rbind", "rprivate", mode, "nosuid", "nodev", "noexec"].map(String::from).to_vec(),
            ));
        }
    }
    opts
}
