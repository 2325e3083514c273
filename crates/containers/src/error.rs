use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("no such image: {0} (pull or import it first)")]
    NoImage(String),
    #[error("no such pod: {0}")]
    NoPod(String),
    #[error("no such volume: {0}")]
    NoVolume(String),
    /// A name or id is taken.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// The container is not in a state that allows this (not running, running, being created).
    #[error("{0}")]
    WrongState(String),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("container metadata: {0}")]
    Db(String),
    #[error("image store: {0}")]
    Image(#[from] berth_image::Error),
    #[error("{0}")]
    Shim(String),
    /// The pod network (CNI) failed or is not configured.
    #[error("pod network: {0}")]
    Network(String),
}

impl berth_errdefs::HasKind for Error {
    fn kind(&self) -> berth_errdefs::Kind {
        use berth_errdefs::Kind;
        match self {
            Error::NotFound(_) | Error::NoImage(_) | Error::NoPod(_) | Error::NoVolume(_) => Kind::NotFound,
            Error::Conflict(_) => Kind::AlreadyExists,
            Error::Invalid(_) => Kind::Invalid,
            Error::WrongState(_) => Kind::FailedPrecondition,
            Error::Image(e) => berth_errdefs::HasKind::kind(e),
            Error::Network(_) => Kind::Unavailable,
            Error::Io { .. } | Error::Db(_) | Error::Shim(_) => Kind::Internal,
        }
    }
}

impl Error {
    pub fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io { what, path: path.to_path_buf(), source }
    }
}

impl From<berth_shim::Error> for Error {
    fn from(e: berth_shim::Error) -> Error {
        Error::Shim(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
