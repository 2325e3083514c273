//! The control socket's protocol. A shim supervises one or more containers (a pod's, or one
//! container's); every request names the container it is about.
//!
//! A connection carries one request: a JSON line from the client, a JSON line back. Then:
//! - `subscribe` turns the connection into a stream of [`Event`] lines from the shim: first what it
//!   holds ([`Event::Container`] per container, then [`Event::Synced`]), then every exit as it
//!   happens. This is how berthd learns of exits: no thread waits per container, nothing polls.
//! - `attach`, `exec` and `exec_sync` turn it into a stream of frames —
//!   `[kind: u8][length: u32 big-endian][payload]` — in both directions until the process exits (the
//!   last frame is `Exit`).
//!
//! Everything read is bounded: a request or event line by [`MAX_LINE`], a frame by [`MAX_FRAME`],
//! an `exec_sync` output by [`MAX_EXEC_SYNC_OUTPUT`] per stream (the rest is read and dropped, and
//! the exit says `truncated`).
//!
//! Files in the shim's directory (0700, made by whoever starts the shim) are part of the contract:
//! `shim.sock`, `shim.pid`, and per container `<id>/exit.json`, which berthd reads if the shim
//! died after the exit and before the container was deleted. Containers' ids name directories: see
//! [`valid_id`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const SOCKET: &str = "shim.sock";
/// Written (atomically, fsynced) in the container's directory when its init has exited.
pub const EXIT: &str = "exit.json";
/// The shim's own pid (for `kill -9`-style cleanup of a wedged shim).
pub const SHIM_PID: &str = "shim.pid";

pub const MAX_LINE: usize = 1 << 20;
pub const MAX_FRAME: usize = 1 << 16;
/// What `exec_sync` keeps of each of stdout and stderr (as the CRI's ExecSync expects of runtimes).
pub const MAX_EXEC_SYNC_OUTPUT: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Has the runtime create container `id` from `bundle`; its output goes to the CRI log at
    /// `log` (rotated past `log_max_size` bytes). Answered with [`Reply::Created`].
    Create {
        id: String,
        bundle: PathBuf,
        log: PathBuf,
        log_max_size: u64,
        tty: bool,
        stdin: bool,
    },
    State {
        id: String,
    },
    Start {
        id: String,
    },
    /// Signal the init (or, with `all`, every process of the container).
    Kill {
        id: String,
        signal: i32,
        all: bool,
    },
    /// Deletes an exited or never-started container from the runtime and forgets it. The shim
    /// exits once its last container is deleted (after this reply).
    Delete {
        id: String,
    },
    /// Answered when the container has exited.
    Wait {
        id: String,
    },
    /// The stream of events (see the module doc).
    Subscribe,
    /// The container's output from now on, and its stdin if it was started with one.
    Attach {
        id: String,
        stdin: bool,
    },
    /// Runs `process` (a runtime-spec process; `terminal` asks for a pty) and streams it.
    Exec {
        id: String,
        exec_id: String,
        process: serde_json::Value,
        stdin: bool,
    },
    /// Runs `process` without stdin; streams its output (capped) and ends with an `Exit` frame
    /// saying whether it was cut off or killed at `timeout_ms` (0: no timeout).
    ExecSync {
        id: String,
        exec_id: String,
        process: serde_json::Value,
        timeout_ms: u64,
    },
    /// Resizes the pty of the container (`exec_id` None) or of an exec.
    Resize {
        id: String,
        exec_id: Option<String>,
        width: u16,
        height: u16,
    },
    /// Closes and opens the container's log again (after whoever rotates it moved it away).
    ReopenLog {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Created { pid: i32 },
    State(ShimState),
    Exit(Exit),
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimState {
    pub id: String,
    pub pid: i32,
    pub status: Status,
    /// Set once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
}

/// Pushed to subscribers, one JSON line each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A container the shim holds, as the subscription begins.
    Container(ShimState),
    /// Every container has been told; from here on events are live.
    Synced,
    /// The container's init has exited (its other processes are gone too).
    Exit { id: String, exit: Exit },
    /// The kernel's OOM killer killed a process of the running container (maybe not its init).
    Oom { id: String },
}

