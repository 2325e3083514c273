//! berth-shim: supervises containers for berthd — one container's, or a whole pod's — and outlives
//! berthd.
//!
//! `berth-shim --dir DIR --runtime BIN [--runtime-root DIR]` forks; the child starts its own
//! session, becomes a subreaper, binds `DIR/shim.sock` and serves the protocol (crate::protocol):
//! containers are created, started, exec'd into and deleted by requests that name them, and their
//! exits are pushed to subscribers. The parent exits once the socket is bound, printing `ok <shim
//! pid>` or the error, so its caller (berthd) reaps it at once and the shim is nobody's child. The
//! shim ends once the last of its containers is deleted (or fails to be created), or when nobody
//! has asked it for anything within a minute of its start.
//!
//! `berth-shim --dir DIR --runtime BIN [--runtime-root DIR] --cleanup ID` is for a shim that died:
//! the runtime deletes the container (killing what is left of it) and its files in DIR go. The shim
//! binary stays the one program that runs the OCI runtime.
//!
//! `berth-shim --infra` is the init of a pod's shared PID namespace (crate::infra).
//!
//! The shim stays single-threaded and allocation-light (poll loop, fixed buffers): memory per
//! container is a headline figure.

mod console;
mod container;
mod cri_log;
mod infra;
mod oom;
mod process;
mod requests;
mod runtime;
mod supervisor;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub struct Args {
    pub dir: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: Option<PathBuf>,
    pub cleanup: Option<String>,
}

const USAGE: &str = "usage: berth-shim --dir DIR --runtime BIN [--runtime-root DIR] [--cleanup ID] | berth-shim --infra [POD DIR [--userns]]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let (mut dir, mut runtime, mut runtime_root, mut cleanup) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let arg = arg.to_str().ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?.to_string();
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--runtime" => runtime = Some(PathBuf::from(value()?)),
            "--runtime-root" => runtime_root = Some(PathBuf::from(value()?)),
            "--cleanup" => cleanup = Some(value()?.into_string().map_err(|_| "--cleanup is not UTF-8".to_string())?),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let missing = |name: &str| format!("{name} is required\n{USAGE}");
    // The shim changes directory (into its own): every path it keeps must be absolute.
    let absolute = |p: PathBuf| std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()));
    if cleanup.as_deref().is_some_and(|id| !berth_shim::protocol::valid_id(id)) {
        return Err(format!("--cleanup {cleanup:?}: not a container id"));
    }
    Ok(Args {
        dir: absolute(dir.ok_or_else(|| missing("--dir"))?)?,
        runtime: runtime.ok_or_else(|| missing("--runtime"))?,
        runtime_root: runtime_root.map(absolute).transpose()?,
        cleanup,
    })
}

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "--infra") {
        // The pod's directory that follows names it for whoever lists processes, and is where
        // its user namespace is pinned if it has one.
        let pod_dir = std::env::args_os().nth(2).map(std::path::PathBuf::from);
        let userns = std::env::args_os().nth(3).is_some_and(|a| a == "--userns");
        std::process::exit(infra::run(pod_dir, userns));
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            std::process::exit(2);
        }
    };
    if let Some(id) = &args.cleanup {
        std::process::exit(cleanup(&args, id));
    }
    let (ready_read, ready_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("berth-shim: pipe: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: nothing has started a thread yet, so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(ready_write);
            std::process::exit(relay_readiness(ready_read));
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ready_read);
            supervise(args, ready_write);
        }
        Err(e) => {
            eprintln!("berth-shim: fork: {e}");
            std::process::exit(1);
        }
    }
}

/// The runtime deletes what is left of container `id`; its files in the shim's directory go.
fn cleanup(args: &Args, id: &str) -> i32 {
    let runtime = runtime::Runtime::new(&args.runtime, args.runtime_root.as_deref(), &args.dir);
    let deleted = runtime.simple(&["delete", "--force", id]);
    let _ = std::fs::remove_dir_all(args.dir.join(id));
    match deleted {
        Ok(()) => 0,
        // Never created, or already deleted: nothing is left, which is what was asked.
        Err(e) if ["does not exist", "not found", "no such"].iter().any(|m| e.to_lowercase().contains(m)) => 0,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            1
        }
    }
}

/// The parent's part: print what the child reported (`ok <pid>` or an error) and exit with it.
fn relay_readiness(ready: OwnedFd) -> i32 {
    let mut report = String::new();
    let _ = std::fs::File::from(ready).take(64 * 1024).read_to_string(&mut report);
    if report.starts_with("ok ") {
        print!("{report}");
        0
    } else if report.is_empty() {
        eprintln!("berth-shim: the shim died before it was ready");
        1
    } else {
        eprint!("berth-shim: {report}");
        1
    }
}

fn supervise(args: Args, ready: OwnedFd) -> ! {
    let mut ready = std::fs::File::from(ready);
    let shim = match supervisor::Supervisor::start(&args) {
        Ok(shim) => shim,
        Err(e) => {
            let _ = writeln!(ready, "{e}");
            std::process::exit(1);
        }
    };
    let _ = writeln!(ready, "ok {}", std::process::id());
    drop(ready);
    detach_stdio(&args.dir.join("shim.log"));
    shim.run()
}

/// From here on nobody reads the shim's own stdio (berthd may be gone): stdin and stdout go to
/// /dev/null, stderr (where a panic would be told) to `log`.
fn detach_stdio(log: &std::path::Path) {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap_or(null);
        let _ = nix::unistd::dup2(err.as_raw_fd(), 2);
    }
}
