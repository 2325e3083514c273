//! The container init: what the cloned child does, in order, from "parent says go" to execve.
//!
//! Runs in a forked copy of berth-oci (single-threaded, no allocator locks held by anyone else).
//! Every failure is sent to the parent as a message and the child exits with `_exit(1)`; nothing
//! here may return to the parent's code paths.

pub(crate) mod console;
mod devices;
mod mounts;
mod paths;
pub(crate) mod process;
mod rootfs;
mod seccomp;

use crate::namespaces::{self, Plan};
use crate::sync::{Message, SyncSocket};
use crate::{Error, Result};
use oci_spec::runtime::Spec;
use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub(crate) use console::setup as setup_console;
pub(crate) use seccomp::{compile as compile_seccomp, SeccompProgram};

pub(crate) struct InitContext<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub sync: &'a SyncSocket,
    /// O_PATH fd of `exec.fifo`; opened for writing once setup is done, which blocks until `start`.
    pub exec_fifo: &'a OwnedFd,
    pub console: Option<&'a UnixStream>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// (name, host directory) pairs a `cgroup` mount shows.
    pub cgroup_mounts: Vec<(String, PathBuf)>,
    /// Detached idmapped trees the parent made, by index of the spec's mounts (see crate::idmap).
    pub idmapped_trees: &'a [Option<OwnedFd>],
    /// Compiled by the parent; loaded right before execve.
    pub seccomp: Option<&'a SeccompProgram>,
    /// The cgroup to move into by ourselves, first thing (v1, see create); None: the parent moves
    /// us (or we were born there) and says `InCgroup`.
    pub join_cgroup: Option<&'a dyn berth_cgroups::Cgroup>,
    /// Set once the parent reported the move into the cgroup.
    pub in_cgroup: std::cell::Cell<bool>,
    /// Set once the cgroup namespace (if any) is made.
    pub cgroup_ns_done: std::cell::Cell<bool>,
}

impl InitContext<'_> {
    /// Waits until the parent has moved us into our cgroup. Called before every request to the
    /// parent, whose reply would otherwise queue behind `InCgroup`; idempotent.
    pub(crate) fn await_cgroup(&self) -> Result<()> {
        if !self.in_cgroup.get() {
            self.sync.expect("in cgroup", |m| matches!(m, Message::InCgroup))?;
            self.in_cgroup.set(true);
        }
        Ok(())
    }

    /// Once in the cgroup, unshares the cgroup namespace, whose root is that cgroup. Before the
    /// createContainer hooks and `Ready`; idempotent.
    pub(crate) fn enter_cgroup(&self) -> Result<()> {
        self.await_cgroup()?;
        if self.plan.new_cgroup && !self.cgroup_ns_done.get() {
            namespaces::unshare(libc::CLONE_NEWCGROUP)?;
        }
        self.cgroup_ns_done.set(true);
        Ok(())
    }
}

