//! The HTTP side: `/{exec,attach,portforward}/<token>` on the configured address. A request names
//! a token (unknown, reused, expired or of another kind: 404), then asks to upgrade:
//! - to SPDY/3.1 (`Upgrade: SPDY/3.1`), choosing a `X-Stream-Protocol-Version` the client offers
//!   (in the client's order; none offered means the oldest; none we speak is 403);
//! - to a WebSocket (`Upgrade: websocket`), choosing a `Sec-WebSocket-Protocol` the same way.
//!
//! Anything else is 400. Connections get TCP keepalive, so a client that vanished without a
//! word (a half-open connection) is noticed and its session ended. With [`Tls`] in the config the
//! server speaks HTTPS only (rustls) and its URLs say so.

use crate::channels::PeerGone;
use crate::tokens::Tokens;
use crate::websocket::{self, Codec};
use crate::{portforward, remotecommand, Error, Request, Runtime};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The SPDY exec and attach protocols, newest first.
const REMOTECOMMAND_SPDY: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
const PORTFORWARD_SPDY: &[&str] = &["portforward.k8s.io"];
/// WebSocket subprotocols.
const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V4_BASE64: &str = "v4.base64.channel.k8s.io";
const V1: &str = "channel.k8s.io";
const V1_BASE64: &str = "base64.channel.k8s.io";
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const REMOTECOMMAND_WEBSOCKET: &[&str] = &[V5, V4, V4_BASE64, V1, V1_BASE64];
const PORTFORWARD_WEBSOCKET: &[&str] = &[SPDY_TUNNEL, V4, V4_BASE64, V1, V1_BASE64];

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub address: SocketAddr,
    /// How long a URL stays valid.
    pub token_ttl: Duration,
    /// How long a SPDY client may take to open the streams of an exec or attach, or the second
    /// stream of a port-forward pair.
    pub stream_creation_timeout: Duration,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<Tls>,
}

/// PEM files: the certificate chain (leaf first) and its private key.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// How long a client may take over the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn tls_acceptor(tls: &Tls) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid =
        |what: &std::path::Path, e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", what.display()));
    let certs =
        CertificateDer::pem_file_iter(&tls.cert).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|e| invalid(&tls.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| invalid(&tls.key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| invalid(&tls.cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: ([127, 0, 0, 1], 0).into(),
            token_ttl: Duration::from_secs(60),
            stream_creation_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

pub struct Server {
    address: SocketAddr,
    scheme: &'static str,
    tokens: Arc<Tokens>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

struct State {
    tokens: Arc<Tokens>,
    runtime: Arc<dyn Runtime>,
    config: Config,
}

impl Server {
    /// Listens on `config.address` and serves in the background until dropped.
    pub async fn start(config: Config, runtime: Arc<dyn Runtime>) -> std::io::Result<Server> {
        let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind(config.address).await?;
        let address = listener.local_addr()?;
        let tokens = Arc::new(Tokens::new(config.token_ttl));
        let state = Arc::new(State { tokens: tokens.clone(), runtime, config });
        let accept = tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of fds, say: a pause instead of a busy loop until some close.
                        tracing::warn!("streaming server: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30)).with_interval(Duration::from_secs(10));
                let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
                // Sessions write small frames as they come (replies, a status, FINs): Nagle's
                // algorithm would hold each behind the client's delayed ACK (40 ms a time).
                let _ = tcp.set_nodelay(true);
                let (state, acceptor) = (state.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_http(tcp, state).await,
                        Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => serve_http(tls, state).await,
                            Ok(Err(e)) => tracing::debug!("streaming TLS handshake: {e}"),
                            Err(_) => tracing::debug!("streaming TLS handshake timed out"),
                        },
                    }
                });
            }
        });
        Ok(Server { address, scheme, tokens, accept })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The one-time URL that serves `request`.
    pub fn url(&self, request: Request) -> Result<String, Error> {
        request.validate()?;
        let kind = match request {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        };
        let token = self.tokens.insert(request).ok_or(Error::TooManyInFlight)?;
        Ok(format!("{}://{}/{kind}/{token}", self.scheme, self.address))
    }
}

