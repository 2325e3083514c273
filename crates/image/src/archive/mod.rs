//! Image archives in and out of the store: OCI image layouts and docker-archive (`docker save`)
//! tarballs, told apart by what they contain, plain rootfs tarballs as one-layer images, and
//! OCI layouts out.
//!
//! Archives are hostile input. No file of an archive is ever written by its name: each is streamed
//! into the content store under the digest of its content (an OCI layout's blob must match the
//! digest its path claims), JSON files are refused by their tar header's size before a byte is
//! read (a "10 GiB index.json"), and everything one file says of another is checked by digest.

mod export;
mod image;
mod import;

pub use export::{export_docker_archive, export_oci_layout};
pub use import::{import_archive, import_rootfs};