/// Entry point of the cloned child; never returns.
pub(crate) fn child_main(ctx: &InitContext<'_>) -> ! {
    let error = match run(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let message = error.full_message();
    // After `start` the parent is gone; the container's stderr is then the only place left to say why.
    if ctx.sync.send(&Message::Error(message.clone())).is_err() {
        eprintln!("berth-oci: container init: {message}");
    }
    // SAFETY: _exit skips the parent's atexit handlers and destructors, which belong to the parent.
    unsafe { libc::_exit(1) }
}

fn run(ctx: &InitContext<'_>) -> Result<Infallible> {
    ctx.sync.expect("go", |m| matches!(m, Message::Go))?;
    // Before joining any namespace by path: the host's cgroup files are where we can see them now.
    if let Some(cgroup) = ctx.join_cgroup {
        cgroup.join_self()?;
        ctx.in_cgroup.set(true);
    }
    // While still the host's root and dumpable, as runc does it: in a user namespace the init's
    // /proc/self files stop being its own (EACCES even for raising the score).
    if let Some(process) = ctx.spec.process() {
        process::apply_oom_score_adj(process)?;
    }
    // Joining a user namespace does not clear the dumpable flag, and a pod's other containers
    // (with CAP_SYS_PTRACE there, and the PID namespace shared) could attach to us while we are
    // still the host's root: not dumpable before any join. Only a namespace we create ourselves
    // (nobody else in it yet) waits for its maps first.
    if !ctx.plan.new_user {
        process::set_non_dumpable()?;
    }
    enter_namespaces(ctx)?;
    // Until execve (which restores it for a readable binary), nothing in the container may ptrace
    // us or open our /proc entries (fds, environ, exe). Not before the id maps are written: an
    // unprivileged parent could not open a non-dumpable child's uid_map.
    process::set_non_dumpable()?;
    let spec = ctx.spec;
    let linux = spec.linux().as_ref().ok_or_else(|| Error::Init("linux section is missing".into()))?;
    // Root inside, where the namespace has one: the host's uid 0 is not mapped there, and files
    // made for the container (mount points, devices) by an unmapped uid fail with EOVERFLOW.
    let joined_user = !ctx.plan.new_user && ctx.plan.enters_user_namespace();
    let trees = if joined_user { rootfs::HostTrees::clone_now(ctx)? } else { rootfs::HostTrees::default() };
    if (ctx.plan.new_user && namespaces::maps_root(linux.uid_mappings().as_ref())) || (joined_user && namespaces::self_maps_root()) {
        process::become_root()?;
    }
    // A new network namespace has its loopback down, and a process without CAP_NET_ADMIN could
    // not bring it up: runc and crun do it for the container.
    if ctx.plan.new_net {
        crate::sys::loopback_up().map_err(|e| Error::sys("bring up loopback", e))?;
    }
    if ctx.plan.new_uts {
        if let Some(hostname) = spec.hostname().as_deref() {
            nix::unistd::sethostname(hostname).map_err(|e| Error::sys("sethostname", e))?;
        }
        if let Some(domainname) = spec.domainname().as_deref() {
            process::set_domainname(domainname)?;
        }
    }

    let hook_state = rootfs::prepare(ctx, trees)?;
    ctx.enter_cgroup()?;
    paths::apply_sysctls(linux)?;
    // Without a mount namespace validation refused all three.
    if ctx.plan.mount_ns {
        paths::mask(linux.masked_paths().as_deref().unwrap_or(&[]))?;
        paths::make_readonly(linux.readonly_paths().as_deref().unwrap_or(&[]))?;
        if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            rootfs::remount_root_readonly()?;
        }
    }
    if !ctx.no_new_keyring {
        // EACCES/ENOSYS: keyrings disabled or forbidden by a host policy; not fatal, as in runc.
        if let Err(e) = crate::sys::join_session_keyring(&format!("_ses.{}", ctx.id)) {
            if !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EACCES) | Some(libc::EPERM)) {
                return Err(Error::sys("join session keyring", e));
            }
        }
    }
    let Some(process) = spec.process() else {
        // Nothing to run (the spec allows it): created, until `delete`; `start` refuses it.
        ctx.sync.send(&Message::Ready)?;
        wait_for_start(ctx.exec_fifo)?;
        return Err(Error::Init("the config has no process to start".into()));
    };
    process::apply_rlimits(process)?;
    if let Some(console) = ctx.console {
        // Without a mount namespace the bind would be made in the runtime's: only onto a /dev the
        // spec mounts, which delete takes down with it (crate::shared_mounts), never onto the
        // rootfs's own.
        let dev_mounted = spec.mounts().iter().flatten().any(|m| m.destination() == std::path::Path::new("/dev"));
        let bind_dev_console = ctx.plan.mount_ns || dev_mounted;
        console::setup(console, process.console_size(), process.user().uid(), process.user().gid(), bind_dev_console)?;
    }
    let env = process.env().clone().unwrap_or_default();
    let executable = process::resolve_executable(process, &env)?;
    process::apply_scheduling(process)?;
    process::apply_personality(linux)?;
    process::apply_memory_policy(linux)?;
    process::apply_lsm(process)?;
    // Everything that can stop the process from running happens before `create` hears Ready, so
    // that `create` fails with the reason (as runc's does); a notify fd then still reaches the
    // listener through `create`. What is left after `start` runs as the spec's user with its
    // capabilities and seccomp filter (as in runc): the fifo (made writable by all for that),
    // the startContainer hooks, execve.
    process::become_process(process, ctx.seccomp.map(|program| (program, ctx.sync)), ctx.preserve_fds)?;

    ctx.sync.send(&Message::Ready)?;
    wait_for_start(ctx.exec_fifo)?;
    if let Some(hooks) = spec.hooks() {
        crate::hooks::run_all(hooks.start_container().as_ref(), &hook_state)?;
    }
    process::execve(process, &executable, &env)
}

/// Joins and creates the namespaces clone3 could not; may fork once (see [`Plan::fork`]).
fn enter_namespaces(ctx: &InitContext<'_>) -> Result<()> {
    let plan = ctx.plan;
    for (nstype, path) in &plan.child_joins {
        namespaces::setns_path(path, *nstype)?;
    }
    if plan.child_new_user {
        namespaces::unshare(libc::CLONE_NEWUSER)?;
        ctx.await_cgroup()?;
        ctx.sync.send(&Message::MapRequest)?;
        ctx.sync.expect("id maps", |m| matches!(m, Message::MapsDone))?;
    }
    namespaces::unshare(plan.child_unshare)?;
    if plan.fork {
        // SAFETY: single-threaded process; the child only continues this function's work.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork init", e))? {
            nix::unistd::ForkResult::Child => {}
            nix::unistd::ForkResult::Parent { child } => {
                ctx.sync.send(&Message::InitPid(child.as_raw()))?;
                // SAFETY: the intermediate's work is done; _exit skips the parent's destructors.
                unsafe { libc::_exit(0) }
            }
        }
    }
    Ok(())
}

/// Blocks until `start` opens the fifo for reading; the byte written tells start we went through.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| Error::io("open exec fifo", &path, e))?;
    use std::io::Write;
    (&file).write_all(b"0").map_err(|e| Error::io("write exec fifo", &path, e))?;
    Ok(())
}
