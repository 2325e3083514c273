use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid cgroupsPath {0:?}: {1}")]
    InvalidPath(String, &'static str),
    #[error("exec --cgroup {0}: {1}")]
    InvalidSubCgroup(String, &'static str),
    #[error("invalid resource {0}: {1}")]
    InvalidResource(&'static str, String),
    #[error("no cgroup hierarchy found in /proc/self/mountinfo")]
    NoHierarchy,
    #[error("cgroup {0} still has processes after waiting for them to exit")]
    Busy(PathBuf),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The systemd driver's exchange with systemd failed, or systemd refused.
    #[error("systemd: {0}")]
    Systemd(String),
}

impl Error {
    /// The kernel refused us the cgroup directory: not root, and nothing delegated to us.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied || source.raw_os_error() == Some(libc::EROFS))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}
