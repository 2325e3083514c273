//! A terminal for foreground `run` and `exec -t` without `--console-socket`, as runc provides: we
//! listen on a private console socket ourselves, take the pty master the container sends, and copy
//! between it and our own stdio (in raw mode when that is a terminal) until the process exits.

use anyhow::{bail, Context};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

nix::ioctl_read_bad!(get_window_size, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, libc::winsize);

/// A console socket in a private (0700) directory under the state root, removed on drop.
pub struct LocalConsole {
    listener: UnixListener,
    dir: PathBuf,
}

impl LocalConsole {
    pub fn new(root: &Path) -> anyhow::Result<LocalConsole> {
        let dir = root.join(format!(".console-{}", std::process::id()));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).with_context(|| format!("create {}", dir.display()))?;
        let listener = UnixListener::bind(dir.join("console.sock")).context("bind console socket")?;
        Ok(LocalConsole { listener, dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// The container connected and sent the master before create/exec returned: nothing blocks here.
    pub fn take_master(&self) -> anyhow::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().context("accept console connection")?;
        let mut name = [0u8; 256];
        let (_, fds) = berth_sys::recv_with_fds(stream.as_fd(), &mut name).context("receive pty master")?;
        if let Some(fd) = fds.into_iter().next() {
            return Ok(fd);
        }
        bail!("the container sent no pty master")
    }
}

impl Drop for LocalConsole {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Restores the terminal's mode when the proxy ends, however it ends.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Gives the container's terminal our terminal's size (before it starts: a program that asks for
/// the size at once must not find 0x0).
pub fn take_our_size(master: BorrowedFd<'_>) {
    copy_window_size(std::io::stdin().as_fd(), master);
}

fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: both ioctls take a pointer to a winsize we own; failures (not a tty) are ignored.
    unsafe {
        if get_window_size(from.as_raw_fd(), &mut size).is_ok() {
            let _ = set_window_size(to.as_raw_fd(), &size);
        }
    }
}

/// Proxies stdio ↔ pty master until `pid` (our child) exits; forwards signals; returns its exit code.
pub fn proxy_until_exit(master: OwnedFd, pid: i32) -> anyhow::Result<i32> {
    let signals = berth_oci::wait::block_signals()?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let stdin = std::io::stdin();
    let _raw = RawMode::enter(stdin.as_fd());
    copy_window_size(stdin.as_fd(), master.as_fd());
    let mut master_file = std::fs::File::from(master);
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 16 * 1024];
    let (mut stdin_open, mut master_open) = (true, true);
    loop {
        if let Some(code) = berth_oci::wait::try_reap(pid)? {
            if master_open {
                drain(&mut master_file, &mut stdout, &mut buf);
            }
            return Ok(code);
        }
        let master_index = master_open.then_some(1);
        let stdin_index = stdin_open.then_some(if master_open { 2 } else { 1 });
        let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master_file.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = signal_fd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => copy_window_size(stdin.as_fd(), master_file.as_fd()),
                    Ok(signal) => {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                    }
                    Err(_) => {}
                }
            }
        }
        if master_index.is_some_and(|i| ready[i]) {
            match master_file.read(&mut buf) {
                Ok(0) | Err(_) => master_open = false, // EIO: every slave fd is closed
                Ok(n) => {
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
            }
        }
        if stdin_index.is_some_and(|i| ready[i]) {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => master_file.write_all(&buf[..n])?,
            }
        }
    }
}

/// Copies what is left in the pty after the process exited, without blocking.
fn drain(master: &mut std::fs::File, out: &mut std::io::Stdout, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    while let Ok(n) = master.read(buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = out.flush();
}
