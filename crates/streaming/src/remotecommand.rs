//! Exec and attach over either transport. The streams: stdin (client to process), stdout and
//! stderr (process to client), error (the outcome, once), resize (terminal sizes as JSON
//! `{"Width":w,"Height":h}` values, with a tty, from protocol v3 on).
//!
//! The outcome on the error stream: protocols v4 and v5 write a Kubernetes Status as JSON —
//! `Success`, or `Failure` with reason `NonZeroExitCode` and the code as the cause, or
//! `InternalError`; older ones write only a failure's message.
//!
//! An exec ends when its process exits; an attach when the container exits or, if the client
//! sent stdin, when the client's stdin ends (closing the container's stdin only if it is
//! `stdin_once`). Either ends when the client goes.

use crate::channels::{Incoming, Outbox, PeerGone, Writer};
use crate::spdy::session::Session;
use crate::websocket::{self, Codec};
use crate::{AttachRequest, ExecRequest, Runtime};
use berth_shim::{Exit, FrameKind};
use std::time::Duration;

/// What the client asked to stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A session's streams, whatever the transport.
pub(crate) struct Streams {
    stdin: Option<Incoming>,
    resize: Option<Incoming>,
    stdout: Option<Writer>,
    stderr: Option<Writer>,
    error: Writer,
    /// v4 and v5 write the Status as JSON.
    json_status: bool,
    outbox: Outbox,
    peer_gone: PeerGone,
    /// SPDY clients hang up themselves once they read every stream's end; WebSocket ones wait
    /// for the server's close.
    wait_for_client: bool,
}

/// How long a finished SPDY session waits for its client to hang up.
const LINGER: Duration = Duration::from_secs(5);
/// Bytes of an incomplete resize message kept.
const MAX_RESIZE_PENDING: usize = 4096;

/// Waits for the SPDY streams the request implies; None when the client does not open them in
/// time (the session is then closed).
pub(crate) async fn spdy_streams(mut session: Session, want: Want, protocol: &str, timeout: Duration) -> Option<Streams> {
    let resize = want.tty && matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let expected = 1 + want.stdin as usize + want.stdout as usize + want.stderr as usize + resize as usize;
    let (mut stdin, mut resize_in, mut stdout, mut stderr, mut error) = (None, None, None, None, None);
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while received < expected {
        let Ok(Some(stream)) = tokio::time::timeout_at(deadline, session.streams.recv()).await else {
            tracing::debug!("exec/attach: {received} of {expected} streams opened before the timeout");
            session.outbox.close().await;
            return None;
        };
        let writer = session.outbox.writer(stream.id);
        match stream.headers.get("streamType").unwrap_or_default() {
            "error" => error = Some(writer),
            "stdin" => stdin = Some(stream.data),
            "stdout" => stdout = Some(writer),
            "stderr" => stderr = Some(writer),
            "resize" => resize_in = Some(stream.data),
            other => {
                tracing::debug!("exec/attach: stream of unknown type {other:?} ignored");
                continue;
            }
        }
        received += 1;
    }
    let Some(error) = error else {
        session.outbox.close().await;
        return None;
    };
    Some(Streams {
        stdin,
        resize: resize_in,
        stdout,
        stderr,
        error,
        json_status: protocol == "v4.channel.k8s.io",
        outbox: session.outbox,
        peer_gone: session.peer_gone,
        wait_for_client: true,
    })
}

/// The WebSocket channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
pub(crate) async fn websocket_streams<T>(ws: tokio_tungstenite::WebSocketStream<T>, want: Want, protocol: &str, codec: Codec) -> Streams
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let v5 = protocol == "v5.channel.k8s.io";
    let mut conn = websocket::channels(ws, &[want.stdin, false, false, false, want.tty], codec, v5);
    let writer = |on: bool, id: u32| on.then(|| conn.outbox.writer(id));
    let (stdout, stderr, error) = (writer(want.stdout, 1), writer(want.stderr, 2), conn.outbox.writer(3));
    // As Kubernetes' server does: an empty message on the first output channel says the
    // connection is up.
    stdout.as_ref().or(stderr.as_ref()).unwrap_or(&error).write(&[]).await;
    Streams {
        stdin: conn.inputs[0].take(),
        resize: conn.inputs[4].take(),
        stdout,
        stderr,
        error,
        json_status: v5 || protocol.starts_with("v4."),
        outbox: conn.outbox,
        peer_gone: conn.peer_gone,
        wait_for_client: false,
    }
}

