//! berth.v1.Containers over berth-containers: each call is the library's (async) operation with its
//! error mapped to a gRPC status. Events are the library's bus: whatever caused them.

use berth_api::v1::containers_server;
use berth_api::v1::{
    stream_input, stream_output, Container, ContainerEvent, ContainerRef, CreateContainerRequest, EventsRequest, KillContainerRequest,
    ListContainersRequest, ListContainersResponse, LogEntry, LogsRequest, RemoveContainerRequest, StatsResponse, StopContainerRequest, StreamInput,
    StreamOutput, TopRequest, TopResponse, TopRow, WaitRequest,
};
use berth_containers::{ContainerRecord, Containers, CreateOptions, ExecOptions, PortMapping, State, Volume};
use berth_shim::FrameKind;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
pub struct ContainersService {
    pub containers: Containers,
    /// berthd.toml's default_network: what a request that names none gets.
    pub default_network: String,
    /// What `host-gateway` in `--add-host` stands for: the default network's gateway.
    pub host_gateway: std::net::IpAddr,
    /// What `--init` runs (berthd.toml's init_path, else tini's static build found on PATH).
    pub init: Option<std::path::PathBuf>,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn console_size(width: u32, height: u32) -> Option<(u16, u16)> {
    Some((u16::try_from(width).ok().filter(|w| *w > 0)?, u16::try_from(height).ok().filter(|h| *h > 0)?))
}

/// `--add-host NAME:IP` (or NAME=IP): a host name and an address.
/// `--add-host NAME:IP`; `host-gateway` for IP is the host as the default network's containers
/// reach it (its bridge's address), as docker's is docker0's.
fn extra_host(entry: &str, host_gateway: std::net::IpAddr) -> Result<(String, std::net::IpAddr), Status> {
    let bad = || Status::invalid_argument(format!("--add-host {entry:?}: use NAME:IP (or NAME:host-gateway), NAME a host name"));
    let (name, ip) = entry.split_once(['=', ':']).ok_or_else(bad)?;
    let plain = !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
    let ip: std::net::IpAddr = if ip == "host-gateway" { host_gateway } else { ip.parse().map_err(|_| bad())? };
    if !plain {
        return Err(bad());
    }
    Ok((name.to_string(), ip))
}

/// `--device HOST[:CONTAINER[:PERMISSIONS]]`: the same path inside, and `rwm`, by default.
fn device(spec: &str) -> Result<(std::path::PathBuf, String, String), Status> {
    let mut parts = spec.splitn(3, ':');
    let host = parts.next().unwrap_or_default();
    let (second, third) = (parts.next(), parts.next());
    // docker's short form HOST:PERMISSIONS.
    let (container, permissions) = match (second, third) {
        (Some(p), None) if !p.is_empty() && p.chars().all(|c| "rwm".contains(c)) => (host, p),
        (Some(c), p) => (c, p.unwrap_or("rwm")),
        (None, _) => (host, "rwm"),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(Status::invalid_argument(format!("--device {spec:?}: use HOST[:CONTAINER[:rwm]], both absolute paths")));
    }
    Ok((host.into(), container.to_string(), permissions.to_string()))
}

/// `--ulimit NAME=SOFT[:HARD]`, -1 for unlimited; the hard limit is the soft one when not given.
fn ulimit(spec: &str) -> Result<(String, u64, u64), Status> {
    let bad = || Status::invalid_argument(format!("--ulimit {spec:?}: use NAME=SOFT[:HARD], numbers or -1 for unlimited"));
    let (name, limits) = spec.split_once('=').ok_or_else(bad)?;
    let value = |v: &str| if v == "-1" { Ok(u64::MAX) } else { v.parse::<u64>().map_err(|_| bad()) };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => (value(limits)?, value(limits)?),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(bad());
    }
    Ok((name.to_string(), soft, hard))
}

fn dns_servers(servers: &[String]) -> Result<Vec<String>, Status> {
    servers
        .iter()
        .map(|s| s.parse::<std::net::IpAddr>().map(|ip| ip.to_string()).map_err(|_| Status::invalid_argument(format!("--dns {s:?}: an IP address"))))
        .collect()
}

