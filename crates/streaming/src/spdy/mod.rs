//! SPDY/3.1, the parts Kubernetes' streaming uses: frames ([`frame`]), compressed header blocks
//! ([`headers`]), and the server side of a connection (`session`). Public for the fuzz targets.

pub mod frame;
pub mod headers;
pub(crate) mod session;
