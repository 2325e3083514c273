//! Starting a `berth-shim`. The shim forks; the process we start exits once the shim listens
//! (printing `ok <shim pid>` or the error), so berthd reaps it at once and the supervising half
//! belongs to nobody: it outlives berthd. Containers are then created through its socket.

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

/// `berth-shim` for the shim directory `dir`, with its runtime.
fn command(shim: &Path, dir: &Path, runtime: &Path, runtime_root: &Path) -> Command {
    let mut command = Command::new(shim);
    command.arg("--dir").arg(dir).arg("--runtime").arg(runtime).arg("--runtime-root").arg(runtime_root).stdin(Stdio::null());
    command
}

/// Starts a shim in `dir` (made by the caller, 0700); returns the shim's pid once it listens.
pub fn launch(shim: &Path, dir: &Path, runtime: &Path, runtime_root: &Path) -> Result<i32> {
    let output =
        command(shim, dir, runtime, runtime_root).stdout(Stdio::piped()).stderr(Stdio::piped()).output().map_err(|e| Error::io("run", shim, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.trim().strip_prefix("ok ").and_then(|pid| pid.parse().ok()) {
        Some(pid) if output.status.success() => Ok(pid),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(Error::Shim(format!("start a shim: {}", stderr.trim().strip_prefix("berth-shim: ").unwrap_or(stderr.trim()))))
        }
    }
}

/// For a shim that died: the shim binary has the runtime delete what is left of container `id`.
pub fn cleanup(shim: &Path, dir: &Path, runtime: &Path, runtime_root: &Path, id: &str) -> Result<()> {
    let output = command(shim, dir, runtime, runtime_root).arg("--cleanup").arg(id).output().map_err(|e| Error::io("run", shim, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Shim(format!("clean up container {}: {}", crate::record::short(id), String::from_utf8_lossy(&output.stderr).trim())))
}

/// The pid of the live shim of `dir`: its pid file names a process whose command line names the
/// directory (a zombie or a reused pid is not our shim).
pub fn shim_pid(dir: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(dir.join(berth_shim::protocol::SHIM_PID)).ok()?.trim().parse::<i32>().ok()?;
    let needle = dir.as_os_str().as_encoded_bytes();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline.windows(needle.len()).any(|w| w == needle).then_some(pid)
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
