//! berth-containers: turns images into supervised containers, as a library (berthd's container
//! service uses it; the CRI's will). The API is [`Containers`], async; one file per operation:
//! [`create`](crate::create) (rootfs from the image's snapshots, spec from the image config and the
//! options, users from the image's own passwd/group by our bounded [`passwd`] parser, a shim),
//! [`lifecycle`](crate::lifecycle) (start, kill, stop, wait), [`remove`](crate::remove),
//! [`exec`](crate::exec), [`stats`](crate::stats). State is in memory ([`table`]), fed by the
//! shims' pushed events ([`monitor`]), persisted to redb ([`record`]); [`events`] is the bus every
//! API reports from; [`logs`] reads what the shims wrote.
//!
//! Owns: `<root>/containers` (writable layers, `containers.redb`) and `<state>/containers`
//! (bundles, logs, shim directories), and the leases that keep an image's snapshots while a
//! container uses them. Does not own: images (berth-image), the container's processes and every
//! run of the OCI runtime binary (the shim's).

pub mod blueprint;
pub mod container_network;
mod create;
mod error;
pub mod events;
mod exec;
pub mod fake_shims;
pub mod health;
pub mod image_config;
mod lifecycle;
pub mod logs;
pub mod manager;
mod monitor;
pub mod networks;
pub mod options;
pub mod passwd;
pub mod pod_namespaces;
pub mod pod_network;
pub mod record;
mod remove;
pub mod restart;
pub mod rootfs;
pub mod run_spec;
pub mod sandbox;
pub mod shim_launcher;
pub mod shims;
pub mod spec_opts;
#[cfg(test)]
mod state_machine_tests;
mod stats;
pub mod table;
pub mod user_namespace;
pub mod volumes;

pub use container_network::{ContainerNetwork, NetworkService};
pub use error::{Error, Result};
pub use events::{Action, Event};
pub use exec::ExecOptions;
pub use manager::{Containers, Paths};
pub use monitor::Recovered;
pub use networks::{NetworkInfo, NetworkRequest};
pub use options::{CreateOptions, Network, Volume};
pub use record::{ContainerRecord, State};
pub use restart::RestartPolicy;
pub use sandbox::{DnsConfig, PortMapping, SandboxConfig, SandboxRecord, SandboxState};
pub use user_namespace::{IdRange, UserNamespace};
pub use volumes::{VolumeInfo, VolumeUse};

pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
