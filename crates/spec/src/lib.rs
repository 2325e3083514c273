//! berth-spec: the runtime-spec defaults both sides agree on, as data — the starting config.json
//! ([`template`]), berth's default seccomp profile ([`seccomp`]), capability names and sets
//! ([`capabilities`]) and signal names ([`signals`]). berth-oci writes them (`berth-oci spec`) and
//! berthd builds containers' specs on them, without linking the runtime (or libseccomp).
//!
//! Owns: those defaults. Does not own: applying a spec (berth-oci), composing one from an image
//! and a request (berth-containers).

pub mod capabilities;
pub mod seccomp;
pub mod signals;
pub mod template;
