//! What can go wrong calling plugins, with the kind a caller maps to a status.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file or list that is not a usable CNI config: the file and why.
    #[error("CNI config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// A request berth refuses before calling anything (a bad container id, ifname, plugin type).
    #[error("invalid CNI request: {0}")]
    Invalid(String),
    /// No plugin binary of that type in any of the bin dirs.
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    /// The plugin failed: its error JSON (code, msg, details) as it gave them, else its exit
    /// status, with the end of its stderr.
    #[error("{0}")]
    Plugin(Box<PluginFailure>),
    #[error("CNI plugin {plugin} {command} did not finish within {seconds} s (killed)")]
    Timeout { plugin: String, command: &'static str, seconds: u64 },
    #[error("CNI plugin {plugin} {command} printed more than {limit} bytes (killed)")]
    OutputTooLarge { plugin: String, command: &'static str, limit: usize },
    /// The plugin succeeded but printed something that is not a CNI result.
    #[error("CNI plugin {plugin} {command}: unreadable output: {reason}")]
    BadOutput { plugin: String, command: &'static str, reason: String },
    /// DEL or CHECK of an attachment berth has no record of.
    #[error("no cached CNI attachment for {0}")]
    NotCached(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

#[derive(Debug, thiserror::Error)]
#[error("CNI plugin {plugin} {command} failed: {msg}{}{}", details_suffix(details), stderr_suffix(stderr))]
pub struct PluginFailure {
    pub plugin: String,
    pub command: &'static str,
    /// The spec's error code (1-99 the spec's, 100 on the plugin's own), when it gave one.
    pub code: Option<u64>,
    pub msg: String,
    pub details: String,
    pub stderr: String,
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr: {stderr}")
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
