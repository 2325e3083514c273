//! The server side of one SPDY/3.1 connection, as Kubernetes' clients (moby/spdystream) use it:
//! the client opens every stream (odd ids), the server accepts each with a SYN_REPLY and hands it
//! on; data flows both ways until FIN or RST_STREAM; pings are answered.
//!
//! Flow control is TCP's: spdystream neither sends nor honours WINDOW_UPDATE, so windows are not
//! kept. Instead each stream's incoming queue is bounded ([`IN_QUEUE`]) and the connection is
//! not read further while one is full; outgoing data waits for the socket. A client that stops
//! reading stalls its own session, and berthd's memory stays bounded either way.
//!
//! Bounds: frames and header blocks as in [`super::frame`] and [`super::headers`]; at most
//! [`MAX_STREAMS`] open streams (more are refused with RST_STREAM). Any protocol error ends the
//! connection.

use super::frame::{self, Frame};
use super::headers::{self, Headers};
use crate::channels::{Incoming, Out, Outbox, PeerGone, IN_QUEUE};
use std::collections::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Open streams per connection (port-forward opens two per forwarded connection).
pub const MAX_STREAMS: usize = 512;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 << 10;
/// Bytes gathered from the writer queue into one socket write.
const WRITE_BATCH: usize = 256 << 10;

/// A stream the client opened.
#[derive(Debug)]
pub(crate) struct NewStream {
    pub id: u32,
    pub headers: Headers,
    /// Its data; ends at the client's FIN or RST_STREAM, or when the connection goes.
    pub data: Incoming,
}

/// A running session: streams as the client opens them, the writer queue, and the end signal.
pub(crate) struct Session {
    pub streams: mpsc::Receiver<NewStream>,
    pub outbox: Outbox,
    pub peer_gone: PeerGone,
}

impl Session {
    /// Serves SPDY on `io` (after the HTTP upgrade, or inside a WebSocket tunnel).
    pub(crate) fn start<T: AsyncRead + AsyncWrite + Send + 'static>(io: T) -> Session {
        let (read, write) = tokio::io::split(io);
        let (outbox, queue) = Outbox::new();
        let (gone_tx, peer_gone) = PeerGone::new();
        let (streams_tx, streams) = mpsc::channel(16);
        tokio::spawn(write_loop(write, queue));
        let reader = Reader { outbox: outbox.clone(), new_streams: streams_tx, open: HashMap::new(), headers: headers::Decoder::default() };
        tokio::spawn(reader.run(read, gone_tx));
        Session { streams, outbox, peer_gone }
    }
}

struct Reader {
    outbox: Outbox,
    new_streams: mpsc::Sender<NewStream>,
    open: HashMap<u32, mpsc::Sender<Vec<u8>>>,
    headers: headers::Decoder,
}

impl Reader {
    async fn run(mut self, mut read: impl AsyncRead + Unpin, gone: watch::Sender<bool>) {
        if let Err(reason) = self.read_frames(&mut read).await {
            tracing::debug!("SPDY connection ended: {reason}");
        }
        // Every incoming stream ends with the connection.
        self.open.clear();
        let _ = gone.send(true);
    }

