//! Pumping a container's (or an exec's) stream between this terminal and its shim: output frames
//! to stdout/stderr, our stdin to stdin frames, and with a tty our terminal in raw mode and its
//! size followed. Runs on plain threads: the shim client is blocking.

use berth_shim::protocol::{self, FrameKind};
use berth_shim::{Exit, Stream};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = nix::sys::termios::tcgetattr(&stdin) else { return RawMode { saved: None } };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

/// The (width, height) of the terminal on stdin, if it is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some((size.ws_col, size.ws_row))
}

/// Streams until the process exits; returns its exit (None if the shim went away first).
pub fn pump(mut stream: Stream, tty: bool, stdin: bool) -> anyhow::Result<Option<Exit>> {
    let interactive_tty = tty && nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false);
    let _raw = interactive_tty.then(RawMode::enter);
    if interactive_tty {
        let mut writer = stream.writer()?;
        // The terminal's size now and whenever it changes (polled: no signal handler to share).
        std::thread::spawn(move || {
            let mut last = None;
            loop {
                let size = terminal_size();
                if size != last {
                    if let Some((width, height)) = size {
                        if writer.write_frame(FrameKind::Resize, &protocol::resize_payload(width, height)).is_err() {
                            return;
                        }
                    }
                    last = size;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        });
    }
    if stdin {
        let mut writer = stream.writer()?;
        std::thread::spawn(move || {
            let mut input = std::io::stdin();
            let mut buf = [0u8; 32 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = writer.write_frame(FrameKind::StdinClose, &[]);
                        return;
                    }
                    Ok(n) => {
                        if writer.write_frame(FrameKind::Stdin, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(frame) = stream.read_frame()? {
        match frame.kind {
            FrameKind::Stdout => {
                out.write_all(&frame.payload)?;
                out.flush()?;
            }
            FrameKind::Stderr => {
                err.write_all(&frame.payload)?;
                err.flush()?;
            }
            FrameKind::Exit => return Ok(serde_json::from_slice(&frame.payload).ok()),
            _ => {}
        }
    }
    Ok(None)
}
