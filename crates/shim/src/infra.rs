//! `berth-shim --infra [POD DIR [--userns]]`: the PID 1 of a pod's shared PID namespace
//! (shareProcessNamespace), in place of a pause image. With `--userns` the shim enters the pod's
//! user namespace (pinned at `POD DIR/ns/user`) and is root there, unshares a PID namespace and forks; the child is that
//! namespace's init: it reaps whatever is reparented to it and otherwise sleeps, and ends on
//! SIGTERM (an init gets only the signals it handles from inside its namespace; SIGKILL from
//! outside always). The parent prints `ok <child pid>` and exits, so the infra is nobody's child
//! and outlives berthd, as shims do. berthd pins its namespace and its pod's containers join it.

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{fork, ForkResult, Pid};

extern "C" fn stop(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(0) };
}

pub fn run(pod_dir: Option<std::path::PathBuf>, userns: bool) -> i32 {
    // The empty directory the init will live in, opened while the pod's directory is still
    // within reach (it is not from inside a user namespace).
    let root = match pod_dir.as_deref().map(empty_root).transpose() {
        Ok(root) => root,
        Err(e) => {
            eprintln!("berth-shim: the infra's empty root: {e}");
            return 1;
        }
    };
    // A pod with a user namespace (`--userns`): entered first, so it owns the PID namespace and
    // the pod's containers (in it too) may mount that namespace's /proc. A pin that is missing is
    // an error, not the host's namespace.
    if let Some(user) = pod_dir.map(|dir| dir.join("ns/user")).filter(|_| userns) {
        // And root there, as the pod's processes see it (the host's root is nobody there).
        let entered = std::fs::File::open(&user).and_then(|ns| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
                .and_then(|()| nix::unistd::setgroups(&[]))
                .and_then(|()| nix::unistd::setresgid(0.into(), 0.into(), 0.into()))
                .and_then(|()| nix::unistd::setresuid(0.into(), 0.into(), 0.into()))
                .map_err(std::io::Error::from)
        });
        if let Err(e) = entered {
            eprintln!("berth-shim: enter the pod's user namespace {}: {e}", user.display());
            return 1;
        }
    }
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
        eprintln!("berth-shim: unshare a PID namespace: {e}");
        return 1;
    }
    // The init says it is confined (one byte) before berthd hears `ok`.
    let (ready_read, ready_write) = match nix::unistd::pipe() {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("berth-shim: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: single-threaded here (nothing has started a thread), so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            drop(ready_write);
            let mut byte = [0u8; 1];
            if nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&ready_read), &mut byte) != Ok(1) {
                eprintln!("berth-shim: the pod's init could not confine itself (chroot to an empty directory, become nobody)");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                return 1;
            }
            println!("ok {child}");
            0
        }
        Ok(ForkResult::Child) => {
            drop(ready_read);
            init(root, ready_write)
        }
        Err(e) => {
            eprintln!("berth-shim: fork the pod's init: {e}");
            1
        }
    }
}

/// `<pod dir>/infra-root`, made empty and read-only, opened.
fn empty_root(pod_dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = pod_dir.join("infra-root");
    match std::fs::DirBuilder::new().mode(0o555).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::fs::File::open(&dir)
}

/// Shuts the init in: chrooted to the empty directory (so `/proc/1/root`, which a pod's container
/// with CAP_SYS_PTRACE may open, is not the host's /), then nobody (65534) without capabilities
/// and not dumpable, so that code injected into it could neither leave the chroot nor do more
/// than signal. No fd of it is left open.
fn confine(root: std::fs::File) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    nix::unistd::fchdir(root.as_raw_fd())?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")?;
    drop(root);
    let nobody = 65534;
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(nobody.into(), nobody.into(), nobody.into())?;
    nix::unistd::setresuid(nobody.into(), nobody.into(), nobody.into())
}

fn init(root: Option<std::fs::File>, ready: std::os::fd::OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    // Nothing of the caller's: its pipes would keep it waiting for our end.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    if let Some(root) = root {
        if confine(root).is_err() {
            // Better no pod than an init with the host's root and capabilities in it; the parent
            // reads no byte and says so.
            std::process::exit(1);
        }
    }
    let _ = nix::unistd::write(&ready, b"1");
    drop(ready);
    let _ = berth_sys::cloexec_from(3);
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only calls _exit, which is async-signal-safe.
        let _ = unsafe { signal(sig, SigHandler::Handler(stop)) };
    }
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(_) => {}
            // No child now: sleep until a signal (a reparented orphan's SIGCHLD, or SIGTERM).
            Err(_) => {
                nix::unistd::pause();
            }
        }
    }
}
