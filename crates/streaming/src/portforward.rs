//! Port-forward: each forwarded connection is a pair — a data stream (both ways) and an error
//! stream (a failure's message, from us) — joined to a new TCP connection to the port on the
//! pod's localhost, made by the [`Runtime`] in the pod's network namespace.
//!
//! Over SPDY (and SPDY tunnelled in a WebSocket) the client opens the pairs, naming `port` and
//! `requestID` in each stream's headers; a pair whose second half does not come within the
//! stream creation timeout is dropped. Over the WebSocket channel protocol the URL names the
//! ports, each gets channels 2i (data) and 2i+1 (error), and both begin with the port
//! (little-endian u16).

use crate::channels::{Incoming, PeerGone, Writer};
use crate::spdy::frame;
use crate::spdy::session::Session;
use crate::websocket::ChannelConn;
use crate::Runtime;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Half-made pairs held per connection.
const MAX_PENDING_PAIRS: usize = 256;

#[derive(Default)]
struct Half {
    error: Option<Writer>,
    data: Option<(Writer, Incoming)>,
    port: u16,
    since: Option<Instant>,
}

pub(crate) async fn spdy(runtime: Arc<dyn Runtime>, pod_id: String, mut session: Session, timeout: Duration) {
    let mut pending: HashMap<String, Half> = HashMap::new();
    let mut tick = tokio::time::interval(timeout.min(Duration::from_secs(5)));
    let mut peer_gone = session.peer_gone.clone();
    loop {
        tokio::select! {
            stream = session.streams.recv() => {
                let Some(stream) = stream else { break };
                let port = stream.headers.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
                let request_id = stream.headers.get("requestID").unwrap_or_default().to_string();
                let kind = stream.headers.get("streamType").unwrap_or_default().to_string();
                let (Some(port), "data" | "error") = (port, kind.as_str()) else {
                    session.outbox.send(crate::channels::Out::Reset { id: stream.id, status: frame::PROTOCOL_ERROR }).await;
                    continue;
                };
                if !pending.contains_key(&request_id) && pending.len() >= MAX_PENDING_PAIRS {
                    session.outbox.send(crate::channels::Out::Reset { id: stream.id, status: frame::REFUSED_STREAM }).await;
                    continue;
                }
                let half = pending.entry(request_id.clone()).or_default();
                half.port = port;
                half.since.get_or_insert_with(Instant::now);
                let writer = session.outbox.writer(stream.id);
                if kind == "error" {
                    half.error = Some(writer);
                } else {
                    half.data = Some((writer, stream.data));
                }
                if half.error.is_some() && half.data.is_some() {
                    let Half { error: Some(error), data: Some((data, incoming)), port, .. } = pending.remove(&request_id).expect("just seen") else { unreachable!() };
                    tokio::spawn(forward(runtime.clone(), pod_id.clone(), port, incoming, data, error));
                }
            }
            _ = tick.tick() => pending.retain(|_, half| half.since.is_some_and(|since| since.elapsed() < timeout)),
            _ = peer_gone.wait() => break,
        }
    }
    // Forwarded connections end with the client's streams (the session's reader ends them).
    session.outbox.close().await;
}

pub(crate) async fn channels(runtime: Arc<dyn Runtime>, pod_id: String, ports: Vec<u16>, mut conn: ChannelConn) {
    let mut forwards = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let (data, error) = (conn.outbox.writer(2 * i as u32), conn.outbox.writer(2 * i as u32 + 1));
        data.write(&port.to_le_bytes()).await;
        error.write(&port.to_le_bytes()).await;
        let Some(incoming) = conn.inputs[2 * i].take() else { continue };
        forwards.push(tokio::spawn(forward(runtime.clone(), pod_id.clone(), port, incoming, data, error)));
    }
    let mut peer_gone: PeerGone = conn.peer_gone.clone();
    let all = futures_util::future::join_all(forwards);
    tokio::select! {
        _ = all => {}
        _ = peer_gone.wait() => {}
    }
    conn.outbox.close().await;
}

/// Joins one pair to a new connection to `port` in the pod. The client's end of input is passed
/// on as a half-close (the pod may still answer); the pod's end ends the pair, whatever the client
/// still sends (as containerd does: a WebSocket channel has no end of its own to wait for).
async fn forward(runtime: Arc<dyn Runtime>, pod_id: String, port: u16, mut incoming: Incoming, data: Writer, error: Writer) {
    let tcp = match runtime.port_forward(&pod_id, port).await {
        Ok(tcp) => tcp,
        Err(e) => {
            error.write(format!("error forwarding port {port} to pod {pod_id}: {e}").as_bytes()).await;
            error.finish().await;
            data.finish().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let upstream = async {
        while let Some(chunk) = incoming.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) if !data.write(&buf[..n]).await => break,
                Ok(_) => {}
            }
        }
        data.finish().await;
    };
    tokio::pin!(downstream);
    tokio::select! {
        _ = &mut downstream => {}
        _ = upstream => downstream.await,
    }
    error.finish().await;
}
