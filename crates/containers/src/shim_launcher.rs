//! Starting a container's `berth-shim`. The shim forks; the process we start exits once the
//! runtime has created the container (printing `ok <pid>` or the error), so berthd reaps it at once
//! and the supervising half belongs to nobody: it outlives berthd.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which binaries run containers.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub shim: PathBuf,
    /// Runtime names (`berth-oci`, `runc`, `crun`, …) to binaries.
    pub runtimes: std::collections::BTreeMap<String, PathBuf>,
    pub default_runtime: String,
}

pub struct Launch<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub shim_dir: &'a Path,
    pub runtime: &'a Path,
    pub runtime_root: &'a Path,
    pub tty: bool,
    pub stdin: bool,
    pub log_max_size: u64,
}

/// Starts the shim; returns the container's init pid once it is created.
pub fn launch(shim: &Path, launch: &Launch) -> Result<i32> {
    let mut command = Command::new(shim);
    command
        .arg("--id")
        .arg(launch.id)
        .arg("--bundle")
        .arg(launch.bundle)
        .arg("--dir")
        .arg(launch.shim_dir)
        .arg("--runtime")
        .arg(launch.runtime)
        .arg("--runtime-root")
        .arg(launch.runtime_root)
        .arg("--log-max-size")
        .arg(launch.log_max_size.to_string());
    if launch.tty {
        command.arg("--tty");
    }
    if launch.stdin {
        command.arg("--stdin");
    }
    let output = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().map_err(|e| Error::io("run", shim, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.trim().strip_prefix("ok ").and_then(|pid| pid.parse().ok()) {
        Some(pid) if output.status.success() => Ok(pid),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = stderr.trim().strip_prefix("berth-shim: ").unwrap_or(stderr.trim());
            Err(Error::Shim(format!("create container {}: {message}", crate::record::short(launch.id))))
        }
    }
}

/// `name` found next to the running executable (how the workspace and packages install berth),
/// else on PATH.
pub fn sibling_or_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from(name)
}
