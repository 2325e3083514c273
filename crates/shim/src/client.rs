//! A blocking client of a shim's control socket: one connection per request, as the protocol
//! wants. `attach` and `exec` return a [`Stream`] of frames.

use crate::protocol::{self, Event, Exit, Frame, FrameKind, Reply, Request, ShimState};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shim is not there (it exits once its container has exited and been deleted).
    #[error("shim at {path} is gone: {source}")]
    Gone { path: PathBuf, source: std::io::Error },
    #[error("shim at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("shim at {path}: {reason}")]
    Protocol { path: PathBuf, reason: String },
    /// The shim answered with an error (the runtime's message, usually).
    #[error("{0}")]
    Refused(String),
}

pub struct Client {
    socket: PathBuf,
}

/// What `create` needs besides the container's id.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub bundle: PathBuf,
    pub log: PathBuf,
    pub log_max_size: u64,
    pub tty: bool,
    pub stdin: bool,
}

impl CreateRequest {
    /// The protocol's create request for container `id`.
    pub(crate) fn for_container(&self, id: &str) -> Request {
        let r = self.clone();
        Request::Create { id: id.to_string(), bundle: r.bundle, log: r.log, log_max_size: r.log_max_size, tty: r.tty, stdin: r.stdin }
    }
}

impl Client {
    /// A client of the shim whose directory is `dir`.
    pub fn new(dir: &Path) -> Client {
        Client { socket: dir.join(protocol::SOCKET) }
    }

