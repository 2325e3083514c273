//! A container's (or an exec's) stream between this terminal and berthd (berth.v1's Attach and
//! Exec): its output to our stdout/stderr, our stdin to its stdin, and with a tty our terminal in
//! raw mode and its size followed. Reading our stdin and watching the size run on plain threads
//! (blocking reads); the rest is the async gRPC stream.

use berth_api::v1::containers_client::ContainersClient;
use berth_api::v1::{stream_input, stream_output, StreamInput, TerminalSize};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use tokio::sync::mpsc;
use tonic::transport::Channel;

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

pub enum Kind {
    Attach,
    Exec,
}

fn input(input: stream_input::Input) -> StreamInput {
    StreamInput { input: Some(input) }
}

/// Opens the stream with `first` (the attach or exec request) and, once berthd says it is
/// attached, runs `start`; then pumps until the process exits. Returns its exit code (None if the
/// stream ended without one: the container went away).
pub async fn pump(
    client: &mut ContainersClient<Channel>,
    kind: Kind,
    first: stream_input::Input,
    tty: bool,
    stdin: bool,
    start: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Option<i32>> {
    let (sender, receiver) = mpsc::channel(64);
    sender.send(input(first)).await?;
    let requests = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut outputs = match kind {
        Kind::Attach => client.attach(requests).await,
        Kind::Exec => client.exec(requests).await,
    }
    .map_err(crate::status)?
    .into_inner();
    match outputs.message().await.map_err(crate::status)?.and_then(|m| m.output) {
        Some(stream_output::Output::Ready(_)) => {}
        other => anyhow::bail!("berthd did not attach: {other:?}"),
    }
    start.await?;
    let interactive_tty = tty && nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false);
    let _raw = interactive_tty.then(RawMode::enter);
    if interactive_tty {
        let sender = sender.clone();
        // The terminal's size now and whenever it changes (polled: no signal handler to share).
        std::thread::spawn(move || {
            let mut last = None;
            loop {
                let size = terminal_size();
                if size != last {
                    if let Some((width, height)) = size {
                        let resize = TerminalSize { width: width.into(), height: height.into() };
                        if sender.blocking_send(input(stream_input::Input::Resize(resize))).is_err() {
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
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            loop {
                match std::io::stdin().read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = sender.blocking_send(input(stream_input::Input::CloseStdin(true)));
                        return;
                    }
                    Ok(n) => {
                        if sender.blocking_send(input(stream_input::Input::Stdin(buf[..n].to_vec()))).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    // Our own sender goes: the request stream stays open as long as a reader thread holds one.
    drop(sender);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(message) = outputs.message().await.map_err(crate::status)? {
        match message.output {
            Some(stream_output::Output::Stdout(data)) => {
                out.write_all(&data)?;
                out.flush()?;
            }
            Some(stream_output::Output::Stderr(data)) => {
                err.write_all(&data)?;
                err.flush()?;
            }
            Some(stream_output::Output::ExitCode(code)) => return Ok(Some(code)),
            _ => {}
        }
    }
    Ok(None)
}
