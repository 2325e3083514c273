//! A pod's namespaces without a process (no pause container): a short-lived thread of our own
//! unshares them, sets them up (the pod's hostname, loopback up), and bind-mounts its
//! `/proc/thread-self/ns/<kind>` onto a file under the pod's directory; the mount keeps the
//! namespace alive after the thread ends. The pod's containers join them by path. Unpinning
//! (unmounting) lets the kernel free each once no process is left in it.
//!
//! A dedicated thread, not one of tokio's pools: unshare changes the calling thread for good.

use crate::user_namespace::UserNamespace;
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
    /// A pod's own user namespace ([`crate::user_namespace`]), owner of its other namespaces.
    User,
}

impl PodNamespace {
    pub fn name(self) -> &'static str {
        match self {
            PodNamespace::Net => "net",
            PodNamespace::Ipc => "ipc",
            PodNamespace::Uts => "uts",
            PodNamespace::Pid => "pid",
            PodNamespace::User => "user",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            PodNamespace::Net => CloneFlags::CLONE_NEWNET,
            PodNamespace::Ipc => CloneFlags::CLONE_NEWIPC,
            PodNamespace::Uts => CloneFlags::CLONE_NEWUTS,
            PodNamespace::Pid => CloneFlags::CLONE_NEWPID,
            PodNamespace::User => CloneFlags::CLONE_NEWUSER,
        }
    }
}

/// Where the pin of `kind` lives in the pod directory `dir`.
pub fn pin_path(dir: &Path, kind: PodNamespace) -> PathBuf {
    dir.join("ns").join(kind.name())
}

/// New namespaces of `kinds`, pinned under `dir/ns/`; `hostname` set in a new UTS namespace.
/// With `user`, they are made in (and owned by) a new user namespace with its maps, pinned too.
/// On failure nothing stays pinned.
pub fn pin(dir: &Path, kinds: &[PodNamespace], hostname: &str, user: Option<&UserNamespace>) -> Result<()> {
    if kinds.is_empty() && user.is_none() {
        return Ok(());
    }
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(|e| Error::io("create", &ns_dir, e))?;
    let pinned = match user {
        None => in_a_thread(dir, kinds, hostname, pin_in_this_thread),
        Some(user) => pin_in_user_namespace(dir, kinds, hostname, user),
    };
    if pinned.is_err() {
        let _ = unpin(dir);
    }
    pinned
}

/// Runs `f` on a thread of its own, which the setns/unshare calls in it change for good.
fn in_a_thread(dir: &Path, kinds: &[PodNamespace], hostname: &str, f: fn(&Path, &[PodNamespace], &str) -> Result<()>) -> Result<()> {
    let (dir_owned, kinds_owned, hostname) = (dir.to_path_buf(), kinds.to_vec(), hostname.to_string());
    std::thread::Builder::new()
        .name("pod-namespaces".into())
        .spawn(move || f(&dir_owned, &kinds_owned, &hostname))
        .map_err(|e| Error::io("start a thread for", dir, e))?
        .join()
        .map_err(|_| Error::Invalid("the namespace thread panicked".into()))?
}

/// A child cloned into the user namespace and `kinds` at once holds them while they are pinned;
/// then a thread of ours enters the UTS and network ones (root on the host may: it owns every
/// user namespace) to set the hostname and bring loopback up.
fn pin_in_user_namespace(dir: &Path, kinds: &[PodNamespace], hostname: &str, user: &UserNamespace) -> Result<()> {
    let flags = kinds.iter().fold(CloneFlags::empty(), |all, k| all | k.flag());
    crate::user_namespace::with_new_namespaces(user, flags.bits(), |pid| {
        for kind in kinds.iter().chain([&PodNamespace::User]) {
            bind_pin(&format!("/proc/{pid}/ns/{}", kind.name()), &pin_path(dir, *kind))?;
        }
        Ok(())
    })?;
    in_a_thread(dir, kinds, hostname, configure_pinned)
}

fn configure_pinned(dir: &Path, kinds: &[PodNamespace], hostname: &str) -> Result<()> {
    for kind in [PodNamespace::Uts, PodNamespace::Net].into_iter().filter(|k| kinds.contains(k)) {
        let pin = pin_path(dir, kind);
        let file = std::fs::File::open(&pin).map_err(|e| Error::io("open", &pin, e))?;
        nix::sched::setns(file, kind.flag()).map_err(|e| Error::io("enter the namespace pinned at", &pin, e.into()))?;
        set_up(dir, kind, hostname)?;
    }
    Ok(())
}