/// Search domains and resolver options: single words, as resolv.conf needs them.
fn dns_words(words: Vec<String>) -> Result<Vec<String>, Status> {
    match words.iter().find(|w| w.is_empty() || w.len() > 253 || w.chars().any(|c| c.is_whitespace() || c.is_control())) {
        Some(bad) => Err(Status::invalid_argument(format!("DNS search domain or option {bad:?}: one word"))),
        None => Ok(words),
    }
}

fn options(r: CreateContainerRequest, service: &ContainersService) -> Result<CreateOptions, Status> {
    let (default_network, init) = (service.default_network.as_str(), service.init.as_deref());
    let init = match (r.init, init) {
        (false, _) => None,
        (true, Some(init)) => Some(init.to_path_buf()),
        (true, None) => return Err(Status::failed_precondition("--init: no init binary (install tini, or set init_path in berthd.toml)")),
    };
    let network = if r.network.is_empty() { default_network } else { r.network.as_str() };
    let network: berth_containers::Network = network.parse().map_err(Status::invalid_argument)?;
    if (!r.ports.is_empty() || r.publish_all) && !matches!(network, berth_containers::Network::Bridge(_)) {
        return Err(Status::invalid_argument("published ports need a bridge network (--network bridge or a network's name)"));
    }
    let shared = !r.hostname.is_empty() || !r.dns.is_empty() || !r.dns_search.is_empty() || !r.dns_options.is_empty() || !r.add_hosts.is_empty();
    if shared && matches!(network, berth_containers::Network::Container(_)) {
        // docker refuses them too: the container takes the other's hostname and files.
        return Err(Status::invalid_argument("--hostname, --dns*, --add-host: a container on another's network (container:NAME) has that one's"));
    }
    let mut publish = Vec::with_capacity(r.ports.len());
    for p in &r.ports {
        let (Ok(host_port), Ok(container_port)) = (i32::try_from(p.host_port), i32::try_from(p.container_port)) else {
            return Err(Status::invalid_argument(format!("port {}:{}: ports are 1 to 65535", p.host_port, p.container_port)));
        };
        publish.push(PortMapping { protocol: p.protocol.clone(), container_port, host_port, host_ip: p.host_ip.clone() });
    }
    Ok(CreateOptions {
        image: r.image,
        name: non_empty(r.name),
        args: r.args,
        entrypoint: r.entrypoint_set.then_some(r.entrypoint),
        env: r.env,
        user: non_empty(r.user),
        workdir: non_empty(r.workdir),
        volumes: r.volumes.into_iter().map(|v| Volume { source: v.source, target: v.target, read_only: v.read_only }).collect(),
        read_only: r.read_only,
        memory: (r.memory != 0).then_some(r.memory),
        cpus: (r.cpus != 0.0).then_some(r.cpus),
        pids_limit: (r.pids_limit != 0).then_some(r.pids_limit),
        cap_add: r.cap_add,
        cap_drop: r.cap_drop,
        privileged: r.privileged,
        network,
        publish,
        publish_all: r.publish_all,
        extra_hosts: r.add_hosts.iter().map(|h| extra_host(h, service.host_gateway)).collect::<Result<_, _>>()?,
        devices: r.devices.iter().map(|d| device(d)).collect::<Result<_, _>>()?,
        ulimits: r.ulimits.iter().map(|u| ulimit(u)).collect::<Result<_, _>>()?,
        dns: berth_containers::DnsConfig { servers: dns_servers(&r.dns)?, searches: dns_words(r.dns_search)?, options: dns_words(r.dns_options)? },
        hostname: non_empty(r.hostname),
        tty: r.tty,
        stdin: r.stdin,
        labels: r.labels.into_iter().collect(),
        runtime: non_empty(r.runtime),
        console_size: console_size(r.console_width, r.console_height),
        auto_remove: r.auto_remove,
        restart: r.restart.parse().map_err(Status::invalid_argument)?,
        init,
        tmpfs: r.tmpfs.into_iter().map(|t| (t.target, t.options.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect())).collect(),
        // berth.v1 has no pods: its containers have shims of their own.
        sandbox: None,
        health: berth_containers::health::HealthOptions {
            cmd: non_empty(r.health_cmd),
            interval: nanos(r.health_interval_ns),
            timeout: nanos(r.health_timeout_ns),
            start_period: nanos(r.health_start_period_ns),
            retries: (r.health_retries != 0).then_some(r.health_retries),
            disabled: r.no_healthcheck,
        },
    })
}

