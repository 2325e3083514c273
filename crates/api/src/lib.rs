//! berth.v1, berthd's own API: the generated protobuf messages and gRPC stubs, and the unix-socket
//! transport both ends use (the daemon's listener, the CLI's channel).

pub mod v1 {
    tonic::include_proto!("berth.v1");
}

use std::path::{Path, PathBuf};

/// Where berthd listens unless told otherwise; its directory is 0700.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

/// A channel to berthd over the unix socket at `path`.
pub async fn connect(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    // The URI is required by the API but unused: every connection goes to the socket.
    tonic::transport::Endpoint::from_static("http://berthd")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
}

/// The stream of connections a server accepts on a bound unix listener.
pub fn incoming(listener: tokio::net::UnixListener) -> tokio_stream::wrappers::UnixListenerStream {
    tokio_stream::wrappers::UnixListenerStream::new(listener)
}
