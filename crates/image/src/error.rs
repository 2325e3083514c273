use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {0:?}: {1}")]
    Reference(String, &'static str),
    #[error("invalid digest {0:?}")]
    Digest(String),
    #[error("{what}: {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {expected}: content does not match ({actual} bytes with digest {actual_digest})")]
    Mismatch { expected: Digest, actual: u64, actual_digest: Digest },
    #[error("{what} is larger than the {limit} bytes allowed")]
    TooLarge { what: String, limit: u64 },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("no such image: {0}")]
    NotFound(String),
    /// Something other than an image is missing (a blob, a snapshot).
    #[error("{0}: not found")]
    Missing(String),
    #[error("{0}: already exists")]
    Exists(String),
    /// Our own failure: the metadata database, a task.
    #[error("{what}: {reason}")]
    Internal { what: String, reason: String },
    #[error("registry, for {reference}: {reason}")]
    Registry { reference: String, reason: String },
    #[error("layer entry {entry:?}: {reason}")]
    Layer { entry: String, reason: String },
}

impl berth_errdefs::HasKind for Error {
    fn kind(&self) -> berth_errdefs::Kind {
        use berth_errdefs::Kind;
        match self {
            Error::Reference(..)
            | Error::Digest(_)
            | Error::Invalid { .. }
            | Error::TooLarge { .. }
            | Error::Layer { .. }
            | Error::Mismatch { .. } => Kind::Invalid,
            Error::NotFound(_) | Error::Missing(_) => Kind::NotFound,
            Error::Exists(_) => Kind::AlreadyExists,
            Error::Registry { .. } => Kind::Unavailable,
            Error::Io { .. } | Error::Internal { .. } => Kind::Internal,
        }
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { what, path: path.into(), source }
    }

    pub(crate) fn layer(entry: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Layer { entry: entry.into(), reason: reason.into() }
    }
}

use crate::Digest;