    async fn read_frames(&mut self, read: &mut (impl AsyncRead + Unpin)) -> Result<(), String> {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        loop {
            while let Some((frame, used)) = frame::decode(&buf).map_err(|e| e.to_string())? {
                buf.drain(..used);
                if !self.handle(frame).await? {
                    return Ok(());
                }
            }
            // A frame is at most MAX_PAYLOAD plus its header: the buffer never holds more than
            // one partial frame and one chunk.
            let start = buf.len();
            buf.resize(start + READ_CHUNK, 0);
            let n = read.read(&mut buf[start..]).await.map_err(|e| e.to_string())?;
            buf.truncate(start + n);
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Acts on one frame; false when the client said goodbye.
    async fn handle(&mut self, frame: Frame) -> Result<bool, String> {
        match frame {
            Frame::SynStream { stream_id, fin, header_block, .. } => {
                // Decoded whatever happens next: the zlib state spans the connection.
                let headers = self.headers.decode(&header_block).map_err(|e| e.to_string())?;
                if stream_id % 2 == 0 || self.open.contains_key(&stream_id) {
                    self.outbox.send(Out::Reset { id: stream_id, status: frame::PROTOCOL_ERROR }).await;
                    return Ok(true);
                }
                if self.open.len() >= MAX_STREAMS {
                    self.outbox.send(Out::Reset { id: stream_id, status: frame::REFUSED_STREAM }).await;
                    return Ok(true);
                }
                let (tx, data) = mpsc::channel(IN_QUEUE);
                if !fin {
                    self.open.insert(stream_id, tx);
                }
                self.outbox.send(Out::Reply { id: stream_id }).await;
                if self.new_streams.send(NewStream { id: stream_id, headers, data }).await.is_err() {
                    // Nobody takes streams any more: the session is ending.
                    self.open.remove(&stream_id);
                    self.outbox.send(Out::Reset { id: stream_id, status: frame::REFUSED_STREAM }).await;
                }
            }
            Frame::Data { stream_id, fin, data } => {
                if let Some(tx) = self.open.get(&stream_id) {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        // The stream's consumer is done with it; later data is dropped.
                        self.open.remove(&stream_id);
                    }
                }
                if fin {
                    self.open.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                self.open.remove(&stream_id);
            }
            Frame::Ping { id } => {
                self.outbox.send(Out::Ping { id }).await;
            }
            Frame::GoAway { .. } => return Ok(false),
            Frame::SynReply { header_block, .. } | Frame::Headers { header_block, .. } => {
                self.headers.decode(&header_block).map_err(|e| e.to_string())?;
            }
            Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
        Ok(true)
    }
}

async fn write_loop(mut write: impl AsyncWrite + Unpin, mut queue: mpsc::Receiver<Out>) {
    let mut headers = headers::Encoder::default();
    let mut buf = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut close = false;
        // Everything already queued goes out in one write.
        while let Some(out) = next.take() {
            match out {
                Out::Data { id, data, fin } => frame::encode(&Frame::Data { stream_id: id, fin, data }, &mut buf),
                Out::Reply { id } => frame::encode(&Frame::SynReply { stream_id: id, fin: false, header_block: headers.encode(&[]) }, &mut buf),
                Out::Reset { id, status } => frame::encode(&Frame::RstStream { stream_id: id, status }, &mut buf),
                Out::Ping { id } => frame::encode(&Frame::Ping { id }, &mut buf),
                Out::Close => {
                    frame::encode(&Frame::GoAway { last_good_stream_id: 0, status: 0 }, &mut buf);
                    close = true;
                    break;
                }
            }
            if buf.len() < WRITE_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            return;
        }
        buf.clear();
        if close {
            let _ = write.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::Writer;

    /// A client's side of a session: frames written and read over an in-memory pipe.
    struct Client {
        io: tokio::io::DuplexStream,
        enc: headers::Encoder,
        dec: headers::Decoder,
        buf: Vec<u8>,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let mut out = Vec::new();
            frame::encode(&frame, &mut out);
            self.io.write_all(&out).await.unwrap();
        }

        async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
            let header_block = self.enc.encode(headers);
            self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, fin: false, unidirectional: false, header_block }).await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some((frame, used)) = frame::decode(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    if let Frame::SynReply { header_block, .. } = &frame {
                        self.dec.decode(header_block).unwrap();
                    }
                    return Some(frame);
                }
                let mut chunk = [0u8; 4096];
                let n = self.io.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    fn pair() -> (Client, Session) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let client = Client { io: ours, enc: headers::Encoder::default(), dec: headers::Decoder::default(), buf: Vec::new() };
        (client, Session::start(theirs))
    }

    #[tokio::test]
    async fn streams_are_accepted_data_flows_and_pings_are_answered() {
        let (mut client, mut session) = pair();
        client.open(1, &[("streamtype", "stdin")]).await;
        assert!(matches!(client.next().await, Some(Frame::SynReply { stream_id: 1, .. })));
        let mut stream = session.streams.recv().await.unwrap();
        assert_eq!((stream.id, stream.headers.get("streamType")), (1, Some("stdin")));

        client.send(Frame::Data { stream_id: 1, fin: true, data: b"typed".to_vec() }).await;
        assert_eq!(stream.data.recv().await.as_deref(), Some(&b"typed"[..]));
        assert_eq!(stream.data.recv().await, None, "FIN ends the stream");

        client.send(Frame::Ping { id: 7 }).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 7 }));

        let out: Writer = session.outbox.writer(1);
        assert!(out.write(b"output").await);
        out.finish().await;
        assert_eq!(client.next().await, Some(Frame::Data { stream_id: 1, fin: false, data: b"output".to_vec() }));
        assert_eq!(client.next().await, Some(Frame::Data { stream_id: 1, fin: true, data: vec![] }));

        session.outbox.close().await;
        assert!(matches!(client.next().await, Some(Frame::GoAway { .. })));
        assert_eq!(client.next().await, None, "the server closes after GOAWAY");
    }

    #[tokio::test]
    async fn bad_stream_ids_are_reset_and_garbage_ends_the_connection() {
        let (mut client, mut session) = pair();
        client.open(2, &[]).await;
        assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 2, status: frame::PROTOCOL_ERROR }));
        client.open(1, &[]).await;
        assert!(matches!(client.next().await, Some(Frame::SynReply { stream_id: 1, .. })));
        client.open(1, &[]).await;
        assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 1, status: frame::PROTOCOL_ERROR }));
        let mut stream = session.streams.recv().await.unwrap();

        client.io.write_all(&[0x80, 2, 0, 1, 0, 0, 0, 0]).await.unwrap();
        session.peer_gone.wait().await;
        assert_eq!(stream.data.recv().await, None, "the stream ends with the connection");
    }

    #[tokio::test]
    async fn a_slow_consumer_stops_the_reading_instead_of_buffering() {
        let (mut client, mut session) = pair();
        client.open(1, &[]).await;
        let _stream = session.streams.recv().await.unwrap();
        // Far more than the stream's queue holds; nobody reads it.
        for _ in 0..IN_QUEUE * 4 {
            client.send(Frame::Data { stream_id: 1, fin: false, data: vec![0; 1024] }).await;
        }
        client.send(Frame::Ping { id: 9 }).await;
        assert!(matches!(client.next().await, Some(Frame::SynReply { .. })));
        let answered = tokio::time::timeout(std::time::Duration::from_millis(300), client.next()).await;
        assert!(answered.is_err(), "the ping behind the unread data waits: {answered:?}");
    }
}
