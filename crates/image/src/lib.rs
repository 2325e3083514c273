//! berth-image: what berth knows about images, as a library (berthd and the CRI ImageService sit on
//! it). So far: references ([`reference`]), digests ([`digest`]), the content-addressed blob store
//! ([`content`]) and the layer applier ([`unpack`]); registry pulls, snapshots, metadata, archives
//! and GC come next.
//!
//! Owns: everything under the store root it is given. Does not own: containers, mounts of
//! snapshots into containers, the network beyond a registry.

pub mod content;
pub mod digest;
mod error;
pub mod reference;
pub mod snapshots;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
