//! berth-shim's library half: the wire protocol of its control socket ([`protocol`]), a blocking
//! client ([`client`], for tools and tests) and, with the `async-client` feature, the async client
//! berthd uses ([`async_client`]: requests, event subscriptions, attach and exec streams). The `berth-shim` binary (src/main.rs
//! and its modules) is the server.
//!
//! Owns: the supervision of containers after `create` (one container's, or a pod's), and every run
//! of the OCI runtime binary. Does not own: bundles, rootfs mounts, metadata (berthd's).

#[cfg(feature = "async-client")]
pub mod async_client;
pub mod client;
pub mod protocol;

#[cfg(feature = "async-client")]
pub use async_client::{AsyncClient, AsyncEvents, AsyncFrameWriter, AsyncFrames, AsyncStream};
pub use client::{Client, CreateRequest, Error, Events, ExecOutput};
pub use protocol::{Event, Exit, Frame, FrameKind, Reply, Request, ShimState, Status};