/// How a stream ended.
enum Outcome {
    Exited(Exit),
    /// An attach whose client ended its input.
    Detached,
    Failed(String),
    ClientGone,
}

pub(crate) async fn exec(runtime: &dyn Runtime, request: &ExecRequest, mut streams: Streams) {
    let outcome = match runtime.exec(request).await {
        Ok(stream) => pump(stream, &mut streams, None).await,
        Err(e) => Outcome::Failed(format!("error executing command in container: {e}")),
    };
    finish(streams, outcome, false).await;
}

pub(crate) async fn attach(runtime: &dyn Runtime, request: &AttachRequest, mut streams: Streams) {
    let outcome = match runtime.attach(request).await {
        Ok(attached) => pump(attached.stream, &mut streams, Some(attached.stdin_once)).await,
        Err(e) => Outcome::Failed(format!("error attaching to container: {e}")),
    };
    finish(streams, outcome, true).await;
}

/// Waits on `rx` if there is one; never resolves otherwise.
async fn recv(rx: &mut Option<Incoming>) -> Option<Vec<u8>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Moves bytes between the client's streams and the shim's frames until the process ends, the
/// client goes, or (attach, `Some(stdin_once)`) the client's input ends.
async fn pump(stream: berth_shim::AsyncStream, streams: &mut Streams, attach: Option<bool>) -> Outcome {
    let (mut frames, mut input) = stream.split();
    let (mut stdin_rx, mut resize_rx) = (streams.stdin.take(), streams.resize.take());
    let mut peer_gone = streams.peer_gone.clone();
    let mut pending_resize = Vec::new();
    loop {
        tokio::select! {
            frame = frames.read_frame() => match frame {
                Ok(Some(frame)) => {
                    let out = match frame.kind {
                        FrameKind::Stdout => streams.stdout.as_ref(),
                        FrameKind::Stderr => streams.stderr.as_ref(),
                        FrameKind::Exit => return match serde_json::from_slice::<Exit>(&frame.payload) {
                            Ok(exit) => Outcome::Exited(exit),
                            Err(e) => Outcome::Failed(format!("the shim's exit frame is unreadable: {e}")),
                        },
                        _ => None,
                    };
                    if let Some(out) = out {
                        if !out.write(&frame.payload).await {
                            return Outcome::ClientGone;
                        }
                    }
                }
                Ok(None) => return Outcome::Failed("the container's shim ended the stream before the process's exit".into()),
                Err(e) => return Outcome::Failed(e.to_string()),
            },
            data = recv(&mut stdin_rx) => match data {
                Some(data) => {
                    if input.write_frame(FrameKind::Stdin, &data).await.is_err() {
                        return Outcome::Failed("the container's shim stopped taking input".into());
                    }
                }
                None => {
                    stdin_rx = None;
                    match attach {
                        Some(stdin_once) => {
                            if stdin_once {
                                let _ = input.write_frame(FrameKind::StdinClose, &[]).await;
                            }
                            return Outcome::Detached;
                        }
                        None => {
                            let _ = input.write_frame(FrameKind::StdinClose, &[]).await;
                        }
                    }
                }
            },
            data = recv(&mut resize_rx) => match data {
                Some(data) => {
                    pending_resize.extend_from_slice(&data);
                    for (width, height) in take_sizes(&mut pending_resize) {
                        let _ = input.write_frame(FrameKind::Resize, &berth_shim::protocol::resize_payload(width, height)).await;
                    }
                }
                None => resize_rx = None,
            },
            _ = peer_gone.wait() => return Outcome::ClientGone,
        }
    }
}

