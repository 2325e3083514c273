//! berth-errdefs: what kind of failure an error is, whatever library it comes from — as
//! containerd's errdefs — and the one place kinds become gRPC status codes, so berth.v1 and the CRI
//! answer the same failure with the same code.

/// The kinds callers act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What was asked for does not exist (an image, a container, a pod).
    NotFound,
    /// A name or id is taken.
    AlreadyExists,
    /// The request itself is wrong: retrying it unchanged fails again.
    Invalid,
    /// The request is fine but the state is not (a container not running, an image in use).
    FailedPrecondition,
    /// Something outside us did not answer or failed (a registry, a plugin): retrying may help.
    Unavailable,
    /// Our own failure (the database, a task, the disk).
    Internal,
}

/// An error that knows its kind.
pub trait HasKind {
    fn kind(&self) -> Kind;
}

#[cfg(feature = "grpc")]
/// The gRPC status for an error: its kind's code and its message.
pub fn status(error: impl HasKind + std::fmt::Display) -> tonic::Status {
    let message = error.to_string();
    match error.kind() {
        Kind::NotFound => tonic::Status::not_found(message),
        Kind::AlreadyExists => tonic::Status::already_exists(message),
        Kind::Invalid => tonic::Status::invalid_argument(message),
        Kind::FailedPrecondition => tonic::Status::failed_precondition(message),
        Kind::Unavailable => tonic::Status::unavailable(message),
        Kind::Internal => tonic::Status::internal(message),
    }
}
