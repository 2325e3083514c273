//! cgroup drivers for berth behind one small interface ([`Cgroup`]).
//!
//! This crate owns everything under the cgroup filesystems: finding the hierarchies, creating and
//! removing a container's cgroup, writing runtime-spec `linux.resources`, freezing, listing and
//! reading statistics. It never forks, never touches namespaces and never reads config.json: callers
//! hand it an `oci_spec` resources value and a `cgroupsPath`.
//!
//! Two drivers: v1 (one directory per controller hierarchy; this host is v1 hybrid) and v2 (one
//! directory in the unified hierarchy, devices by eBPF). Hybrid hosts use v1. Either may be driven
//! through systemd ([`Driver::Systemd`], `systemd`): the cgroup is then a scope systemd makes.

mod devices;
mod error;
mod hierarchy;
mod memory_check;
mod path;
mod rdma;
mod stats;
pub mod systemd;
mod v1;
mod v2;

pub use error::{Error, Result};
pub use hierarchy::Hierarchy;
pub use stats::Stats;

use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};

/// Writes `value` to the cgroup file `dir/file`; the kernel reports bad values as EINVAL, which
/// the error keeps. The file is not created: cgroupfs would refuse that with EACCES, and a setting
/// this kernel or hierarchy lacks (blkio.weight under another I/O scheduler, say) would read as
/// "Permission denied".
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let path = dir.join(file);
    let mut handle = match std::fs::OpenOptions::new().write(true).open(&path) {
        // (A cgroup that is gone altogether keeps the plain error.)
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() => {
            return Err(Error::Unsupported(format!("{} does not exist: this kernel or hierarchy has no such setting", path.display())))
        }
        other => other.map_err(|e| Error::io("open", path.clone(), e))?,
    };
    handle.write_all(value.as_bytes()).map_err(|e| Error::io("write", path, e))
}

/// Freezer state of a cgroup as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    Frozen,
}

/// One container's cgroup, whatever the driver.
pub trait Cgroup {
    /// Creates the cgroup directories (parents included); idempotent.
    fn create(&self) -> Result<()>;
    /// Writes every resource that is set; unset ones keep their current value. The device rules
    /// too: `devices` unset leaves them as they are; set, even empty, it replaces them with the
    /// deny-all, its rules and the defaults (see `devices`). A create sets them; an update that
    /// leaves them unset cannot take a privileged container's devices away.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// Moves a process (all its threads) into the cgroup.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Whether [`Cgroup::join_self`] works with this driver (v1).
    fn can_join_self(&self) -> bool;
    /// Moves the calling thread into the cgroup (v1: "0" to each hierarchy's `tasks`). The kernel
    /// moves a thread that moves itself without the RCU grace period (~10 ms) that any move by
    /// another process waits for. For single-threaded callers only, so the thread is the process.
    fn join_self(&self) -> Result<()>;
    /// Processes in the cgroup, recursively.
    fn processes(&self) -> Result<Vec<i32>>;
    fn freeze(&self, state: FreezerState) -> Result<()>;
    fn freezer_state(&self) -> Result<FreezerState>;
    fn stats(&self) -> Result<Stats>;
    /// SIGKILLs every process in the cgroup at once, forks racing it included (`cgroup.kill`, v2 on
    /// Linux 5.14+). Returns false where the kernel cannot: the caller then signals pid by pid.
    fn kill_all(&self) -> Result<bool>;
    /// A cgroup v2 directory to clone the init straight into (`CLONE_INTO_CGROUP`); None on v1.
    fn clone_target(&self) -> Option<std::os::fd::OwnedFd>;
    /// How many processes the kernel's OOM killer has killed in this cgroup so far.
    fn oom_kills(&self) -> Result<u64>;
    /// Removes the cgroup, waiting a bounded time for exiting processes to leave it.
    fn remove(&self) -> Result<()>;
    /// Whether any of this cgroup's directories exist.
    fn exists(&self) -> bool;
    /// What a container's `cgroup` mount shows: (subdirectory name, this cgroup's host directory).
    fn mount_sources(&self) -> Vec<(String, std::path::PathBuf)>;
    /// A cgroup below this one, for a process exec'd into it (runc's `exec --cgroup`): `paths`
    /// maps a controller (v1) or "" (every other controller; v2's one hierarchy) to a path
    /// relative to this cgroup, which must exist already.
    fn sub_cgroup(&self, paths: &std::collections::BTreeMap<String, String>) -> Result<Box<dyn Cgroup>>;
}