async fn serve_http<T>(io: T, state: Arc<State>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(route(&state, request)) }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!("streaming connection: {e}");
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}

/// Every value of header `name`, comma lists split, in order.
fn offered<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).collect()
}

/// The first protocol the client offers that we speak: Some(None) when it offers none.
fn negotiate<'a>(offers: &[&str], ours: &[&'a str]) -> Option<Option<&'a str>> {
    if offers.is_empty() {
        return Some(None);
    }
    offers.iter().find_map(|offer| ours.iter().find(|ours| *ours == offer)).map(|p| Some(*p))
}

fn route(state: &Arc<State>, mut http: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let path = http.uri().path().trim_start_matches('/');
    let Some((kind, token)) = path.split_once('/') else { return reply(StatusCode::NOT_FOUND, "not found") };
    let request = match (kind, state.tokens.consume(token)) {
        ("exec", Some(r @ Request::Exec(_))) | ("attach", Some(r @ Request::Attach(_))) | ("portforward", Some(r @ Request::PortForward(_))) => r,
        _ => return reply(StatusCode::NOT_FOUND, "not found"),
    };
    let upgrade = http.headers().get(UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let on_upgrade = hyper::upgrade::on(&mut http);
    let headers = http.headers();
    let mut response = reply(StatusCode::SWITCHING_PROTOCOLS, "");
    *response.body_mut() = Full::new(Bytes::new());
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let state = state.clone();
    if upgrade == "websocket" {
        let Some(key) = headers.get("sec-websocket-key") else {
            return reply(StatusCode::BAD_REQUEST, "a WebSocket upgrade needs Sec-WebSocket-Key");
        };
        let ours = if matches!(request, Request::PortForward(_)) { PORTFORWARD_WEBSOCKET } else { REMOTECOMMAND_WEBSOCKET };
        let Some(protocol) = negotiate(&offered(headers, "sec-websocket-protocol"), ours) else {
            return reply(StatusCode::BAD_REQUEST, &format!("none of the WebSocket subprotocols offered is spoken here: {}", ours.join(", ")));
        };
        let ports = if protocol == Some(SPDY_TUNNEL) { Ok(Vec::new()) } else { query_ports(http.uri().query()) };
        let ports = match (&request, ports) {
            (Request::PortForward(_), Err(e)) => return reply(StatusCode::BAD_REQUEST, &e),
            (_, ports) => ports.unwrap_or_default(),
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        response.headers_mut().insert(UPGRADE, HeaderValue::from_static("websocket"));
        response.headers_mut().insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("base64 is a header value"));
        if let Some(protocol) = protocol {
            response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        }
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let ws = websocket::server(TokioIo::new(upgraded)).await;
            serve_websocket(state, request, ws, protocol.unwrap_or(V1), ports).await;
        });
        return response;
    }
    if upgrade.starts_with("spdy/3.1") {
        let ours = if matches!(request, Request::PortForward(_)) { PORTFORWARD_SPDY } else { REMOTECOMMAND_SPDY };
        let offers = offered(headers, "x-stream-protocol-version");
        let Some(protocol) = negotiate(&offers, ours) else {
            let mut refused = reply(StatusCode::FORBIDDEN, &format!("none of the stream protocols offered ({}) is spoken here", offers.join(", ")));
            refused.headers_mut().insert("x-accepted-stream-protocol-versions", HeaderValue::from_str(&ours.join(",")).expect("ASCII"));
            return refused;
        };
        response.headers_mut().insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        if let Some(protocol) = protocol {
            response.headers_mut().insert("x-stream-protocol-version", HeaderValue::from_static(protocol));
        }
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let session = crate::spdy::session::Session::start(TokioIo::new(upgraded));
            serve_spdy(state, request, session, protocol.unwrap_or(V1)).await;
        });
        return response;
    }
    reply(StatusCode::BAD_REQUEST, "upgrade to SPDY/3.1 or to a WebSocket")
}

