//! A registry on loopback that attacks its clients: it asks for a Bearer token from its own realm
//! (so every pull takes the token path), then answers as the [`Attack`] set at the moment says:
//! oversized or endless manifest, token and error bodies, answers that stall, error text with
//! control characters, or, as [`Attack::None`], the real registry behind it.
//! One request per connection (every answer says `Connection: close`); an endless body stops
//! after [`ENDLESS_CAP`] bytes, so a client without bounds fails a memory check instead of the
//! machine.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most an "endless" body sends.
pub const ENDLESS_CAP: u64 = 512 << 20;
/// The token the realm hands out and the registry wants.
const TOKEN: &str = "berth-test-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// None: requests with the token go to the real registry behind.
    None,
    /// A manifest announced as 1 GiB (Content-Length), then streamed.
    HugeManifest,
    /// A manifest without a length that does not end.
    EndlessManifest,
    /// A token response that does not end.
    EndlessToken,
    /// A 500 whose body does not end.
    EndlessError,
    /// Reads the request and never answers.
    Stall,
    /// Answers a manifest's headers and 10 of its 1,000 bytes, then nothing.
    StallBody,
    /// A 404 whose error message holds newlines, escape sequences and 10,000 more characters.
    ControlCharacters,
}

pub struct HostileRegistry {
    /// `127.0.0.1:<port>`.
    pub address: String,
    attack: Arc<Mutex<Attack>>,
    /// Tokens handed out by the realm.
    pub tokens: Arc<AtomicU32>,
    /// Connections held silent by [`Attack::Stall`] right now (until their client closes them).
    pub stalled: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl HostileRegistry {
    /// In front of the registry at `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str) -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (attack, tokens, stop) = (Arc::new(Mutex::new(Attack::None)), Arc::new(AtomicU32::new(0)), Arc::new(AtomicBool::new(false)));
        let stalled = Arc::new(AtomicU32::new(0));
        let acceptor = {
            let (attack, tokens, stop, address, upstream) = (attack.clone(), tokens.clone(), stop.clone(), address.clone(), upstream.to_string());
            let stalled = stalled.clone();
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let now = *attack.lock().unwrap();
                    let (tokens, stop, address, upstream, stalled) =
                        (tokens.clone(), stop.clone(), address.clone(), upstream.clone(), stalled.clone());
                    std::thread::spawn(move || serve(client, now, &address, &upstream, &tokens, &stalled, &stop));
                }
            })
        };
        HostileRegistry { address, attack, tokens, stalled, stop, acceptor: Some(acceptor) }
    }

    pub fn set(&self, attack: Attack) {
        *self.attack.lock().unwrap() = attack;
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(mut client: TcpStream, attack: Attack, address: &str, upstream: &str, tokens: &AtomicU32, stalled: &AtomicU32, stop: &AtomicBool) {
    let Some(head) = read_head(&mut client) else { return };
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let authorized = head.lines().any(|line| line.to_ascii_lowercase().starts_with("authorization:") && line.ends_with(&format!("Bearer {TOKEN}")));
    let json = "Content-Type: application/json\r\n";
    let _ = match (path.starts_with("/token"), attack, authorized) {
        (true, Attack::EndlessToken, _) => endless(&mut client, &format!("HTTP/1.1 200 OK\r\n{json}Connection: close\r\n\r\n{{\"token\":\""), stop),
        (true, _, _) => {
            tokens.fetch_add(1, Ordering::SeqCst);
            let body = format!("{{\"token\":\"{TOKEN}\"}}");
            client.write_all(format!("HTTP/1.1 200 OK\r\n{json}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
        }
        (false, _, false) => client.write_all(
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{address}/token\",service=\"hostile\"\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        ),
        (false, Attack::None, true) => forward(&mut client, &head, upstream),
        (false, Attack::HugeManifest, true) => endless(
            &mut client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1073741824\r\n\r\n",
            stop,
        ),
        (false, Attack::EndlessManifest, true) => endless(
            &mut client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n{\"a\":\"",
            stop,
        ),
        (false, Attack::EndlessToken, true) => Ok(()),
        (false, Attack::EndlessError, true) => {
            endless(&mut client, &format!("HTTP/1.1 500 Internal Server Error\r\n{json}Connection: close\r\n\r\n"), stop)
        }
        (false, Attack::Stall, true) => {
            stalled.fetch_add(1, Ordering::SeqCst);
            stall(&mut client, stop);
            stalled.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
        (false, Attack::StallBody, true) => {
            let sent = client.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000\r\n\r\n{\"schemaVer",
            );
            stall(&mut client, stop);
            sent
        }
        (false, Attack::ControlCharacters, true) => {
            let message = format!("line one\\nline two\\u001b[31mred{}", "A".repeat(10_000));
            let body = format!("{{\"errors\":[{{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"{message}\"}}]}}");
            client.write_all(format!("HTTP/1.1 404 Not Found\r\n{json}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
        }
    };
}

/// The request line and headers (GET and HEAD only: no body follows).
fn read_head(client: &mut TcpStream) -> Option<String> {
    client.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || client.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

/// `head`, then filler until [`ENDLESS_CAP`], the client goes away, or the registry stops.
fn endless(client: &mut TcpStream, head: &str, stop: &AtomicBool) -> std::io::Result<()> {
    client.write_all(head.as_bytes())?;
    let filler = vec![b'a'; 64 << 10];
    let mut sent = 0;
    while sent < ENDLESS_CAP && !stop.load(Ordering::SeqCst) {
        client.write_all(&filler)?;
        sent += filler.len() as u64;
    }
    Ok(())
}

/// Holds the connection open, silent, until the client closes it or the registry stops.
fn stall(client: &mut TcpStream, stop: &AtomicBool) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::SeqCst) {
        match client.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// The request to `upstream` without its Authorization and with `Connection: close`; the answer
/// back as it comes.
fn forward(client: &mut TcpStream, head: &str, upstream: &str) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let mut request = String::new();
    for line in head.trim_end().lines() {
        let lower = line.to_ascii_lowercase();
        if !lower.starts_with("authorization:") && !lower.starts_with("connection:") && !lower.starts_with("host:") {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
    server.write_all(request.as_bytes())?;
    std::io::copy(&mut server, client).map(drop)
}
