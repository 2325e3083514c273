//! berth-shim's library half: the wire protocol of its control socket ([`protocol`]) and a blocking
//! client for it ([`client`]). berthd and the `berth` CLI (attach, exec) use the client; the
//! `berth-shim` binary (src/main.rs and its modules) is the server.
//!
//! Owns: one container's supervision after `create`. Does not own: bundles, rootfs mounts, metadata
//! (berthd's), nor anything the runtime binary does.

pub mod client;
pub mod protocol;

pub use client::{Client, Error, Stream};
pub use protocol::{Exit, Frame, FrameKind, Reply, Request, ShimState, Status};
