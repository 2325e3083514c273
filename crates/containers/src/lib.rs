//! berth-containers: turns images into supervised containers, as a library (berthd's container
//! service uses it; the CRI's will). Create = the image's layers under an overlay with a writable
//! layer ([`rootfs`]), a runtime spec from the image config and the user's options
//! ([`spec_builder`], users resolved by our own bounded [`passwd`] parser), a record in the metadata
//! database ([`record`]), and a `berth-shim` that runs the OCI runtime ([`shim_launcher`]).
//! [`manager::Containers`] is the API; [`logs`] reads what the shim wrote.
//!
//! Owns: `<root>/containers` (writable layers, `containers.redb`) and `<state>/containers`
//! (bundles, shim directories), and the leases that keep an image's snapshots while a container
//! uses them. Does not own: images (berth-image), the container's processes (the shim's).

mod error;
pub mod image_config;
pub mod logs;
pub mod manager;
pub mod options;
pub mod passwd;
pub mod record;
pub mod rootfs;
pub mod shim_launcher;
pub mod spec_builder;

pub use error::{Error, Result};
pub use manager::{Containers, Paths};
pub use options::{CreateOptions, Network, Volume};
pub use record::{ContainerRecord, State};
