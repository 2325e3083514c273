//! A process the shim holds the stdio of: the container's init, or an exec. Output arrives on
//! pipes (or the pty master), input goes to a pipe (or the master) without ever blocking the shim:
//! what the process has not read yet waits in a bounded buffer.

use crate::cri_log::Stream;
use crate::runtime::Stdio3;
use nix::fcntl::OFlag;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;

/// Input not yet taken by the process, per process (beyond it the client is not read from).
pub const MAX_PENDING_INPUT: usize = 1 << 20;

pub struct Output {
    pub stream: Stream,
    pub fd: OwnedFd,
    /// Read to its end (removed after the loop turn that found it).
    pub ended: bool,
}

pub struct Process {
    /// The container it belongs to.
    pub container: String,
    /// None for the init.
    pub exec_id: Option<String>,
    pub pid: i32,
    pub outputs: Vec<Output>,
    pub input: Option<OwnedFd>,
    pub pending_input: Vec<u8>,
    /// Close the input once the pending bytes are written.
    pub close_input: bool,
    pub master: Option<OwnedFd>,
    pub exit: Option<(berth_shim::Exit, std::time::Instant)>,
    /// Set for an `exec_sync`: its output is capped and it may be killed at a deadline.
    pub sync: Option<SyncLimits>,
}

/// What an `exec_sync` may take: output up to the protocol's cap per stream, time up to `deadline`.
#[derive(Default)]
pub struct SyncLimits {
    pub deadline: Option<std::time::Instant>,
    /// Bytes passed on, stdout and stderr.
    pub sent: [usize; 2],
    pub truncated: bool,
    pub timed_out: bool,
}

impl SyncLimits {
    /// How much of `len` new bytes of `stream` may still be passed on.
    pub fn allow(&mut self, stream: Stream, len: usize) -> usize {
        let sent = &mut self.sent[stream as usize];
        let allowed = len.min(berth_shim::protocol::MAX_EXEC_SYNC_OUTPUT - *sent);
        *sent += allowed;
        if allowed < len {
            self.truncated = true;
        }
        allowed
    }
}

/// The process's ends of its stdio, handed to the runtime, and ours, kept.
pub struct Plumbing {
    pub theirs: Stdio3,
    pub outputs: Vec<Output>,
    pub input: Option<OwnedFd>,
}

impl Plumbing {
    /// Pipes for stdout and stderr, and for stdin when asked (else /dev/null). With a tty the
    /// runtime gives the process the pty and us its master: nothing to plumb.
    pub fn new(tty: bool, stdin: bool) -> Result<Plumbing, String> {
        if tty {
            return Ok(Plumbing { theirs: Stdio3::null(), outputs: Vec::new(), input: None });
        }
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let (their_stdin, input) = if stdin {
            let (read, write) = pipe()?;
            (Stdio::from(read), Some(write))
        } else {
            (Stdio::null(), None)
        };
        Ok(Plumbing {
            theirs: Stdio3 { stdin: their_stdin, stdout: Stdio::from(out_write), stderr: Stdio::from(err_write) },
            outputs: vec![
                Output { stream: Stream::Stdout, fd: out_read, ended: false },
                Output { stream: Stream::Stderr, fd: err_read, ended: false },
            ],
            input,
        })
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

pub fn set_nonblocking(fd: &impl AsFd) -> Result<(), String> {
    let flags = nix::fcntl::fcntl(fd.as_fd().as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(|e| format!("fcntl: {e}"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_fd().as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|e| format!("fcntl: {e}"))?;
    Ok(())
}

impl Process {
    /// The process `pid` with our ends of its stdio (`outputs`, `input`), or its pty `master`.
    pub fn new(
        container: &str,
        exec_id: Option<String>,
        pid: i32,
        mut outputs: Vec<Output>,
        mut input: Option<OwnedFd>,
        master: Option<OwnedFd>,
        stdin: bool,
    ) -> Result<Process, String> {
        if let Some(master) = &master {
            let reader = master.try_clone().map_err(|e| format!("dup the pty master: {e}"))?;
            outputs.push(Output { stream: Stream::Stdout, fd: reader, ended: false });
            if stdin {
                input = Some(master.try_clone().map_err(|e| format!("dup the pty master: {e}"))?);
            }
        }
        for fd in outputs.iter().map(|o| &o.fd).chain(input.iter()) {
            set_nonblocking(fd)?;
        }
        Ok(Process {
            container: container.to_string(),
            exec_id,
            pid,
            outputs,
            input,
            pending_input: Vec::new(),
            close_input: false,
            master,
            exit: None,
            sync: None,
        })
    }

    /// Queues input; false when the buffer is full (the caller stops reading its client).
    pub fn queue_input(&mut self, data: &[u8]) -> bool {
        if self.input.is_some() {
            self.pending_input.extend_from_slice(data);
        }
        self.pending_input.len() < MAX_PENDING_INPUT
    }

    /// Writes what the process will take now; closes the input when asked and drained.
    pub fn drain_input(&mut self) {
        if let Some(fd) = &self.input {
            while !self.pending_input.is_empty() {
                match nix::unistd::write(fd, &self.pending_input) {
                    Ok(n) => {
                        self.pending_input.drain(..n);
                    }
                    Err(nix::errno::Errno::EAGAIN) => return,
                    Err(nix::errno::Errno::EINTR) => {}
                    // The process closed its stdin: what it did not read is dropped.
                    Err(_) => {
                        self.pending_input.clear();
                        self.input = None;
                        return;
                    }
                }
            }
        }
        if self.close_input && self.pending_input.is_empty() && self.master.is_none() {
            self.input = None;
        }
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<(), String> {
        let master = self.master.as_ref().ok_or("the process has no terminal")?;
        let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(format!("resize the terminal: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    pub fn is(&self, container: &str, exec_id: Option<&str>) -> bool {
        self.container == container && self.exec_id.as_deref() == exec_id
    }

    /// Exited, and its output fully read (or given up on: see the supervisor's grace period).
    pub fn finished(&self) -> bool {
        self.exit.is_some() && self.outputs.is_empty()
    }
}
