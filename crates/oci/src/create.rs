//! `create`: validate the bundle, make the state dir and cgroup, clone the init, serve its requests
//! (id maps, hooks) until it reports ready, then record the state. On any failure everything made so
//! far is undone: no half-created container is ever left behind.

use crate::init::{self, InitContext};
use crate::namespaces::{self, Plan};
use crate::shared_mounts::SharedMounts;
use crate::spec::Bundle;
use crate::state::{self, Container, Status, EXEC_FIFO};
use crate::sync::{Message, SyncSocket};
use crate::sys::{clone3, CloneResult};
use crate::{cgroup, hooks, idmap, proc, seccomp_listener, Error, Result};
use berth_cgroups::Cgroup;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub id: String,
    /// The container's cgroup is a systemd scope (`--systemd-cgroup`), recorded for the commands
    /// that follow.
    pub systemd_cgroup: bool,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// The caller will wait for the init itself (`run` in the foreground): keep the init reapable by
    /// the caller even when a second fork is needed.
    pub foreground: bool,
}

/// Where compiled seccomp programs are kept: in the state root, under a name no container id can
/// have ('@'), so `list` never mistakes it for a container.
pub(crate) fn seccomp_cache(root: &Path) -> PathBuf {
    root.join("@seccomp")
}

/// Undoes a partial create when dropped before `disarm`.
struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<Box<dyn Cgroup>>,
    child: Option<i32>,
    /// Without a mount namespace: the rootfs, and what was mounted beneath it before.
    shared_mounts: Option<(PathBuf, SharedMounts)>,
}

