//! berth's Kubernetes streaming server. The CRI's Exec, Attach and PortForward do not stream over
//! gRPC: they return a URL here, and the client (crictl, or the kubelet proxying for the API server)
//! upgrades an HTTP request on that URL to SPDY/3.1 or to a WebSocket.
//!
//! - [`Server::url`] holds the request under a one-time token ([`tokens`]) and returns
//!   `http://<address>/{exec,attach,portforward}/<token>`.
//! - [`server`] answers those URLs: the upgrade and the protocol negotiation.
//! - [`remotecommand`] runs exec and attach over either transport (channels stdin, stdout,
//!   stderr, error, resize; the exit status as Kubernetes' Status JSON), through the
//!   [`Runtime`]: berthd's runtime goes through the container's shim.
//! - [`portforward`] connects a pod's ports to stream pairs (SPDY, SPDY tunnelled in WebSocket)
//!   or channel pairs (WebSocket).
//! - [`spdy`] is SPDY/3.1 itself, written here: the one Rust SPDY crate is GPL and client-only.
//!   WebSocket is tokio-tungstenite's ([`websocket`] has Kubernetes' channel framing over it).
//!
//! A client that goes away ends its session: an exec's process keeps running to its own end (its
//! stdin closed, its output dropped), as with Kubernetes' own streaming server.

mod channels;
mod portforward;
mod remotecommand;
mod server;
pub mod spdy;
mod tokens;
mod websocket;

use std::future::Future;
use std::pin::Pin;

pub use server::{Config, Server, Tls};

/// An exec, as the CRI's ExecRequest asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// An attach, as the CRI's AttachRequest asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A port-forward to a pod. The ports are those asked for; SPDY clients name a port per stream
/// pair, WebSocket clients in the URL's `port` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    pub pod_id: String,
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{} streaming requests are in flight already", tokens::MAX_IN_FLIGHT)]
    TooManyInFlight,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type RuntimeError = Box<dyn std::error::Error + Send + Sync>;

/// A container attached to: its stream, and whether the end of the client's input ends the
/// container's (its `stdin_once`).
pub struct Attached {
    pub stream: berth_shim::AsyncStream,
    pub stdin_once: bool,
}

/// What the server needs of the runtime underneath.
pub trait Runtime: Send + Sync + 'static {
    /// Starts `request.cmd` in the container and returns its stream (stdin kept open if asked).
    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<berth_shim::AsyncStream, RuntimeError>>;
    fn attach<'a>(&'a self, request: &'a AttachRequest) -> BoxFuture<'a, Result<Attached, RuntimeError>>;
    /// A TCP connection to `port` on the pod's localhost, in the pod's network namespace.
    fn port_forward<'a>(&'a self, pod_id: &'a str, port: u16) -> BoxFuture<'a, Result<tokio::net::TcpStream, RuntimeError>>;
}

impl Request {
    /// Refuses what no client could use (as Kubernetes' server does).
    fn validate(&self) -> Result<(), Error> {
        let (tty, stdin, stdout, stderr) = match self {
            Request::Exec(r) => {
                if r.cmd.is_empty() {
                    return Err(Error::Invalid("exec needs a command".into()));
                }
                (r.tty, r.stdin, r.stdout, r.stderr)
            }
            Request::Attach(r) => (r.tty, r.stdin, r.stdout, r.stderr),
            Request::PortForward(_) => return Ok(()),
        };
        if tty && stderr {
            return Err(Error::Invalid("tty and stderr cannot both be true".into()));
        }
        if !stdin && !stdout && !stderr {
            return Err(Error::Invalid("one of stdin, stdout, or stderr must be set".into()));
        }
        Ok(())
    }
}
