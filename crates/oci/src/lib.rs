//! berth-oci: the OCI runtime library. A bundle (config.json + rootfs) becomes an isolated,
//! constrained process; the runc command line in `crates/oci-cli` is a thin layer over this.
//!
//! Owns: spec loading and validation, the state directory, namespaces, the rootfs and its mounts,
//! devices, capabilities, seccomp, rlimits, hooks, consoles. Does not own: cgroup files (berth-cgroups),
//! argument parsing, logging, exit codes (the CLI).
//!
//! Follow the lifecycle by file name: [`create`] (parent side) → `init/` (the container's first
//! process, in order in `init/mod.rs`) → [`start`] → [`signal`] → [`delete`]; [`exec`] for extra
//! processes; [`manage`] for pause/resume/update/ps/stats.
//!
//! Process model: single-threaded, no async runtime, because fork/clone3 are only safe that way.

mod cgroup;
pub mod create;
pub mod delete;
mod error;
pub mod exec;
pub mod features;
pub mod hooks;
mod id;
mod idmap;
mod init;
pub mod manage;
mod namespaces;
pub mod proc;
mod seccomp_listener;
mod shared_mounts;
pub mod signal;
pub mod spec;
pub mod start;
pub mod state;
mod sync;
pub use berth_sys as sys;
pub mod sysctl;
pub mod time;
pub mod wait;

pub use create::{create, CreateOptions};
pub use delete::delete;
pub use error::{Error, Result};
pub use exec::{exec, ExecOptions};
pub use id::validate_id;
pub use signal::{kill, parse_signal};
pub use start::start;
pub use state::{Container, Status};
