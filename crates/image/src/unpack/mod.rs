//! The layer applier: a layer tarball (gzip, zstd or plain) becomes one directory in overlayfs's
//! lower-dir format, so each layer unpacks into its own directory, in parallel, without mounting
//! the ones below it. Whiteouts (`.wh.name`) become 0:0 character devices, opaque markers
//! (`.wh..wh..opq`) the `trusted.overlay.opaque` xattr on their directory.
//!
//! Ours rather than the tar crate's `unpack`: that one knows nothing of whiteouts, and it resolves
//! paths by name, so a hostile layer can race or trick it through symlinks. Here every parent
//! directory is opened with openat2(RESOLVE_IN_ROOT) under the layer's directory, every entry is
//! made with an *at call on that fd and a single-component name, the last component is never
//! followed, `..` is refused, and a hardlink's target is resolved inside the layer the same way
//! (CVE-2021-32760, CVE-2025-47290 classes).

mod apply;
pub(crate) mod decompress;
mod fsops;
mod paths;
pub(crate) mod tar_limits;

pub use apply::{apply_layer, Applied};
