//! The state directory `<root>/<id>/` (0700): `state.json` (what `create` recorded) and `exec.fifo`
//! (present while the container is created but not started).

use crate::{proc, Error, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// runtime-spec version this runtime implements, reported in `state` and `features`.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `create` persists. The spec is kept whole: later commands (start's hooks, exec's seccomp and
/// defaults, delete's poststop hooks) must not depend on the bundle still being unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot: with the pid, the process's identity.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub config: Spec,
    /// Rootless without a delegated cgroup: the container has none (see `cgroup::create_for_spec`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_cgroup: bool,
    /// Its cgroup is a systemd scope (created with `--systemd-cgroup`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub systemd_cgroup: bool,
    /// Without a mount namespace of its own: the mounts its init made in the runtime's, which
    /// `delete` takes down (see `shared_mounts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_mounts: Option<crate::shared_mounts::SharedMounts>,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The runtime-spec state document (plus runc's extra fields) printed by `state` and given to hooks.
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        crate::id::validate_id(id)?;
        let dir = root.join(id);
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.into())),
            Err(e) => return Err(Error::io("read state", path, e)),
        };
        let mut container: Container = serde_json::from_str(&text).map_err(|e| Error::config(&path, format!("corrupt state: {e}")))?;
        container.dir = dir;
        Ok(container)
    }

    /// Writes state.json atomically (temp file + rename) so a crash never leaves half a state.
    pub fn save(&self) -> Result<()> {
        let tmp = self.dir.join(".state.json.tmp");
        let json = serde_json::to_vec(self).map_err(|e| Error::sys("encode state", std::io::Error::other(e)))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("write state", &tmp, e))?;
        file.write_all(&json).map_err(|e| Error::io("write state", &tmp, e))?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE)).map_err(|e| Error::io("rename state", &tmp, e))
    }

    /// Whether the recorded init still exists (and is not a zombie) as the same process.
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && proc::stat(self.pid).is_some_and(|s| s.start_time == self.start_time && s.state != 'Z' && s.state != 'X')
    }

    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        let paused = crate::cgroup::open(self).and_then(|cg| Ok(cg.freezer_state()?)).is_ok_and(|s| s == berth_cgroups::FreezerState::Frozen);
        if paused {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: OCI_VERSION,
            id: &self.id,
            status,
            pid: if status == Status::Stopped { 0 } else { self.pid },
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: self.config.annotations().as_ref(),
        }
    }

    pub fn state_json(&self) -> String {
        serde_json::to_string(&self.oci_state(self.status())).unwrap_or_default()
    }
}

/// Creates `<root>` (0700) and the container's directory; an existing directory means a duplicate id.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| Error::io("create state root", root, e))?;
    let dir = root.join(id);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Exists(id.into())),
        Err(e) => Err(Error::io("create state dir", dir, e)),
    }
}

/// Ids of every container under `root` (entries that are not valid ids are skipped).
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", root, e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| crate::id::validate_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}