/// How a process ended: `code` is its exit status, or 128 + the signal that killed it (as shells
/// and docker report it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    /// Nanoseconds since the epoch.
    pub exited_at: u64,
    /// The kernel's OOM killer killed a process of the container's memory cgroup.
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_killed: bool,
    /// `exec_sync` killed the process at its timeout.
    #[serde(default, skip_serializing_if = "is_false")]
    pub timed_out: bool,
    /// `exec_sync` dropped output beyond [`MAX_EXEC_SYNC_OUTPUT`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// The client has no more input: the process's stdin is closed.
    StdinClose = 3,
    /// Payload: width and height, u16 big-endian each.
    Resize = 4,
    /// Payload: an [`Exit`] as JSON. The last frame.
    Exit = 5,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<FrameKind> {
        Some(match b {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::StdinClose,
            4 => FrameKind::Resize,
            5 => FrameKind::Exit,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of unknown kind {0}")]
    UnknownKind(u8),
    #[error("frame of {0} bytes (limit {MAX_FRAME})")]
    TooLarge(usize),
}

const HEADER: usize = 5;

/// Appends the encoding of a frame to `out` (payloads larger than a frame are split).
pub fn encode(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    if chunks.peek().is_none() {
        out.push(kind as u8);
        out.extend_from_slice(&0u32.to_be_bytes());
    }
    for chunk in chunks {
        out.push(kind as u8);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// The first whole frame in `buf` and the bytes it took, or None when more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let kind = FrameKind::from_byte(buf[0]).ok_or(ProtocolError::UnknownKind(buf[0]))?;
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    Ok(Some((Frame { kind, payload: buf[HEADER..HEADER + len].to_vec() }, HEADER + len)))
}

pub fn resize_payload(width: u16, height: u16) -> [u8; 4] {
    let (w, h) = (width.to_be_bytes(), height.to_be_bytes());
    [w[0], w[1], h[0], h[1]]
}

pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [w0, w1, h0, h1] => Some((u16::from_be_bytes([*w0, *w1]), u16::from_be_bytes([*h0, *h1]))),
        _ => None,
    }
}

/// Container and exec ids name files in the shim's directory: short, plain, never `.` or `..`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut out = Vec::new();
        encode(FrameKind::Stdout, &vec![7u8; MAX_FRAME + 10], &mut out);
        encode(FrameKind::StdinClose, &[], &mut out);
        let (first, used) = decode(&out).unwrap().unwrap();
        assert_eq!((first.kind, first.payload.len()), (FrameKind::Stdout, MAX_FRAME));
        let (second, used2) = decode(&out[used..]).unwrap().unwrap();
        assert_eq!(second.payload.len(), 10);
        let (third, _) = decode(&out[used + used2..]).unwrap().unwrap();
        assert_eq!(third, Frame { kind: FrameKind::StdinClose, payload: vec![] });
        assert!(decode(&out[..3]).unwrap().is_none());
    }

    #[test]
    fn hostile_frames_are_refused() {
        assert!(matches!(decode(&[9, 0, 0, 0, 0]), Err(ProtocolError::UnknownKind(9))));
        assert!(matches!(decode(&[1, 0xff, 0xff, 0xff, 0xff]), Err(ProtocolError::TooLarge(_))));
    }

    #[test]
    fn requests_and_events_are_one_json_line_each() {
        let r = Request::Kill { id: "c1".into(), signal: 15, all: true };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"op":"kill","id":"c1","signal":15,"all":true}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let e = Event::Exit { id: "c1".into(), exit: Exit { code: 137, signal: Some(9), exited_at: 1, oom_killed: true, ..Default::default() } };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(line, r#"{"event":"exit","id":"c1","exit":{"code":137,"signal":9,"exited_at":1,"oom_killed":true}}"#);
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        assert_eq!(serde_json::to_string(&Event::Synced).unwrap(), r#"{"event":"synced"}"#);
    }

    #[test]
    fn ids_cannot_name_other_files() {
        for bad in ["", "..", ".", "../x", "a/b", "-x", &"a".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(valid_id("exec-1_a") && valid_id(&"f".repeat(64)));
    }
}
