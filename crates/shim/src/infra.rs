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
    // SAFETY: single-threaded here (nothing has started a thread), so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            println!("ok {child}");
            0
        }
        Ok(ForkResult::Child) => init(),
        Err(e) => {
            eprintln!("berth-shim: fork the pod's init: {e}");
            1
        }
    }
}

fn init() -> ! {
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    // Nothing of the caller's: its pipes would keep it waiting for our end.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
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
