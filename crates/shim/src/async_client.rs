//! The async client berthd uses: a connection per request as the protocol wants, and the event
//! subscription read as it comes, so berthd holds no thread per shim or container. Reads are
//! bounded exactly as in the blocking client.

use crate::client::{CreateRequest, Error, ExecOutput};
use crate::protocol::{self, Event, FrameKind, Reply, Request, ShimState};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const READ_BUFFER: usize = 1024;

#[derive(Debug, Clone)]
pub struct AsyncClient {
    socket: PathBuf,
}

impl AsyncClient {
    /// A client of the shim whose directory is `dir`.
    pub fn new(dir: &Path) -> AsyncClient {
        AsyncClient { socket: dir.join(protocol::SOCKET) }
    }

    pub async fn create(&self, id: &str, r: &CreateRequest) -> Result<i32, Error> {
        let request = r.for_container(id);
        match self.call(&request).await? {
            Reply::Created { pid } => Ok(pid),
            other => Err(self.unexpected(other)),
        }
    }

    pub async fn state(&self, id: &str) -> Result<ShimState, Error> {
        match self.call(&Request::State { id: id.to_string() }).await? {
            Reply::State(state) => Ok(state),
            other => Err(self.unexpected(other)),
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.expect_ok(&Request::Start { id: id.to_string() }).await
    }

    pub async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        self.expect_ok(&Request::Kill { id: id.to_string(), signal, all }).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        self.expect_ok(&Request::Delete { id: id.to_string() }).await
    }

    pub async fn reopen_log(&self, id: &str) -> Result<(), Error> {
        self.expect_ok(&Request::ReopenLog { id: id.to_string() }).await
    }

    /// The shim's events: what it holds, then exits as they happen (see the protocol).
    pub async fn subscribe(&self) -> Result<AsyncEvents, Error> {
        let mut reader = self.send(&Request::Subscribe).await?;
        match self.read_reply(&mut reader).await? {
            Reply::Ok => Ok(AsyncEvents { reader, socket: self.socket.clone() }),
            other => Err(self.unexpected(other)),
        }
    }

    /// The container's output from now on, and its stdin if asked (see the protocol's `attach`).
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<AsyncStream, Error> {
        self.open_stream(&Request::Attach { id: id.to_string(), stdin }).await
    }

    /// Runs `process` in container `id` and streams it (see the protocol's `exec`).
    pub async fn exec(&self, id: &str, exec_id: &str, process: serde_json::Value, stdin: bool) -> Result<AsyncStream, Error> {
        self.open_stream(&Request::Exec { id: id.to_string(), exec_id: exec_id.to_string(), process, stdin }).await
    }

    async fn open_stream(&self, request: &Request) -> Result<AsyncStream, Error> {
        let mut reader = self.send(request).await?;
        match self.read_reply(&mut reader).await? {
            Reply::Ok => Ok(AsyncStream { reader, buf: Vec::new(), socket: self.socket.clone() }),
            other => Err(self.unexpected(other)),
        }
    }