/// 0 means "not given".
fn nanos(n: u64) -> Option<Duration> {
    (n != 0).then(|| Duration::from_nanos(n))
}

impl ContainersService {
    fn message(&self, record: &ContainerRecord) -> Container {
        Container {
            id: record.id.clone(),
            name: record.name.clone(),
            image: record.image.clone(),
            image_manifest: record.image_manifest.clone(),
            state: record.state.as_str().into(),
            // An exited container's pid may be anyone's by now (docker says 0 too).
            pid: if record.state == State::Exited { 0 } else { record.pid },
            exited: record.state == State::Exited,
            exit_code: record.exit_code.unwrap_or(if record.state == State::Exited { 255 } else { 0 }),
            command: record.command.clone(),
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            tty: record.tty,
            stdin: record.stdin,
            runtime: record.runtime.clone(),
            labels: record.labels.clone().into_iter().collect(),
            spec_json: String::new(),
            oom_killed: record.oom_killed,
            auto_remove: record.auto_remove,
            network: match (&record.network, &record.network_of) {
                (Some(n), _) => n.name.clone(),
                (None, Some(other)) => format!("container:{}", self.containers.find(other).map(|o| o.name).unwrap_or_else(|_| other.clone())),
                (None, None) => String::new(),
            },
            ips: record.network.as_ref().map(|n| n.ips.clone()).unwrap_or_default(),
            ports: record.network.as_ref().map(|n| n.ports.iter().map(port_message).collect()).unwrap_or_default(),
            health: record.health.map(|h| h.as_str().to_string()).unwrap_or_default(),
            restart_policy: record.restart.to_string(),
            restart_count: record.restart_count,
        }
    }
}

fn port_message(p: &PortMapping) -> berth_api::v1::PortMapping {
    berth_api::v1::PortMapping {
        host_ip: p.host_ip.clone(),
        host_port: p.host_port as u32,
        container_port: p.container_port as u32,
        protocol: p.protocol.clone(),
    }
}

type Reply<T> = Result<Response<T>, Status>;

async fn first(input: &mut Streaming<StreamInput>) -> Result<Option<stream_input::Input>, Status> {
    Ok(input.message().await?.and_then(|m| m.input))
}

fn output(output: stream_output::Output) -> Result<StreamOutput, Status> {
    Ok(StreamOutput { output: Some(output) })
}

/// Joins the client's stream and the shim's: the client's stdin, stdin close and resizes go to
/// the shim as frames, the process's output and exit come back. The client going away closes the
/// shim connection (the process runs on, as with a detached docker client).
fn bridge(stream: berth_shim::AsyncStream, mut input: Streaming<StreamInput>) -> ReceiverStream<Result<StreamOutput, Status>> {
    let (mut frames, mut writer) = stream.split();
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    let forward = tokio::spawn(async move {
        while let Ok(Some(message)) = input.message().await {
            let written = match message.input {
                Some(stream_input::Input::Stdin(data)) => writer.write_frame(FrameKind::Stdin, &data).await,
                Some(stream_input::Input::CloseStdin(_)) => writer.write_frame(FrameKind::StdinClose, &[]).await,
                Some(stream_input::Input::Resize(size)) => {
                    let (width, height) = (u16::try_from(size.width).unwrap_or(u16::MAX), u16::try_from(size.height).unwrap_or(u16::MAX));
                    writer.write_frame(FrameKind::Resize, &berth_shim::protocol::resize_payload(width, height)).await
                }
                _ => Ok(()),
            };
            if written.is_err() {
                return;
            }
        }
        // The client has nothing more to send, but the shim connection stays whole (dropping the
        // writer would shut its write side, which the shim takes for the client going away)
        // until the output side ends and aborts this task.
        std::future::pending::<()>().await;
        drop(writer);
    });
    tokio::spawn(async move {
        if sender.send(output(stream_output::Output::Ready(true))).await.is_ok() {
            while let Ok(Some(frame)) = frames.read_frame().await {
                let message = match frame.kind {
                    FrameKind::Stdout => stream_output::Output::Stdout(frame.payload),
                    FrameKind::Stderr => stream_output::Output::Stderr(frame.payload),
                    FrameKind::Exit => {
                        let exit: berth_shim::Exit = serde_json::from_slice(&frame.payload).unwrap_or_default();
                        let _ = sender.send(output(stream_output::Output::ExitCode(exit.code))).await;
                        break;
                    }
                    _ => continue,
                };
                if sender.send(output(message)).await.is_err() {
                    break;
                }
            }
        }
        forward.abort();
    });
    ReceiverStream::new(receiver)
}

