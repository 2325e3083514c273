//! What berthd's streaming server does for exec, attach and port-forward, over the containers
//! library: exec and attach through the container's shim (so the shim sees every process),
//! port-forward by a TCP connection made inside the pod's network namespace (or the host's, for
//! a host-network pod) to the pod's localhost.

use berth_containers::pod_namespaces::PodNamespace;
use berth_containers::{Containers, ExecOptions};
use berth_streaming::{AttachRequest, Attached, BoxFuture, ExecRequest, RuntimeError};
use std::net::SocketAddr;
use std::time::Duration;

/// How long connecting to a forwarded port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct StreamingRuntime {
    containers: Containers,
}

impl StreamingRuntime {
    pub fn new(containers: Containers) -> StreamingRuntime {
        StreamingRuntime { containers }
    }
}

impl berth_streaming::Runtime for StreamingRuntime {
    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<berth_shim::AsyncStream, RuntimeError>> {
        Box::pin(async move {
            let exec = ExecOptions { args: request.cmd.clone(), tty: request.tty, ..Default::default() };
            Ok(self.containers.exec(&request.container_id, exec, request.stdin).await?)
        })
    }

    fn attach<'a>(&'a self, request: &'a AttachRequest) -> BoxFuture<'a, Result<Attached, RuntimeError>> {
        Box::pin(async move {
            let (record, stream) = self.containers.attach(&request.container_id, request.stdin).await?;
            Ok(Attached { stream, stdin_once: record.stdin_once })
        })
    }

    fn port_forward<'a>(&'a self, pod_id: &'a str, port: u16) -> BoxFuture<'a, Result<tokio::net::TcpStream, RuntimeError>> {
        Box::pin(async move {
            let sandbox = self.containers.find_sandbox(pod_id)?;
            let netns = self.containers.sandbox_namespace(&sandbox, PodNamespace::Net);
            let mut last = None;
            // The pod's localhost, IPv4 first, as containerd and cri-o do.
            for ip in [std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()] {
                let addr = SocketAddr::new(ip, port);
                let connected = match &netns {
                    Some(netns) => {
                        let netns = netns.clone();
                        tokio::task::spawn_blocking(move || berth_sys::connect_in_netns(&netns, addr, CONNECT_TIMEOUT))
                            .await?
                            .and_then(|tcp| tcp.set_nonblocking(true).map(|_| tcp))
                            .and_then(tokio::net::TcpStream::from_std)
                    }
                    None => tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                };
                match connected {
                    Ok(tcp) => return Ok(tcp),
                    Err(e) => last = Some(e),
                }
            }
            Err(format!("connecting to localhost:{port} in the pod: {}", last.expect("two tries")).into())
        })
    }
}