/// `path` below `dir`, checked: relative, no `..`, and an existing directory.
pub(crate) fn existing_below(dir: &std::path::Path, path: &str) -> Result<std::path::PathBuf> {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|c| c == "..") {
        return Err(Error::InvalidSubCgroup(path.to_string(), "a sub-cgroup is a path below the container's cgroup, without '..'"));
    }
    let below = dir.join(relative);
    if !below.is_dir() {
        return Err(Error::InvalidSubCgroup(below.display().to_string(), "no such sub-cgroup (exec --cgroup joins one that exists)"));
    }
    Ok(below)
}

/// Opens (without creating) the cgroup at `cgroups_path` in a given hierarchy (tests, and callers
/// that pick a hierarchy themselves).
pub fn open_in(hierarchy: Hierarchy, cgroups_path: Option<&Path>, id: &str) -> Result<Box<dyn Cgroup>> {
    let relative = path::validate(cgroups_path, id)?;
    match hierarchy {
        Hierarchy::V1(mounts) => Ok(Box::new(v1::V1Cgroup::new(mounts, &relative)?)),
        Hierarchy::V2(root) => Ok(Box::new(v2::V2Cgroup::new(root, &relative)?)),
    }
}

/// Who makes and owns a container's cgroup: berth, through the cgroup filesystem, or systemd
/// (runc's `--systemd-cgroup`, with its `slice:prefix:name` cgroupsPath).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Driver {
    #[default]
    Cgroupfs,
    Systemd,
}

/// Opens the cgroup at `cgroups_path` for container `id` with `driver`, on this host.
pub fn open_with(driver: Driver, cgroups_path: Option<&Path>, id: &str) -> Result<Box<dyn Cgroup>> {
    match driver {
        Driver::Cgroupfs => open(cgroups_path, id),
        Driver::Systemd => {
            let unit = systemd::parse(cgroups_path, id)?;
            let hierarchy = Hierarchy::detect()?;
            let v2 = matches!(hierarchy, Hierarchy::V2(_));
            let (fs, scope_dir): (Box<dyn Cgroup>, PathBuf) = match hierarchy {
                Hierarchy::V1(mounts) => {
                    // systemd on v1 (and hybrid) keeps its own units in its name=systemd hierarchy.
                    let own = mounts
                        .get("systemd")
                        .ok_or_else(|| Error::Systemd("no name=systemd hierarchy is mounted: systemd does not manage this host's v1 cgroups".into()))?
                        .join(&unit.path.components);
                    (Box::new(v1::V1Cgroup::new(mounts, &unit.path)?), own)
                }
                Hierarchy::V2(root) => (Box::new(v2::V2Cgroup::new(root.clone(), &unit.path)?), root.join(&unit.path.components)),
            };
            Ok(Box::new(systemd::SystemdCgroup::new(unit, fs, scope_dir, v2)))
        }
    }
}

/// Opens (without creating) the cgroup at `cgroups_path` for the container `id` on this host.
///
/// `cgroups_path` follows the runtime-spec: absolute paths are relative to each hierarchy's root,
/// relative paths are relative to the calling process's own cgroup. An empty path means `/<id>`.
pub fn open(cgroups_path: Option<&Path>, id: &str) -> Result<Box<dyn Cgroup>> {
    open_in(Hierarchy::detect()?, cgroups_path, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_the_kernel_lacks_is_named_as_missing_and_not_created() {
        let dir = std::env::temp_dir().join(format!("berth-cgroups-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = write(&dir, "blkio.weight", "500");
        let created = dir.join("blkio.weight").exists();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(&missing, Err(Error::Unsupported(m)) if m.contains("blkio.weight does not exist")), "{missing:?}");
        assert!(!created);
    }
}
