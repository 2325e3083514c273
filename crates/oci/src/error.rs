use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

/// Errors of the runtime library. The CLI maps them to runc's messages and exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {0:?}: {1}")]
    InvalidId(String, &'static str),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {id} is {status}: {action}")]
    WrongState { id: String, status: String, action: &'static str },
    #[error("invalid config {path}: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("{context} {path}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}")]
    Sys {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
    #[error("container init failed: {0}")]
    Init(String),
    /// What the other side of the sync socket (the init, an exec's child) reported: already a
    /// whole message, passed on as it is.
    #[error("{0}")]
    Reported(String),
    #[error("hook {path} failed: {reason}")]
    Hook { path: PathBuf, reason: String },
    #[error("console socket {path}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// The message with every underlying cause, "a: b: c", for places that can only carry a string.
    pub fn full_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }

    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context, path: path.into(), source }
    }

    pub(crate) fn sys(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys { context: context.into(), source: source.into() }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig { path: path.into(), reason: reason.into() }
    }
}
