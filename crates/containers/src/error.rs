use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("no such image: {0} (pull or import it first)")]
    NoImage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotRunning(String),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("container metadata: {0}")]
    Db(String),
    #[error("image store: {0}")]
    Image(#[from] berth_image::Error),
    #[error("{0}")]
    Shim(String),
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