    /// Runs `process` in container `id` to its end or its timeout (zero: none); its output,
    /// each stream capped by the protocol, and how it ended.
    pub async fn exec_sync(&self, id: &str, exec_id: &str, process: serde_json::Value, timeout: std::time::Duration) -> Result<ExecOutput, Error> {
        let timeout_ms = timeout.as_millis().min(u64::MAX as u128) as u64;
        let request = Request::ExecSync { id: id.to_string(), exec_id: exec_id.to_string(), process, timeout_ms };
        let mut reader = self.send(&request).await?;
        match self.read_reply(&mut reader).await? {
            Reply::Ok => {}
            other => return Err(self.unexpected(other)),
        }
        let mut output = ExecOutput::default();
        let mut buf = Vec::new();
        loop {
            while let Some((frame, used)) = protocol::decode(&buf).map_err(|e| self.protocol(e.to_string()))? {
                buf.drain(..used);
                if output.absorb(frame).map_err(|e| self.protocol(e))? {
                    return Ok(output);
                }
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = reader.read(&mut chunk).await.map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.protocol("closed before the exec's exit".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn expect_ok(&self, request: &Request) -> Result<(), Error> {
        match self.call(request).await? {
            Reply::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    async fn call(&self, request: &Request) -> Result<Reply, Error> {
        let mut reader = self.send(request).await?;
        self.read_reply(&mut reader).await
    }

    async fn send(&self, request: &Request) -> Result<BufReader<UnixStream>, Error> {
        let mut stream = connect(&self.socket).await.map_err(|source| Error::Gone { path: self.socket.clone(), source })?;
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        stream.write_all(&line).await.map_err(|e| self.io(e))?;
        // Replies and events are short lines, and a subscription's reader lives as long as its
        // shim: a small buffer (a longer line still reads whole, up to the protocol's bound).
        Ok(BufReader::with_capacity(READ_BUFFER, stream))
    }

    async fn read_reply(&self, reader: &mut BufReader<UnixStream>) -> Result<Reply, Error> {
        let line = read_line(reader).await.map_err(|e| self.io(e))?;
        if line.is_empty() {
            return Err(self.protocol("closed without a reply".into()));
        }
        serde_json::from_slice(&line).map_err(|e| self.protocol(format!("bad reply: {e}")))
    }

    fn unexpected(&self, reply: Reply) -> Error {
        match reply {
            Reply::Error(message) => Error::Refused(message),
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

/// One line of at most [`protocol::MAX_LINE`] bytes; empty at the end of the stream.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.take(protocol::MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await?;
    if line.len() > protocol::MAX_LINE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line longer than the protocol allows"));
    }
    Ok(line)
}

/// Connects however long the socket's path (see the blocking client's `connect`).
async fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    if socket.as_os_str().len() < 100 {
        return UnixStream::connect(socket).await;
    }
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else { return UnixStream::connect(socket).await };
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))).join(name);
    UnixStream::connect(short).await
}

/// An attached or exec'd process: frames both ways. Reading and writing go on at once through
/// [`AsyncStream::split`].
pub struct AsyncStream {
    reader: BufReader<UnixStream>,
    buf: Vec<u8>,
    socket: PathBuf,
}

impl AsyncStream {
    /// The reading half (frames from the shim) and the writing half (frames to it).
    pub fn split(self) -> (AsyncFrames, AsyncFrameWriter) {
        let AsyncStream { reader, buf, socket } = self;
        // What the reply's read buffered beyond the reply line is the first frames' bytes.
        let mut buf = buf;
        buf.extend_from_slice(reader.buffer());
        let (read, write) = reader.into_inner().into_split();
        (AsyncFrames { reader: read, buf, socket }, AsyncFrameWriter { writer: write })
    }
}

pub struct AsyncFrames {
    reader: tokio::net::unix::OwnedReadHalf,
    buf: Vec<u8>,
    socket: PathBuf,
}

impl AsyncFrames {
    /// The next frame; None when the shim closed the connection.
    pub async fn read_frame(&mut self) -> Result<Option<crate::Frame>, Error> {
        loop {
            if let Some((frame, used)) =
                protocol::decode(&self.buf).map_err(|e| Error::Protocol { path: self.socket.clone(), reason: e.to_string() })?
            {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = self.reader.read(&mut chunk).await.map_err(|source| Error::Io { path: self.socket.clone(), source })?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub struct AsyncFrameWriter {
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl AsyncFrameWriter {
    pub async fn write_frame(&mut self, kind: FrameKind, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 5);
        protocol::encode(kind, payload, &mut out);
        self.writer.write_all(&out).await
    }
}

/// A subscription: events until the shim goes (None).
pub struct AsyncEvents {
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl AsyncEvents {
    pub async fn next_event(&mut self) -> Result<Option<Event>, Error> {
        let line = read_line(&mut self.reader).await.map_err(|source| Error::Io { path: self.socket.clone(), source })?;
        if line.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&line).map(Some).map_err(|e| Error::Protocol { path: self.socket.clone(), reason: format!("bad event: {e}") })
    }
}