impl Cleanup {
    fn disarm(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.child = None;
        self.shared_mounts = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.child {
            // A pidfd sees the exit of an init that is not our child (one that forked again).
            let pidfd = crate::sys::pidfd_open(pid).ok();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            if let Some(pidfd) = &pidfd {
                let _ = crate::signal::wait_exited(pidfd.as_fd(), 10_000);
            }
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
        // Once the init is gone: it cannot mount anything more.
        if let Some((rootfs, shared)) = &self.shared_mounts {
            let _ = shared.take_down(rootfs, true);
        }
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.remove();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn create(root: &Path, options: &CreateOptions) -> Result<Container> {
    crate::id::validate_id(&options.id)?;
    let bundle = Bundle::load(&options.bundle)?;
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref().ok_or_else(|| Error::config(&bundle.dir, "linux section is missing"))?;
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    if terminal && options.console_socket.is_none() {
        return Err(Error::Unsupported("process.terminal is true but no --console-socket was given".into()));
    }
    init::process::check_lsm(spec.process().as_ref())?;
    let plan = Plan::new(linux)?;
    let seccomp = linux.seccomp().as_ref().map(|profile| init::compile_seccomp(profile, &seccomp_cache(root))).transpose()?;
    // Connect before creating anything: a console socket nobody listens on is the caller's mistake.
    let console = match (&options.console_socket, terminal) {
        (Some(path), true) => Some(UnixStream::connect(path).map_err(|source| Error::ConsoleSocket { path: path.clone(), source })?),
        _ => None,
    };

    let dir = state::create_dir(root, &options.id)?;
    let mut cleanup = Cleanup { dir: Some(dir.clone()), cgroup: None, child: None, shared_mounts: None };
    let fifo_path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| Error::sys("mkfifo exec.fifo", e))?;
    // The init opens it for writing after it became the spec's user (any uid), through its O_PATH
    // fd: only the state directory (0700) keeps others away, as with runc's 0622 fifo.
    std::fs::set_permissions(&fifo_path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io("chmod exec.fifo", &fifo_path, e))?;
    if plan.new_user {
        // The init opens the fifo as the container's root, which is another host uid.
        let uid = namespaces::host_id(linux.uid_mappings().as_ref(), 0);
        let gid = namespaces::host_id(linux.gid_mappings().as_ref(), 0);
        nix::unistd::chown(&fifo_path, uid.map(Into::into), gid.map(Into::into)).map_err(|e| Error::sys("chown exec.fifo", e))?;
    }
    let exec_fifo = open_path(&fifo_path)?;

    let driver = if options.systemd_cgroup { berth_cgroups::Driver::Systemd } else { berth_cgroups::Driver::Cgroupfs };
    let (cgroup, cgroup_origin) = cgroup::create_for_spec(spec, &options.id, driver)?;
    if cgroup_origin == cgroup::Origin::Created {
        cleanup.cgroup = Some(cgroup::for_spec(spec, &options.id, driver)?);
    }
    cgroup.apply(&cgroup::resources_with_spec_devices(linux))?;
    let cgroup_mounts = cgroup.mount_sources();
    let idmapped_trees = idmap::prepare(spec.mounts().as_deref().unwrap_or(&[]), &bundle.mount_id_mappings, linux)?;

    if !plan.mount_ns {
        // The init's mounts would land on the runtime's own tree.
        if bundle.rootfs == Path::new("/") && spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(Error::config(&bundle.dir, "mounts without a mount namespace need a rootfs other than /"));
        }
        let destinations: Vec<PathBuf> = spec.mounts().iter().flatten().map(|m| m.destination().clone()).collect();
        if !destinations.is_empty() {
            cleanup.shared_mounts = Some((bundle.rootfs.clone(), SharedMounts::record(&bundle.rootfs, destinations)?));
        }
    }

    let (parent_sock, child_sock) = SyncSocket::pair()?;
    for path in &plan.parent_joins {
        namespaces::setns_path(path, libc::CLONE_NEWPID)?;
    }
    if plan.parent_new_time {
        namespaces::unshare(0x80)?;
        namespaces::write_time_offsets(linux)?;
    }
    if options.foreground && plan.fork {
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set child subreaper", e))?;
    }

    // On v1 the init moves itself into its cgroup: the kernel spares a thread that moves itself the
    // RCU grace period (~10 ms here) that a move by the parent waits for. Not from inside a user
    // namespace, whose root does not own the host's cgroup files.
    let self_join = cgroup.can_join_self() && !plan.enters_user_namespace();
    let cgroup_dir = cgroup.clone_target();
    let (cloned, born_in_cgroup) = clone3(plan.clone_flags as u64, cgroup_dir.as_ref().map(|fd| fd.as_fd())).map_err(|e| Error::sys("clone3", e))?;
    drop(cgroup_dir);
    let pid = match cloned {
        CloneResult::Child => {
            drop(parent_sock);
            let ctx = InitContext {
                id: &options.id,
                spec,
                rootfs: &bundle.rootfs,
                plan: &plan,
                sync: &child_sock,
                exec_fifo: &exec_fifo,
                console: console.as_ref(),
                preserve_fds: options.preserve_fds,
                no_pivot: options.no_pivot,
                no_new_keyring: options.no_new_keyring,
                cgroup_mounts,
                idmapped_trees: &idmapped_trees,
                seccomp: seccomp.as_ref(),
                join_cgroup: self_join.then_some(&*cgroup),
                in_cgroup: std::cell::Cell::new(false),
                cgroup_ns_done: std::cell::Cell::new(false),
            };
            init::child_main(&ctx)
        }
        CloneResult::Parent { pid } => pid,
    };
    drop(child_sock);
    drop(console);
    drop(idmapped_trees);
    cleanup.child = Some(pid);

    // Otherwise the parent moves it, which waits for an RCU grace period longer than the init's own
    // mount setup, which therefore runs meanwhile. The init waits for `InCgroup` before its cgroup
    // namespace, its hooks and `Ready`, so no code of the container's runs outside. An init that
    // forks again must be moved first, or its child would be born outside. So must one whose
    // cgroup does not exist until it holds a process (systemd's scope): the init's mounts bind
    // that directory.
    let moved_by_parent = !born_in_cgroup && !self_join;
    let join_cgroup_early = moved_by_parent && (plan.fork || !cgroup.exists());
    if join_cgroup_early {
        cgroup.add_process(pid)?;
    }
    if plan.clone_flags & libc::CLONE_NEWUSER != 0 {
        namespaces::write_id_maps(pid, linux)?;
    }
    parent_sock.send(&Message::Go)?;
    if moved_by_parent && !join_cgroup_early {
        cgroup.add_process(pid)?;
    }
    if !self_join {
        // An init that already failed has closed its end: its error message is read below.
        let _ = parent_sock.send(&Message::InCgroup);
    }

    let mut container = Container {
        id: options.id.clone(),
        pid,
        start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::time::rfc3339_now(),
        owner: String::new(),
        config: spec.clone(),
        without_cgroup: cgroup_origin == cgroup::Origin::None,
        systemd_cgroup: options.systemd_cgroup,
        shared_mounts: None,
        dir: dir.clone(),
    };
    loop {
        let (message, fd) = parent_sock.recv_with_fd()?.map_or((None, None), |(m, fd)| (Some(m), fd));
        match message {
            Some(Message::SeccompFd) => {
                let profile = linux.seccomp().as_ref().ok_or_else(|| Error::Init("protocol error: a notify fd without a seccomp profile".into()))?;
                let fd = fd.ok_or_else(|| Error::Init("protocol error: SeccompFd without an fd".into()))?;
                seccomp_listener::hand_over(profile, fd, container.pid, &container.oci_state(Status::Creating))?;
            }
            Some(Message::MapRequest) => {
                namespaces::write_id_maps(pid, linux)?;
                parent_sock.send(&Message::MapsDone)?;
            }
            Some(Message::InitPid(init_pid)) => {
                // The intermediate exits right after telling us; reap it and track the real init.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                container.pid = init_pid;
                cleanup.child = Some(init_pid);
            }
            Some(Message::RunHooks) => {
                container.start_time = proc::stat(container.pid).map(|s| s.start_time).unwrap_or(0);
                // "created" as crun reports it and runtime-tools expects: the init exists, with its pid.
                let state = serde_json::to_string(&container.oci_state(Status::Created)).unwrap_or_default();
                if let Some(spec_hooks) = spec.hooks() {
                    hooks::run_all(spec_hooks.prestart().as_ref(), &state)?;
                    hooks::run_all(spec_hooks.create_runtime().as_ref(), &state)?;
                }
                let state = serde_json::to_string(&container.oci_state(Status::Created)).unwrap_or_default();
                parent_sock.send(&Message::HooksDone(state))?;
            }
            Some(Message::Mounted(made)) => {
                let (_, shared) =
                    cleanup.shared_mounts.as_mut().ok_or_else(|| Error::Init("protocol error: a mount report with a mount namespace".into()))?;
                shared.made(made);
            }
            Some(Message::Ready) => break,
            Some(Message::Error(e)) => return Err(Error::Reported(e)),
            Some(other) => return Err(Error::Init(format!("protocol error: unexpected {other:?}"))),
            None => return Err(Error::Init("the container init exited during setup".into())),
        }
    }
    container.shared_mounts = cleanup.shared_mounts.as_ref().map(|(_, shared)| shared.clone());
    container.start_time =
        proc::stat(container.pid).map(|s| s.start_time).ok_or_else(|| Error::Init("the container init vanished after setup".into()))?;
    container.save()?;
    if let Some(pid_file) = &options.pid_file {
        write_pid_file(pid_file, container.pid)?;
    }
    cleanup.disarm();
    Ok(container)
}

fn open_path(path: &Path) -> Result<OwnedFd> {
    let c_path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| Error::Init(format!("{} contains NUL", path.display())))?;
    // SAFETY: c_path is NUL-terminated and outlives the call; a returned fd is ours.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io("open", path, std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes the pid file atomically, as containerd and conmon read it as soon as we exit.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("write pid file", path, e))
}
