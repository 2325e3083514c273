//! A TCP proxy in front of a registry that damages large responses (the layer blobs) on purpose:
//! it flips one byte of the body, cuts the first such response half way (later ones pass), or
//! slows them down.
//! Byte-level and per connection: HTTP/1.1 clients send one request at a time on a connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Responses with a body at least this large are the ones damaged.
const LARGE: usize = 100_000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip one byte in the middle of every large body.
    CorruptByte,
    /// Close the first large response half way through its body.
    CutOnce,
    /// Pass large bodies on slowly (16 KiB every 20 ms), so a test can act during a download.
    Slow,
}

pub struct FaultyProxy {
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// How many responses were damaged (for `Slow`: how many large ones were slowed).
    pub damaged: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl FaultyProxy {
    pub fn start(upstream: &str, fault: Fault) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (damaged, stop) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicBool::new(false)));
        let (upstream, counter, stopping, cut) = (upstream.to_string(), damaged.clone(), stop.clone(), Arc::new(AtomicBool::new(false)));
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(c2, s2));
                let (counter, cut) = (counter.clone(), cut.clone());
                std::thread::spawn(move || damage(server, client, fault, &counter, &cut));
            }
        });
        FaultyProxy { address, damaged, stop, acceptor: Some(acceptor) }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Copies the server's responses to the client, damaging the body of large ones.
fn damage(mut server: TcpStream, mut client: TcpStream, fault: Fault, damaged: &AtomicU32, cut_done: &AtomicBool) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Per response: None while reading headers; Some((body length, body bytes seen)).
    let mut body: Option<(usize, usize)> = None;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        if body.is_none() {
            pending.extend_from_slice(&chunk);
            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let headers = String::from_utf8_lossy(&pending[..end]).to_lowercase();
            let length = headers.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            body = Some((length, 0));
            chunk = std::mem::take(&mut pending);
            let head_len = end + 4;
            if client.write_all(&chunk[..head_len]).is_err() {
                break;
            }
            chunk.drain(..head_len);
        }
        if let Some((length, seen)) = body.as_mut() {
            let large = *length >= LARGE;
            let middle = *length / 2;
            if large && fault == Fault::CorruptByte && (*seen..*seen + chunk.len()).contains(&middle) {
                chunk[middle - *seen] ^= 0x55;
                damaged.fetch_add(1, Ordering::SeqCst);
            }
            if large && fault == Fault::CutOnce && *seen + chunk.len() > middle && !cut_done.swap(true, Ordering::SeqCst) {
                let _ = client.write_all(&chunk[..middle - *seen]);
                damaged.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            if large && fault == Fault::Slow && *seen == 0 {
                damaged.fetch_add(1, Ordering::SeqCst);
            }
            *seen += chunk.len();
            let written = if large && fault == Fault::Slow {
                chunk.chunks(16 * 1024).try_for_each(|piece| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    client.write_all(piece)
                })
            } else {
                client.write_all(&chunk)
            };
            if written.is_err() {
                break;
            }
            if *seen >= *length {
                body = None;
            }
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}
