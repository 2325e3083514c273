//! A container's (or an exec's) stream between this terminal and berthd (berth.v1's Attach and
//! Exec): its output to our stdout/stderr, our stdin to its stdin, and with a tty our terminal in
//! raw mode and its size followed. Reading our stdin and watching the size run on plain threads
//! (blocking reads); the rest is the async gRPC stream. The detach keys (docker's ctrl-p ctrl-q)
//! typed into our stdin leave the container running and end the stream.

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

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    /// No exit came: the container went away.
    Gone,
    /// The detach keys were typed: the process runs on.
    Detached,
}

/// `--detach-keys` as docker spells them: comma-separated keys, each a character or `ctrl-X`
/// (X a letter, or one of @ [ \ ] ^ _); empty for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(pub Vec<u8>);

pub fn detach_keys(text: &str) -> Result<DetachKeys, String> {
    let mut keys = Vec::new();
    for key in text.split(',').filter(|k| !k.is_empty()) {
        let byte = match key.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0].to_ascii_lowercase() {
                b @ b'a'..=b'z' => b - b'a' + 1,
                b'@' => 0,
                b @ (b'[' | b'\\' | b']' | b'^' | b'_') => b - b'@',
                _ => return Err(format!("detach key {key:?}: ctrl- goes with a letter or @ [ \\ ] ^ _")),
            },
            _ if key.len() == 1 => key.as_bytes()[0],
            _ => return Err(format!("detach key {key:?}: a character or ctrl-X")),
        };
        keys.push(byte);
    }
    Ok(DetachKeys(keys))
}

/// Finds the detach keys in what is typed: bytes that start the sequence are held back until it
/// completes (then nothing is sent) or breaks (then they go too).
struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    /// The bytes to pass on, and whether the sequence completed.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &byte in input {
            if self.keys.is_empty() {
                out.push(byte);
                continue;
            }
            if byte == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = usize::from(byte == self.keys[0]);
            if self.matched == 0 {
                out.push(byte);
            }
        }
        (out, false)
    }
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
    detach: &DetachKeys,
    start: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Ended> {
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
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    if stdin {
        let sender = sender.clone();
        // With a terminal only, as docker's: piped input is data, whatever its bytes.
        let keys = if interactive_tty { detach.0.clone() } else { Vec::new() };
        let mut matcher = DetachMatcher { keys, matched: 0 };
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            loop {
                match std::io::stdin().read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = sender.blocking_send(input(stream_input::Input::CloseStdin(true)));
                        return;
                    }
                    Ok(n) => {
                        let (data, detach) = matcher.feed(&buf[..n]);
                        if !data.is_empty() && sender.blocking_send(input(stream_input::Input::Stdin(data))).is_err() {
                            return;
                        }
                        if detach {
                            let _ = detached_tx.send(());
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
    let mut watching = stdin;
    loop {
        let message = tokio::select! {
            message = outputs.message() => message,
            // Err: the reader ended (end of input) without the keys.
            typed = &mut detached, if watching => match typed {
                Ok(()) => return Ok(Ended::Detached),
                Err(_) => {
                    watching = false;
                    continue;
                }
            },
        };
        let Some(message) = message.map_err(crate::status)? else { break };
        match message.output {
            Some(stream_output::Output::Stdout(data)) => {
                out.write_all(&data)?;
                out.flush()?;
            }
            Some(stream_output::Output::Stderr(data)) => {
                err.write_all(&data)?;
                err.flush()?;
            }
            Some(stream_output::Output::ExitCode(code)) => return Ok(Ended::Exited(code)),
            _ => {}
        }
    }
    Ok(Ended::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_match_as_dockers() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q"), Ok(DetachKeys(vec![0x10, 0x11])));
        assert_eq!(detach_keys("ctrl-@,ctrl-[,a"), Ok(DetachKeys(vec![0, 0x1b, b'a'])));
        assert_eq!(detach_keys(""), Ok(DetachKeys(vec![])));
        assert!(detach_keys("ctrl-1").is_err() && detach_keys("ab").is_err());
        let mut m = DetachMatcher { keys: vec![0x10, 0x11], matched: 0 };
        assert_eq!(m.feed(b"ls\x10"), (b"ls".to_vec(), false), "a started sequence is held back");
        assert_eq!(m.feed(b"x"), (b"\x10x".to_vec(), false), "a broken one goes on");
        assert_eq!(m.feed(b"\x10\x10\x11rest"), (b"\x10".to_vec(), true), "the keys, after a repeated first one");
        let mut none = DetachMatcher { keys: vec![], matched: 0 };
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