#[tonic::async_trait]
impl containers_server::Containers for ContainersService {
    async fn create(&self, request: Request<CreateContainerRequest>) -> Reply<Container> {
        let options = options(request.into_inner(), self)?;
        let record = self.containers.create(options).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(self.message(&record)))
    }

    async fn start(&self, request: Request<ContainerRef>) -> Reply<Container> {
        let record = self.containers.start(&request.into_inner().container).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(self.message(&record)))
    }

    async fn prepare(&self, request: Request<ContainerRef>) -> Reply<Container> {
        let record = self.containers.prepare(&request.into_inner().container).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(self.message(&record)))
    }

    async fn stop(&self, request: Request<StopContainerRequest>) -> Reply<Container> {
        let request = request.into_inner();
        let timeout = Duration::from_secs(request.timeout_seconds.into());
        let record = self.containers.stop(&request.container, timeout).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(self.message(&record)))
    }

    async fn kill(&self, request: Request<KillContainerRequest>) -> Reply<Container> {
        let request = request.into_inner();
        let record = self.containers.kill(&request.container, request.signal, request.all).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(self.message(&record)))
    }

    async fn remove(&self, request: Request<RemoveContainerRequest>) -> Reply<Container> {
        let request = request.into_inner();
        let record = self.containers.remove(&request.container, request.force).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(self.message(&record)))
    }

    async fn list(&self, request: Request<ListContainersRequest>) -> Reply<ListContainersResponse> {
        let all = request.into_inner().all;
        let containers = self.containers.list().iter().filter(|r| all || r.state == State::Running).map(|r| self.message(r)).collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn inspect(&self, request: Request<ContainerRef>) -> Reply<Container> {
        let record = self.containers.find(&request.into_inner().container).map_err(berth_errdefs::status)?;
        let spec = self.containers.spec(&record.id).await.ok();
        let mut message = self.message(&record);
        message.spec_json = spec.map(|s| s.to_string()).unwrap_or_default();
        Ok(Response::new(message))
    }

    async fn wait(&self, request: Request<WaitRequest>) -> Reply<Container> {
        let request = request.into_inner();
        let record = match request.removed {
            true => self.containers.wait_removed(&request.container).await,
            false => self.containers.wait(&request.container).await,
        };
        Ok(Response::new(self.message(&record.map_err(berth_errdefs::status)?)))
    }

    type LogsStream = ReceiverStream<Result<LogEntry, Status>>;

    async fn logs(&self, request: Request<LogsRequest>) -> Reply<Self::LogsStream> {
        let request = request.into_inner();
        let record = self.containers.find(&request.container).map_err(berth_errdefs::status)?;
        let log = self.containers.log_path(&record);
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let containers = self.containers.clone();
        tokio::spawn(async move {
            let mut cursor = Default::default();
            // With a tail: the log as it is now, read in batches, only the last `tail` records kept.
            let mut tail = (request.tail > 0).then(std::collections::VecDeque::new);
            let mut exited = false;
            loop {
                // A client gone mid-way through a long log (a --tail scan) ends this at once.
                if sender.is_closed() {
                    return;
                }
                let path = log.clone();
                let read = tokio::task::spawn_blocking(move || berth_containers::logs::read_since(&path, cursor)).await;
                let Ok(Ok(batch)) = read else {
                    let _ = sender.send(Err(Status::internal(format!("read {}", log.display())))).await;
                    return;
                };
                cursor = batch.cursor;
                let until = (request.until_ns > 0).then_some(request.until_ns);
                let mut batch = batch;
                // Past until, nothing more is wanted (a follower stops there too). Timestamps are
                // parsed only when a window is asked for: a log holds millions of records.
                let past_until = until.is_some_and(|until| batch.records.last().is_some_and(|r| r.written_ns() >= until));
                if request.since_ns > 0 || until.is_some() {
                    batch.records.retain(|r| {
                        let at = r.written_ns();
                        at >= request.since_ns && until.is_none_or(|until| at < until)
                    });
                }
                let records: Vec<_> = match &mut tail {
                    Some(kept) => {
                        kept.extend(batch.records);
                        kept.drain(..kept.len().saturating_sub(request.tail as usize));
                        if batch.more {
                            continue;
                        }
                        let kept = std::mem::take(kept);
                        tail = None;
                        kept.into()
                    }
                    None => batch.records,
                };
                for r in records {
                    if sender.send(Ok(LogEntry { timestamp: r.timestamp, stderr: r.stderr, partial: r.partial, text: r.text })).await.is_err() {
                        return;
                    }
                }
                if batch.more && !past_until {
                    continue;
                }
                // Following ends once the container has exited and the lines after that are out,
                // or at until.
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
                if !request.follow || exited || past_until || until.is_some_and(|until| now >= until) {
                    return;
                }
                match containers.find(&record.id) {
                    // A client that went away ends the follower at once, not at its next line.
                    Ok(r) if r.state.is_live() => tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = sender.closed() => return,
                    },
                    _ => exited = true,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    type AttachStream = ReceiverStream<Result<StreamOutput, Status>>;

    async fn attach(&self, request: Request<Streaming<StreamInput>>) -> Reply<Self::AttachStream> {
        let mut input = request.into_inner();
        let Some(stream_input::Input::Attach(attach)) = first(&mut input).await? else {
            return Err(Status::invalid_argument("an attach stream begins with the attach request"));
        };
        let (_, stream) = self.containers.attach(&attach.container, attach.stdin).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(bridge(stream, input)))
    }

    type ExecStream = ReceiverStream<Result<StreamOutput, Status>>;

    async fn exec(&self, request: Request<Streaming<StreamInput>>) -> Reply<Self::ExecStream> {
        let mut input = request.into_inner();
        let Some(stream_input::Input::Exec(r)) = first(&mut input).await? else {
            return Err(Status::invalid_argument("an exec stream begins with the exec request"));
        };
        let exec = ExecOptions {
            args: r.args,
            tty: r.tty,
            env: r.env,
            user: non_empty(r.user),
            workdir: non_empty(r.workdir),
            console_size: console_size(r.console_width, r.console_height),
        };
        let stream = self.containers.exec(&r.container, exec, r.stdin).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(bridge(stream, input)))
    }

    async fn top(&self, request: Request<TopRequest>) -> Reply<TopResponse> {
        let request = request.into_inner();
        let (titles, rows) = self.containers.top(&request.container, request.ps_args).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(TopResponse { titles, rows: rows.into_iter().map(|fields| TopRow { fields }).collect() }))
    }

    async fn stats(&self, request: Request<ContainerRef>) -> Reply<StatsResponse> {
        let stats = self.containers.stats(&request.into_inner().container).await.map_err(berth_errdefs::status)?;
        Ok(Response::new(StatsResponse { stats_json: serde_json::to_string(&stats).map_err(|e| Status::internal(e.to_string()))? }))
    }

    type EventsStream = ReceiverStream<Result<ContainerEvent, Status>>;

    async fn events(&self, _: Request<EventsRequest>) -> Reply<Self::EventsStream> {
        let mut events = self.containers.subscribe();
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let message = ContainerEvent {
                    action: event.action.as_str().into(),
                    id: event.id,
                    name: event.name,
                    exit_code: event.exit_code.unwrap_or(0),
                    at: event.at,
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