    /// Has the runtime create container `id`; returns its init's pid.
    pub fn create(&self, id: &str, r: &CreateRequest) -> Result<i32, Error> {
        let request = r.for_container(id);
        match self.call(&request)? {
            Reply::Created { pid } => Ok(pid),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn state(&self, id: &str) -> Result<ShimState, Error> {
        match self.call(&Request::State { id: id.to_string() })? {
            Reply::State(state) => Ok(state),
            other => Err(self.unexpected(&other)),
        }
    }

    pub fn start(&self, id: &str) -> Result<(), Error> {
        self.expect_ok(&Request::Start { id: id.to_string() })
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        self.expect_ok(&Request::Kill { id: id.to_string(), signal, all })
    }

    pub fn delete(&self, id: &str) -> Result<(), Error> {
        self.expect_ok(&Request::Delete { id: id.to_string() })
    }

    pub fn reopen_log(&self, id: &str) -> Result<(), Error> {
        self.expect_ok(&Request::ReopenLog { id: id.to_string() })
    }

    pub fn resize(&self, id: &str, exec_id: Option<&str>, width: u16, height: u16) -> Result<(), Error> {
        self.expect_ok(&Request::Resize { id: id.to_string(), exec_id: exec_id.map(str::to_string), width, height })
    }

    /// Blocks until the container has exited; `timeout` None waits for ever. Ok(None): timed out.
    pub fn wait(&self, id: &str, timeout: Option<std::time::Duration>) -> Result<Option<Exit>, Error> {
        let (stream, mut reader) = self.send(&Request::Wait { id: id.to_string() })?;
        stream.set_read_timeout(timeout).map_err(|e| self.io(e))?;
        match self.read_reply(&mut reader) {
            Ok(Reply::Exit(exit)) => Ok(Some(exit)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(Error::Io { source, .. }) if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The shim's events: what it holds, then exits as they happen (see the protocol).
    pub fn subscribe(&self) -> Result<Events, Error> {
        let (_stream, mut reader) = self.send(&Request::Subscribe)?;
        match self.read_reply(&mut reader)? {
            Reply::Ok => Ok(Events { reader, socket: self.socket.clone() }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Runs `process` to its end (or its timeout); its output, each stream capped by the
    /// protocol, and how it ended.
    pub fn exec_sync(&self, id: &str, exec_id: &str, process: serde_json::Value, timeout: std::time::Duration) -> Result<ExecOutput, Error> {
        let timeout_ms = timeout.as_millis().min(u64::MAX as u128) as u64;
        let mut stream = self.open_stream(&Request::ExecSync { id: id.to_string(), exec_id: exec_id.to_string(), process, timeout_ms })?;
        let mut output = ExecOutput::default();
        while let Some(frame) = stream.read_frame()? {
            if output.absorb(frame).map_err(|e| self.protocol(e))? {
                return Ok(output);
            }
        }
        Err(self.protocol("closed before the exec's exit".into()))
    }

    fn open_stream(&self, request: &Request) -> Result<Stream, Error> {
        // The reader is a clone of the connection: dropping the request's handle closes nothing.
        let (_request, mut reader) = self.send(request)?;
        match self.read_reply(&mut reader)? {
            Reply::Ok => Ok(Stream { reader, buf: Vec::new(), socket: self.socket.clone() }),
            other => Err(self.unexpected(&other)),
        }
    }

    fn expect_ok(&self, request: &Request) -> Result<(), Error> {
        match self.call(request)? {
            Reply::Ok => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    fn call(&self, request: &Request) -> Result<Reply, Error> {
        let (_stream, mut reader) = self.send(request)?;
        self.read_reply(&mut reader)
    }

    fn send(&self, request: &Request) -> Result<(UnixStream, BufReader<UnixStream>), Error> {
        let mut stream = connect(&self.socket).map_err(|source| Error::Gone { path: self.socket.clone(), source })?;
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        stream.write_all(&line).map_err(|e| self.io(e))?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| self.io(e))?);
        Ok((stream, reader))
    }

    fn read_reply(&self, reader: &mut BufReader<UnixStream>) -> Result<Reply, Error> {
        let line = read_line(reader).map_err(|e| self.io(e))?;
        if line.is_empty() {
            return Err(self.protocol("closed without a reply".into()));
        }
        serde_json::from_slice(&line).map_err(|e| self.protocol(format!("bad reply: {e}")))
    }

    fn unexpected(&self, reply: &Reply) -> Error {
        match reply {
            Reply::Error(message) => Error::Refused(message.clone()),
            other => self.protocol(format!("unexpected reply {other:?}")),
        }
    }

    fn protocol(&self, reason: String) -> Error {
        Error::Protocol { path: self.socket.clone(), reason }
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io { path: self.socket.clone(), source }
    }
}

/// One line, at most [`protocol::MAX_LINE`] bytes (a longer one is an error, never a buffer grown
/// without bound). Empty at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.take(protocol::MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if line.len() > protocol::MAX_LINE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line longer than the protocol allows"));
    }
    Ok(line)
}

/// What `exec_sync` returns.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Exit,
}

impl ExecOutput {
    /// Takes one frame of an `exec_sync` stream; true once it was the exit (the last). Output past
    /// the protocol's cap is a protocol error: the shim cuts it.
    pub(crate) fn absorb(&mut self, frame: Frame) -> Result<bool, String> {
        let sink = match frame.kind {
            FrameKind::Stdout => &mut self.stdout,
            FrameKind::Stderr => &mut self.stderr,
            FrameKind::Exit => {
                self.exit = serde_json::from_slice(&frame.payload).map_err(|e| format!("bad exit: {e}"))?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        if sink.len() + frame.payload.len() > protocol::MAX_EXEC_SYNC_OUTPUT {
            return Err("exec output beyond its cap".into());
        }
        sink.extend_from_slice(&frame.payload);
        Ok(false)
    }
}

/// A subscription: events until the shim goes (None).
pub struct Events {
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl Events {
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        let io = |source| Error::Io { path: self.socket.clone(), source };
        let line = read_line(&mut self.reader).map_err(io)?;
        if line.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&line).map(Some).map_err(|e| Error::Protocol { path: self.socket.clone(), reason: format!("bad event: {e}") })
    }
}

/// Connects to `socket` however long its path: a unix socket address holds only 107 bytes, so a
/// longer path is reached through the fd of its directory (`/proc/self/fd/N/shim.sock`).
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    if socket.as_os_str().len() < 100 {
        return UnixStream::connect(socket);
    }
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else { return UnixStream::connect(socket) };
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))).join(name);
    UnixStream::connect(short)
}

/// An exec'd process's frames (what `exec_sync` reads).
struct Stream {
    reader: BufReader<UnixStream>,
    buf: Vec<u8>,
    socket: PathBuf,
}

impl Stream {
    /// The next frame; None when the shim closed the connection.
    fn read_frame(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            match protocol::decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(Error::Protocol { path: self.socket.clone(), reason: e.to_string() }),
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = self.reader.read(&mut chunk).map_err(|source| Error::Io { path: self.socket.clone(), source })?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
