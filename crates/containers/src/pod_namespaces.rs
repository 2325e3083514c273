//! A pod's namespaces without a process (no pause container): a short-lived thread of our own
//! unshares them, sets them up (the pod's hostname, loopback up), and bind-mounts its
//! `/proc/thread-self/ns/<kind>` onto a file under the pod's directory; the mount keeps the
//! namespace alive after the thread ends. The pod's containers join them by path. Unpinning
//! (unmounting) lets the kernel free each once no process is left in it.
//!
//! A dedicated thread, not one of tokio's pools: unshare changes the calling thread for good.

use crate::{Error, Result};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodNamespace {
    Net,
    Ipc,
    Uts,
    /// Shared by the pod's containers only with the pod's infra process as its init.
    Pid,
}

impl PodNamespace {
    pub fn name(self) -> &'static str {
        match self {
            PodNamespace::Net => "net",
            PodNamespace::Ipc => "ipc",
            PodNamespace::Uts => "uts",
            PodNamespace::Pid => "pid",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            PodNamespace::Net => CloneFlags::CLONE_NEWNET,
            PodNamespace::Ipc => CloneFlags::CLONE_NEWIPC,
            PodNamespace::Uts => CloneFlags::CLONE_NEWUTS,
            PodNamespace::Pid => CloneFlags::CLONE_NEWPID,
        }
    }
}

/// Where the pin of `kind` lives in the pod directory `dir`.
pub fn pin_path(dir: &Path, kind: PodNamespace) -> PathBuf {
    dir.join("ns").join(kind.name())
}

/// New namespaces of `kinds`, pinned under `dir/ns/`; `hostname` set in a new UTS namespace.
/// On failure nothing stays pinned.
pub fn pin(dir: &Path, kinds: &[PodNamespace], hostname: &str) -> Result<()> {
    if kinds.is_empty() {
        return Ok(());
    }
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(|e| Error::io("create", &ns_dir, e))?;
    let (dir_owned, kinds_owned, hostname) = (dir.to_path_buf(), kinds.to_vec(), hostname.to_string());
    let pinned = std::thread::Builder::new()
        .name("pod-namespaces".into())
        .spawn(move || pin_in_this_thread(&dir_owned, &kinds_owned, &hostname))
        .map_err(|e| Error::io("start a thread for", dir, e))?
        .join()
        .map_err(|_| Error::Invalid("the namespace thread panicked".into()))?;
    if pinned.is_err() {
        let _ = unpin(dir);
    }
    pinned
}

fn pin_in_this_thread(dir: &Path, kinds: &[PodNamespace], hostname: &str) -> Result<()> {
    let flags = kinds.iter().fold(CloneFlags::empty(), |all, k| all | k.flag());
    nix::sched::unshare(flags).map_err(|e| Error::io("unshare the pod's namespaces in", dir, e.into()))?;
    if kinds.contains(&PodNamespace::Uts) {
        nix::unistd::sethostname(hostname).map_err(|e| Error::Invalid(format!("hostname {hostname:?}: {e}")))?;
    }
    if kinds.contains(&PodNamespace::Net) {
        berth_sys::loopback_up().map_err(|e| Error::io("bring up loopback for", dir, e))?;
    }
    for kind in kinds {
        let pin = pin_path(dir, *kind);
        std::fs::File::create(&pin).map_err(|e| Error::io("create", &pin, e))?;
        let source = format!("/proc/thread-self/ns/{}", kind.name());
        nix::mount::mount(Some(source.as_str()), &pin, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::io("pin a namespace at", &pin, e.into()))?;
    }
    Ok(())
}

