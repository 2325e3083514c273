//! `exec`: run another process inside a live container. The exec'd process joins the init's
//! namespaces through one `setns(pidfd, …)`, its cgroup before it runs any code of its own, then a
//! second fork makes it a member of the joined pid namespace.

use crate::init::{self, process};
use crate::signal::open_init;
use crate::state::{Container, Status};
use crate::sync::{Message, SyncSocket};
use crate::{cgroup, seccomp_listener, Error, Result};
use oci_spec::runtime::Process;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Exec into a paused container too (the process then waits, frozen, for `resume`).
    pub ignore_paused: bool,
    /// A sub-cgroup of the container's to run in (`--cgroup [CONTROLLER:]PATH`, repeatable):
    /// controller (v1; "" for all) to a path below the container's cgroup.
    pub sub_cgroup: std::collections::BTreeMap<String, String>,
}

/// Namespace types a process can join, with their /proc/<pid>/ns names.
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", 0x80),
];

/// Starts the process and returns its host pid once execve succeeded. The caller becomes its
/// parent (child subreaper) so it can wait for it; `--detach` callers simply do not.
pub fn exec(root: &Path, id: &str, options: &ExecOptions) -> Result<i32> {
    let container = Container::load(root, id)?;
    let status = container.status();
    match status {
        Status::Created | Status::Running => {}
        Status::Paused if options.ignore_paused => {}
        Status::Paused => {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                action: "cannot exec in a paused container (use --ignore-paused to override)",
            })
        }
        _ => return Err(Error::WrongState { id: id.into(), status: status.to_string(), action: "cannot exec in a container that is not running" }),
    }
    crate::spec::validate_process(&options.process).map_err(|reason| Error::config("the exec'd process", reason))?;
    // A process without its own AppArmor profile or SELinux label gets the container's, as under
    // runc (a `--process` file written without them must not run unconfined).
    let mut exec_process = options.process.clone();
    if let Some(container_process) = container.config.process() {
        if exec_process.apparmor_profile().as_deref().is_none_or(str::is_empty) {
            exec_process.set_apparmor_profile(container_process.apparmor_profile().clone());
        }
        if exec_process.selinux_label().as_deref().is_none_or(str::is_empty) {
            exec_process.set_selinux_label(container_process.selinux_label().clone());
        }
    }
    process::check_lsm(Some(&exec_process))?;
    let pidfd = open_init(&container).ok_or_else(|| Error::WrongState { id: id.into(), status: "stopped".into(), action: "cannot exec" })?;
    let join = namespaces_to_join(container.pid)?;
    let container_root = open_container_root(container.pid, &pidfd)?;
    let linux = container.config.linux().as_ref();
    let seccomp_profile = linux.and_then(|l| l.seccomp().as_ref());
    let seccomp = seccomp_profile.map(|profile| init::compile_seccomp(profile, &crate::create::seccomp_cache(root))).transpose()?;
    let terminal = exec_process.terminal().unwrap_or(false);
    let console = match (&options.console_socket, terminal) {
        (Some(path), true) => Some(UnixStream::connect(path).map_err(|source| Error::ConsoleSocket { path: path.clone(), source })?),
        (None, true) => return Err(Error::Unsupported("process.terminal is true but no --console-socket was given".into())),
        _ => None,
    };
    let cgroup = cgroup::open(&container)?;
    let cgroup = if options.sub_cgroup.is_empty() { cgroup } else { cgroup.sub_cgroup(&options.sub_cgroup)? };
    // v1: the child moves itself, sparing the RCU grace period a move by us would wait for (see create).
    let self_join = cgroup.can_join_self();
    let (parent_sock, child_sock) = SyncSocket::pair()?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set child subreaper", e))?;

    // SAFETY: berth-oci is single-threaded; the child only runs `exec_child` and then _exit/execve.
    let intermediate = match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", e))? {
        nix::unistd::ForkResult::Child => {
            drop(parent_sock);
            let join_cgroup = self_join.then_some(&*cgroup);
            let child = ExecChild {
                sync: &child_sock,
                join_cgroup,
                pidfd: &pidfd,
                container_root: &container_root,
                join,
                process: &exec_process,
                linux,
                seccomp: seccomp.as_ref(),
                console: console.as_ref(),
                preserve_fds: options.preserve_fds,
            };
            let result = exec_child(&child);
            let error = match result {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = child_sock.send(&Message::Error(error.full_message()));
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(1) }
        }
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    drop(child_sock);
    drop(console);
    let kill_intermediate = || {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(intermediate), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(intermediate), None);
    };
    let moved = if self_join { Ok(()) } else { cgroup.add_process(intermediate).map_err(Error::from) };
    if let Err(e) = moved.and_then(|_| parent_sock.send(&Message::Go)) {
        kill_intermediate();
        return Err(e);
    }
    let mut pid = None;
    // The socket is close-on-exec: EOF after InitPid means execve succeeded.
    loop {
        let (message, fd) = parent_sock.recv_with_fd()?.map_or((None, None), |(m, fd)| (Some(m), fd));
        match message {
            Some(Message::SeccompFd) => {
                let handed = match (seccomp_profile, fd, pid) {
                    (Some(profile), Some(fd), Some(p)) => seccomp_listener::hand_over(profile, fd, p, &container.oci_state(Status::Running)),
                    _ => Err(Error::Init("protocol error: unexpected notify fd".into())),
                };
                if let Err(e) = handed {
                    if let Some(p) = pid {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
                        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
                    }
                    return Err(e);
                }
            }
            Some(Message::InitPid(p)) => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(intermediate), None);
                pid = Some(p);
            }
            Some(Message::Error(e)) => {
                if pid.is_none() {
                    kill_intermediate();
                }
                if let Some(p) = pid {
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
                }
                return Err(Error::Reported(e));
            }
            Some(other) => return Err(Error::Init(format!("protocol error: unexpected {other:?}"))),
            None => break,
        }
    }
    let pid = pid.ok_or_else(|| Error::Init("exec: the process exited before reporting its pid".into()))?;
    if let Some(pid_file) = &options.pid_file {
        crate::create::write_pid_file(pid_file, pid)?;
    }
    Ok(pid)
}

