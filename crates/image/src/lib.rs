//! berth-image: what berth knows about images, as a library (berthd and the CRI ImageService sit on
//! it): references ([`reference`]), digests ([`digest`]), the content-addressed blob store
//! ([`content`]), the layer applier ([`unpack`]), snapshots by chain id ([`snapshots`]) and
//! registry pulls ([`pull`]) into a [`Store`] and pushes ([`push`]) out of it, metadata
//! ([`meta`]), [`archive`]s and GC ([`Store::gc`]).
//!
//! Owns: everything under the store root it is given. Does not own: containers, mounts of
//! snapshots into containers, the network beyond a registry.

pub mod archive;
pub mod content;
pub mod credentials;
pub mod digest;
pub mod distribution;
mod error;
pub mod manifest;
pub mod meta;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registries;
pub mod snapshots;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
pub use store::Store;