/// Starts berth's infra process (`berth-shim --infra`) as the init of a new PID namespace, pins
/// that namespace at `dir/ns/pid` and keeps its pid in `dir/infra.pid`.
pub fn start_infra(dir: &Path, shim: &Path) -> Result<i32> {
    let output = std::process::Command::new(shim).arg("--infra").arg(dir).output().map_err(|e| Error::io("run", shim, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: i32 = match stdout.trim().strip_prefix("ok ").and_then(|p| p.parse().ok()) {
        Some(pid) if output.status.success() => pid,
        _ => return Err(Error::Shim(format!("the pod's infra process did not start: {}", String::from_utf8_lossy(&output.stderr).trim()))),
    };
    let pinned = (|| {
        let ns_dir = dir.join("ns");
        std::fs::create_dir_all(&ns_dir).map_err(|e| Error::io("create", &ns_dir, e))?;
        let pin = pin_path(dir, PodNamespace::Pid);
        std::fs::File::create(&pin).map_err(|e| Error::io("create", &pin, e))?;
        let source = format!("/proc/{pid}/ns/pid");
        nix::mount::mount(Some(source.as_str()), &pin, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::io("pin the pod's PID namespace at", &pin, e.into()))?;
        std::fs::write(dir.join("infra.pid"), pid.to_string()).map_err(|e| Error::io("write", &dir.join("infra.pid"), e))
    })();
    if let Err(e) = pinned {
        // SAFETY: kill takes a pid and a signal; the pid is the infra process just started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(e);
    }
    Ok(pid)
}

/// The pod's infra process, if it still runs (its PID namespace is the one pinned: a pid reused
/// by anything else is not it).
pub fn infra_pid(dir: &Path) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let pid: i32 = std::fs::read_to_string(dir.join("infra.pid")).ok()?.trim().parse().ok()?;
    let pinned = std::fs::metadata(pin_path(dir, PodNamespace::Pid)).ok()?;
    let running = std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?;
    // Its own namespace, not merely one it shares with its children: it is the init there.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let init_there = status.lines().find_map(|l| l.strip_prefix("NSpid:")).is_some_and(|ids| ids.split_whitespace().last() == Some("1"));
    (pinned.dev() == running.dev() && pinned.ino() == running.ino() && init_there).then_some(pid)
}

/// Kills the pod's infra process (and with it whatever is left in its PID namespace) and waits,
/// a bounded time, until it is gone; idempotent.
pub fn stop_infra(dir: &Path) -> Result<()> {
    if let Some(pid) = infra_pid(dir) {
        // SAFETY: kill takes a pid and a signal; infra_pid checked the pid is this pod's init.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Dead once it is a zombie: whoever adopted it (the machine's init) reaps it in its time.
        let zombie = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit(')').next().is_none_or(|rest| matches!(rest.trim_start().chars().next(), Some('Z' | 'X') | None))
        };
        for _ in 0..500 {
            if infra_pid(dir).is_none() || zombie() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    let _ = std::fs::remove_file(dir.join("infra.pid"));
    Ok(())
}

/// Unmounts and removes every pin under `dir/ns/`; idempotent.
pub fn unpin(dir: &Path) -> Result<()> {
    let ns_dir = dir.join("ns");
    let Ok(entries) = std::fs::read_dir(&ns_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let pin = entry.path();
        match nix::mount::umount2(&pin, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::io("unpin", &pin, e.into())),
        }
        std::fs::remove_file(&pin).map_err(|e| Error::io("remove", &pin, e))?;
    }
    std::fs::remove_dir(&ns_dir).map_err(|e| Error::io("remove", &ns_dir, e))
}

/// Whether `kind` is pinned at `dir` (its file is an nsfs mount, not the empty file under it).
pub fn is_pinned(dir: &Path, kind: PodNamespace) -> bool {
    is_mounted_over(&pin_path(dir, kind))
}

/// Whether something is mounted on `path` (a pin is a namespace bind-mounted on a file: its
/// device differs from its directory's).
pub fn is_mounted_over(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else { return false };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(pinned), Ok(parent)) => pinned.dev() != parent.dev(),
        _ => false,
    }
}