/// What a fresh namespace of ours needs: the pod's hostname, loopback up.
fn set_up(dir: &Path, kind: PodNamespace, hostname: &str) -> Result<()> {
    match kind {
        PodNamespace::Uts => nix::unistd::sethostname(hostname).map_err(|e| Error::Invalid(format!("hostname {hostname:?}: {e}"))),
        PodNamespace::Net => berth_sys::loopback_up().map_err(|e| Error::io("bring up loopback for", dir, e)),
        _ => Ok(()),
    }
}

/// Bind-mounts the namespace file `source` (a /proc path) onto a new file at `pin`.
fn bind_pin(source: &str, pin: &Path) -> Result<()> {
    std::fs::File::create(pin).map_err(|e| Error::io("create", pin, e))?;
    nix::mount::mount(Some(source), pin, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| Error::io("pin a namespace at", pin, e.into()))
}

fn pin_in_this_thread(dir: &Path, kinds: &[PodNamespace], hostname: &str) -> Result<()> {
    let flags = kinds.iter().fold(CloneFlags::empty(), |all, k| all | k.flag());
    nix::sched::unshare(flags).map_err(|e| Error::io("unshare the pod's namespaces in", dir, e.into()))?;
    for kind in kinds {
        set_up(dir, *kind, hostname)?;
        bind_pin(&format!("/proc/thread-self/ns/{}", kind.name()), &pin_path(dir, *kind))?;
    }
    Ok(())
}

/// Pins namespace `kind` of the container `owner`'s process `pid` at `dir/ns/`, if that process
/// is still the container's: one handle on `/proc/<pid>` both checks its cgroup (whose path ends
/// with the container's id) and opens the namespace, so a pid reused in between is refused,
/// never joined. On failure nothing stays pinned.
pub fn pin_of_container(dir: &Path, kind: PodNamespace, pid: i32, owner: &str) -> Result<()> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let gone = || Error::WrongState(format!("container {}: its process {pid} has exited", crate::record::short(owner)));
    let process = std::fs::File::open(format!("/proc/{pid}")).map_err(|_| gone())?;
    let through = |name: &str| format!("/proc/self/fd/{}/{name}", process.as_raw_fd());
    let mut cgroups = String::new();
    std::fs::File::open(through("cgroup")).and_then(|f| f.take(64 << 10).read_to_string(&mut cgroups)).map_err(|_| gone())?;
    if !cgroups.lines().any(|line| line.rsplit('/').next() == Some(owner)) {
        return Err(gone());
    }
    let namespace = std::fs::File::open(through(&format!("ns/{}", kind.name()))).map_err(|_| gone())?;
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(|e| Error::io("create", &ns_dir, e))?;
    let pinned = bind_pin(&format!("/proc/self/fd/{}", namespace.as_raw_fd()), &pin_path(dir, kind));
    if pinned.is_err() {
        let _ = unpin(dir);
    }
    pinned
}

/// Starts berth's infra process (`berth-shim --infra`) as the init of a new PID namespace, pins
/// that namespace at `dir/ns/pid` and keeps its pid in `dir/infra.pid`. With `userns` the infra
/// enters the pod's user namespace (pinned at `dir/ns/user`) first, so that one owns the PID
/// namespace.
pub fn start_infra(dir: &Path, shim: &Path, userns: bool) -> Result<i32> {
    let mut command = std::process::Command::new(shim);
    command.arg("--infra").arg(dir);
    if userns {
        command.arg("--userns");
    }
    let output = command.output().map_err(|e| Error::io("run", shim, e))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: i32 = match stdout.trim().strip_prefix("ok ").and_then(|p| p.parse().ok()) {
        Some(pid) if output.status.success() => pid,
        _ => return Err(Error::Shim(format!("the pod's infra process did not start: {}", String::from_utf8_lossy(&output.stderr).trim()))),
    };
    let pinned = (|| {
        let ns_dir = dir.join("ns");
        std::fs::create_dir_all(&ns_dir).map_err(|e| Error::io("create", &ns_dir, e))?;
        bind_pin(&format!("/proc/{pid}/ns/pid"), &pin_path(dir, PodNamespace::Pid))?;
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