/// The WebSocket port-forward's ports: every `port` parameter, comma lists split.
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (key, value) in query.unwrap_or_default().split('&').filter_map(|kv| kv.split_once('=')) {
        if key != "port" {
            continue;
        }
        for p in value.split("%2C").flat_map(|v| v.split(',')) {
            match p.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("{p:?} is not a port")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

async fn serve_spdy(state: Arc<State>, request: Request, session: crate::spdy::session::Session, protocol: &str) {
    let timeout = state.config.stream_creation_timeout;
    match request {
        Request::PortForward(r) => portforward::spdy(state.runtime.clone(), r.pod_id, session, timeout).await,
        Request::Exec(r) => {
            let want = remotecommand::Want { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
            if let Some(streams) = remotecommand::spdy_streams(session, want, protocol, timeout).await {
                remotecommand::exec(&*state.runtime, &r, streams).await;
            }
        }
        Request::Attach(r) => {
            let want = remotecommand::Want { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
            if let Some(streams) = remotecommand::spdy_streams(session, want, protocol, timeout).await {
                remotecommand::attach(&*state.runtime, &r, streams).await;
            }
        }
    }
}

async fn serve_websocket<T>(state: Arc<State>, request: Request, ws: tokio_tungstenite::WebSocketStream<T>, protocol: &str, ports: Vec<u16>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let codec = if protocol.contains("base64") { Codec::Base64 } else { Codec::Binary };
    match request {
        Request::PortForward(r) if protocol == SPDY_TUNNEL => {
            let session = crate::spdy::session::Session::start(websocket::tunnel(ws));
            portforward::spdy(state.runtime.clone(), r.pod_id, session, state.config.stream_creation_timeout).await;
        }
        Request::PortForward(r) => {
            // Per port, a data channel (both ways) and an error channel (ours only).
            let readable: Vec<bool> = ports.iter().flat_map(|_| [true, false]).collect();
            let conn = websocket::channels(ws, &readable, codec, false);
            portforward::channels(state.runtime.clone(), r.pod_id, ports, conn).await;
        }
        Request::Exec(r) => {
            let want = remotecommand::Want { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
            let streams = remotecommand::websocket_streams(ws, want, protocol, codec).await;
            remotecommand::exec(&*state.runtime, &r, streams).await;
        }
        Request::Attach(r) => {
            let want = remotecommand::Want { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
            let streams = remotecommand::websocket_streams(ws, want, protocol, codec).await;
            remotecommand::attach(&*state.runtime, &r, streams).await;
        }
    }
}

/// Ends a session once the client has gone, or after `grace` (a client that finished reads its
/// streams' ends and hangs up itself; SPDY clients lose data if the server hangs up first).
pub(crate) async fn linger(peer_gone: &mut PeerGone, grace: Duration) {
    let _ = tokio::time::timeout(grace, peer_gone.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_and_ports_parse() {
        assert_eq!(negotiate(&["v5.channel.k8s.io", "v4.channel.k8s.io"], REMOTECOMMAND_SPDY), Some(Some("v4.channel.k8s.io")));
        assert_eq!(negotiate(&["channel.k8s.io", "v4.channel.k8s.io"], REMOTECOMMAND_SPDY), Some(Some("channel.k8s.io")));
        assert_eq!(negotiate(&[], REMOTECOMMAND_SPDY), Some(None));
        assert_eq!(negotiate(&["v9.channel.k8s.io"], REMOTECOMMAND_SPDY), None);
        assert_eq!(query_ports(Some("port=80&port=8080,9090&x=1")), Ok(vec![80, 8080, 9090]));
        assert!(query_ports(Some("port=0")).is_err());
        assert!(query_ports(Some("port=99999")).is_err());
        assert!(query_ports(None).is_err());
    }
}
