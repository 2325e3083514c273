//! berth-shim: supervises one container for berthd, and outlives it.
//!
//! `berth-shim --id ID --bundle DIR --dir DIR --runtime BIN [--runtime-root DIR] [--tty] [--stdin]
//! [--log-max-size BYTES]` forks; the child starts its own session, becomes a subreaper, runs
//! `BIN create` with stdio it owns (pipes, or the pty from a console socket) and then serves its
//! control socket. The parent exits once the container is created, printing `ok <init pid>` or the
//! error, so its caller (berthd) reaps it at once and the shim is nobody's child.
//!
//! The shim stays single-threaded and allocation-light (poll loop, fixed buffers): memory per
//! container is a headline figure.

mod console;
mod cri_log;
mod process;
mod runtime;
mod supervisor;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

pub struct Args {
    pub id: String,
    pub bundle: PathBuf,
    pub dir: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: Option<PathBuf>,
    pub tty: bool,
    pub stdin: bool,
    pub log_max_size: u64,
}

const USAGE: &str = "usage: berth-shim --id ID --bundle DIR --dir DIR --runtime BIN [--runtime-root DIR] [--tty] [--stdin] [--log-max-size BYTES]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let (mut id, mut bundle, mut dir, mut runtime, mut runtime_root) = (None, None, None, None, None);
    let (mut tty, mut stdin, mut log_max_size) = (false, false, 10 << 20);
    while let Some(arg) = args.next() {
        let arg = arg.to_str().ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?.to_string();
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--id" => id = Some(value()?.into_string().map_err(|_| "--id is not UTF-8".to_string())?),
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--runtime" => runtime = Some(PathBuf::from(value()?)),
            "--runtime-root" => runtime_root = Some(PathBuf::from(value()?)),
            "--log-max-size" => log_max_size = value()?.to_str().and_then(|v| v.parse().ok()).ok_or("--log-max-size needs a number of bytes")?,
            "--tty" => tty = true,
            "--stdin" => stdin = true,
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let missing = |name: &str| format!("{name} is required\n{USAGE}");
    // The shim changes directory (into its own): every path it keeps must be absolute.
    let absolute = |p: PathBuf| std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(Args {
        id: id.ok_or_else(|| missing("--id"))?,
        bundle: absolute(bundle.ok_or_else(|| missing("--bundle"))?)?,
        dir: absolute(dir.ok_or_else(|| missing("--dir"))?)?,
        runtime: runtime.ok_or_else(|| missing("--runtime"))?,
        runtime_root,
        tty,
        stdin,
        log_max_size,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            std::process::exit(2);
        }
    };
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

/// The parent's part: print what the child reported (`ok <pid>` or an error) and exit with it.
fn relay_readiness(ready: OwnedFd) -> i32 {
    let mut report = String::new();
    let _ = std::fs::File::from(ready).take(64 * 1024).read_to_string(&mut report);
    if report.starts_with("ok ") {
        print!("{report}");
        0
    } else if report.is_empty() {
        eprintln!("berth-shim: the shim died before the container was created");
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
    let _ = writeln!(ready, "ok {}", shim.init_pid());
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
