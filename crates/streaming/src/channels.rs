//! What exec, attach and port-forward see of a connection, whatever its transport: streams of
//! bytes in (a bounded queue each: when a consumer is slow, the connection is not read further,
//! so a client cannot grow berthd's memory), streams of bytes out through one ordered queue to
//! the connection's writer (so output, the status and the end arrive in the order they were
//! written), and a signal that the client has gone.

use tokio::sync::{mpsc, watch};

/// Chunks queued per incoming stream before the connection stops being read.
pub(crate) const IN_QUEUE: usize = 8;
/// Items queued for the connection's writer before writers wait.
pub(crate) const OUT_QUEUE: usize = 64;

/// One item for a connection's writer.
#[derive(Debug)]
pub(crate) enum Out {
    /// Bytes on stream `id` (an SPDY stream, or a WebSocket channel); `fin` ends that stream.
    Data { id: u32, data: Vec<u8>, fin: bool },
    /// SPDY only: accepts stream `id`.
    Reply { id: u32 },
    /// SPDY only: refuses or ends stream `id`.
    Reset { id: u32, status: u32 },
    /// SPDY only: answers a ping.
    Ping { id: u32 },
    /// Ends the connection once everything queued before it is written.
    Close,
}

/// The sending side of a connection's writer queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(pub(crate) mpsc::Sender<Out>);

impl Outbox {
    pub(crate) fn new() -> (Outbox, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        (Outbox(tx), rx)
    }

    /// Queues `out`; false once the writer has gone (the connection is over).
    pub(crate) async fn send(&self, out: Out) -> bool {
        self.0.send(out).await.is_ok()
    }

    pub(crate) fn writer(&self, id: u32) -> Writer {
        Writer { outbox: self.clone(), id }
    }

    pub(crate) async fn close(&self) {
        self.send(Out::Close).await;
    }
}

/// One outgoing stream.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    outbox: Outbox,
    id: u32,
}

impl Writer {
    /// Queues `data`; false once the connection is over.
    pub(crate) async fn write(&self, data: &[u8]) -> bool {
        self.outbox.send(Out::Data { id: self.id, data: data.to_vec(), fin: false }).await
    }

    /// Ends the stream (the client sees its end of file).
    pub(crate) async fn finish(&self) {
        self.outbox.send(Out::Data { id: self.id, data: Vec::new(), fin: true }).await;
    }
}

/// An incoming stream: chunks until the client ends it (None).
pub(crate) type Incoming = mpsc::Receiver<Vec<u8>>;

/// Becomes true when the connection's reader has stopped (the client closed it or broke it).
#[derive(Debug, Clone)]
pub(crate) struct PeerGone(pub(crate) watch::Receiver<bool>);

impl PeerGone {
    pub(crate) fn new() -> (watch::Sender<bool>, PeerGone) {
        let (tx, rx) = watch::channel(false);
        (tx, PeerGone(rx))
    }

    /// Resolves once the client is gone.
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|gone| *gone).await;
    }
}