/// The terminal sizes complete in `pending` (consumed); an incomplete value stays. A client that
/// sends garbage or an endless value loses its pending bytes, nothing more.
fn take_sizes(pending: &mut Vec<u8>) -> Vec<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let mut sizes = Vec::new();
    let mut values = serde_json::Deserializer::from_slice(pending).into_iter::<Size>();
    loop {
        match values.next() {
            Some(Ok(size)) => sizes.push((size.width, size.height)),
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                pending.clear();
                return sizes;
            }
            None => break,
        }
    }
    let used = values.byte_offset();
    pending.drain(..used);
    if pending.len() > MAX_RESIZE_PENDING {
        pending.clear();
    }
    sizes
}

/// Kubernetes' Status for an outcome: None when nothing is to be said (an old protocol's
/// success, or a client that is gone).
fn status(outcome: &Outcome, json: bool, attach: bool) -> Option<String> {
    let failure = |reason: &str, message: &str, cause: serde_json::Value| serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": reason, "details": {"causes": [cause]}});
    let (value, message) = match outcome {
        Outcome::ClientGone => return None,
        Outcome::Exited(exit) if exit.code != 0 && !attach => {
            let message = format!("command terminated with non-zero exit code: exit status {}", exit.code);
            (failure("NonZeroExitCode", &message, serde_json::json!({"reason": "ExitCode", "message": exit.code.to_string()})), Some(message))
        }
        Outcome::Exited(_) | Outcome::Detached => (serde_json::json!({"metadata": {}, "status": "Success"}), None),
        Outcome::Failed(message) => {
            let mut value = failure("InternalError", message, serde_json::json!({"message": message}));
            value["code"] = 500.into();
            (value, Some(message.clone()))
        }
    };
    if json {
        Some(value.to_string())
    } else {
        message
    }
}

/// Says how it ended, ends every stream, and closes the session.
async fn finish(mut streams: Streams, outcome: Outcome, attach: bool) {
    if let Outcome::Failed(message) = &outcome {
        tracing::info!("exec/attach failed: {message}");
    }
    if !matches!(outcome, Outcome::ClientGone) {
        if let Some(status) = status(&outcome, streams.json_status, attach) {
            streams.error.write(status.as_bytes()).await;
        }
        for writer in [streams.stdout.as_ref(), streams.stderr.as_ref(), Some(&streams.error)].into_iter().flatten() {
            writer.finish().await;
        }
        if streams.wait_for_client {
            crate::server::linger(&mut streams.peer_gone, LINGER).await;
        }
    }
    streams.outbox.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_values_are_taken_as_they_complete() {
        let mut pending = br#"{"Width":80,"Height":24}{"Width":100,"He"#.to_vec();
        assert_eq!(take_sizes(&mut pending), vec![(80, 24)]);
        pending.extend_from_slice(br#"ight":50}"#);
        assert_eq!(take_sizes(&mut pending), vec![(100, 50)]);
        assert!(pending.is_empty());
        let mut garbage = b"][".to_vec();
        assert_eq!(take_sizes(&mut garbage), vec![]);
        assert!(garbage.is_empty());
        let mut endless = format!(r#"{{"Width":"{}"#, "9".repeat(MAX_RESIZE_PENDING * 2)).into_bytes();
        assert_eq!(take_sizes(&mut endless), vec![]);
        assert!(endless.is_empty());
    }

    #[test]
    fn statuses_are_kubernetes_ones() {
        let exit = |code| Outcome::Exited(Exit { code, ..Default::default() });
        assert_eq!(status(&exit(0), true, false).unwrap(), r#"{"metadata":{},"status":"Success"}"#);
        let failed: serde_json::Value = serde_json::from_str(&status(&exit(3), true, false).unwrap()).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));
        assert_eq!(status(&exit(0), false, false), None, "old protocols say nothing on success");
        assert!(status(&exit(3), false, false).unwrap().contains("non-zero exit code"));
        assert_eq!(status(&exit(3), true, true).unwrap(), r#"{"metadata":{},"status":"Success"}"#, "an attach ends well whatever the exit");
        assert_eq!(status(&Outcome::ClientGone, true, false), None);
        let internal: serde_json::Value = serde_json::from_str(&status(&Outcome::Failed("boom".into()), true, false).unwrap()).unwrap();
        assert_eq!((internal["reason"].as_str(), internal["code"].as_i64()), (Some("InternalError"), Some(500)));
    }
}
