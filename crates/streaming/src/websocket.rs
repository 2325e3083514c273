//! Kubernetes' WebSocket streaming (tokio-tungstenite does the WebSocket itself):
//! - the channel protocols (`channel.k8s.io`, `base64.channel.k8s.io`, their `v4.` forms and
//!   `v5.channel.k8s.io`): each message is one channel's bytes behind a channel byte (or, base64,
//!   an ASCII digit and the bytes in base64); v5 adds the client's "close channel N" signal
//!   (`255, N`);
//! - the SPDY tunnel (`SPDY/3.1+portforward.k8s.io`): binary messages carry a SPDY connection's
//!   bytes, as if it were a socket.
//!
//! Bounds: a message or frame is at most [`MAX_MESSAGE`] bytes; each channel's incoming queue is
//! bounded as everywhere else (see [`crate::channels`]).

use crate::channels::{Incoming, Out, Outbox, PeerGone, IN_QUEUE};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub const MAX_MESSAGE: usize = 1 << 20;
const V5_CLOSE: u8 = 255;

pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

pub(crate) async fn server<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> WebSocketStream<T> {
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config())).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Binary,
    Base64,
}

/// A channel connection: per channel, its incoming bytes if the client may write it.
pub(crate) struct ChannelConn {
    pub inputs: Vec<Option<Incoming>>,
    pub outbox: Outbox,
    pub peer_gone: PeerGone,
}

/// Serves the channel protocol on `ws`; `readable[c]` says whether the client may write channel
/// `c`; `close_signal` is v5's.
pub(crate) fn channels<T>(ws: WebSocketStream<T>, readable: &[bool], codec: Codec, close_signal: bool) -> ChannelConn
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let (outbox, queue) = Outbox::new();
    let (gone_tx, peer_gone) = PeerGone::new();
    let mut senders = Vec::new();
    let mut inputs = Vec::new();
    for &r in readable {
        let (tx, rx) = mpsc::channel(IN_QUEUE);
        senders.push(r.then_some(tx));
        inputs.push(r.then_some(rx));
    }
    tokio::spawn(write_channels(sink, queue, codec));
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let data = match message {
                Message::Binary(data) => data.to_vec(),
                Message::Text(text) if codec == Codec::Base64 => {
                    let text = text.as_bytes();
                    let Some((&digit, rest)) = text.split_first() else { continue };
                    let Ok(mut bytes) = base64::engine::general_purpose::STANDARD.decode(rest) else { break };
                    bytes.insert(0, digit.wrapping_sub(b'0'));
                    bytes
                }
                Message::Close(_) => break,
                _ => continue,
            };
            match data.as_slice() {
                [] => {}
                [V5_CLOSE, channel] if close_signal => {
                    if let Some(sender) = senders.get_mut(*channel as usize) {
                        *sender = None;
                    }
                }
                [V5_CLOSE, ..] if close_signal => break,
                [channel, payload @ ..] => {
                    let Some(Some(tx)) = senders.get(*channel as usize) else { continue };
                    if !payload.is_empty() && tx.send(payload.to_vec()).await.is_err() {
                        senders[*channel as usize] = None;
                    }
                }
            }
        }
        drop(senders);
        let _ = gone_tx.send(true);
    });
    ChannelConn { inputs, outbox, peer_gone }
}

async fn write_channels<S>(mut sink: S, mut queue: mpsc::Receiver<Out>, codec: Codec)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(out) = queue.recv().await {
        let message = match out {
            // A channel's end has no message of its own: the connection's close ends them all.
            Out::Data { data, fin: true, .. } if data.is_empty() => continue,
            Out::Data { id, data, .. } => match codec {
                Codec::Binary => {
                    let mut m = Vec::with_capacity(data.len() + 1);
                    m.push(id as u8);
                    m.extend_from_slice(&data);
                    Message::binary(m)
                }
                Codec::Base64 => {
                    let digit = char::from(b'0' + id as u8);
                    Message::text(format!("{digit}{}", base64::engine::general_purpose::STANDARD.encode(&data)))
                }
            },
            Out::Close => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000.into(), reason: "".into() }))).await;
                let _ = sink.close().await;
                return;
            }
            Out::Reply { .. } | Out::Reset { .. } | Out::Ping { .. } => continue,
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
}

/// The SPDY tunnel: a byte stream whose other end is the WebSocket's binary messages.
pub(crate) fn tunnel<T>(ws: WebSocketStream<T>) -> tokio::io::DuplexStream
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 << 10);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(data) if to_spdy.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_spdy.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000.into(), reason: "".into() }))).await;
        let _ = sink.close().await;
    });
    theirs
}