fn namespaces_to_join(init_pid: i32) -> Result<libc::c_int> {
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = std::fs::metadata(format!("/proc/{init_pid}/ns/{name}"));
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
        if let (Ok(theirs), Ok(ours)) = (theirs, ours) {
            if theirs.ino() != ours.ino() || theirs.dev() != ours.dev() {
                flags |= flag;
            }
        }
    }
    Ok(flags)
}

/// The init's root directory. Joining a mount namespace puts a process at the namespace's root,
/// which is the container's rootfs only when the init could pivot_root at the top of the tree:
/// after `--no-pivot`, or when the runtime itself runs chrooted (the test VM), it is the host's.
fn open_container_root(init_pid: i32, pidfd: &OwnedFd) -> Result<OwnedFd> {
    let path = format!("/proc/{init_pid}/root");
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty()).map_err(|e| Error::sys("open the container's root", e))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // The pidfd still names a live process, so the pid was not reused before the open.
    crate::sys::pidfd_send_signal(pidfd.as_fd(), 0).map_err(|e| Error::sys("check the container's init", e))?;
    Ok(fd)
}

/// What the forked child of `exec` works with, all prepared by the parent.
struct ExecChild<'a> {
    sync: &'a SyncSocket,
    /// The container's cgroup to move into by ourselves (v1), else the parent moved us.
    join_cgroup: Option<&'a dyn berth_cgroups::Cgroup>,
    pidfd: &'a OwnedFd,
    container_root: &'a OwnedFd,
    /// CLONE_NEW* flags of the namespaces to join through the pidfd.
    join: libc::c_int,
    process: &'a Process,
    /// The container's `linux` section (its personality is the exec's too).
    linux: Option<&'a oci_spec::runtime::Linux>,
    seccomp: Option<&'a init::SeccompProgram>,
    console: Option<&'a UnixStream>,
    preserve_fds: u32,
}

fn exec_child(child: &ExecChild<'_>) -> Result<std::convert::Infallible> {
    let sync = child.sync;
    sync.expect("go", |m| matches!(m, Message::Go))?;
    // Before joining: processes already in the container must never ptrace us or read our /proc.
    process::set_non_dumpable()?;
    // While the host's cgroup files are still in view; before any namespace is joined.
    if let Some(cgroup) = child.join_cgroup {
        cgroup.join_self()?;
    }
    crate::sys::setns_pidfd(child.pidfd.as_fd(), child.join).map_err(|e| Error::sys("join the container's namespaces", e))?;
    nix::unistd::fchdir(child.container_root.as_raw_fd()).map_err(|e| Error::sys("enter the container's root", e))?;
    nix::unistd::chroot(".").map_err(|e| Error::sys("chroot into the container's root", e))?;
    // SAFETY: single-threaded; the grandchild continues below, the intermediate only reports and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork into pid namespace", e))? {
        nix::unistd::ForkResult::Child => {}
        nix::unistd::ForkResult::Parent { child } => {
            sync.send(&Message::InitPid(child.as_raw()))?;
            // SAFETY: the intermediate's work is done.
            unsafe { libc::_exit(0) }
        }
    }
    let spec_process = child.process;
    process::apply_rlimits(spec_process)?;
    if let Some(console) = child.console {
        init::setup_console(console, spec_process.console_size(), spec_process.user().uid(), spec_process.user().gid(), false)?;
    }
    let env = spec_process.env().clone().unwrap_or_default();
    let executable = process::resolve_executable(spec_process, &env)?;
    process::apply_scheduling(spec_process)?;
    if let Some(linux) = child.linux {
        process::apply_personality(linux)?;
        process::apply_memory_policy(linux)?;
    }
    process::apply_lsm(spec_process)?;
    process::become_process(spec_process, child.seccomp.map(|program| (program, sync)), child.preserve_fds)?;
    process::execve(spec_process, &executable, &env)
}
