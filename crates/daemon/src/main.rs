//! berthd: owns the image store and the containers, and serves berth.v1 and the Kubernetes CRI
//! (runtime.v1, berth-cri) on one unix socket (0700 directory), and on each of the config's
//! `extra_sockets`. Started again after a crash, it first recovers the store (half-written blobs and
//! snapshots, the leases of pulls that died) and the containers (half-created ones are removed,
//! exits that happened meanwhile recorded, running ones watched again — never touched). SIGTERM or
//! SIGINT end it gracefully: calls in flight finish, the sockets go, containers keep running.
//! SIGHUP reloads the registries' settings and the runtimes ([`reload`]). Under systemd it reports readiness and may serve on the socket systemd passes
//! ([`systemd`]).

mod config;
mod containers;
mod images;
mod metrics;
mod networks;
mod systemd;
mod volumes;

use anyhow::Context;
use clap::Parser;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "berthd", version, about = "berth's daemon")]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, default_value = "/etc/berth/berthd.toml")]
    config: PathBuf,
    /// Overrides the config's `root`.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Overrides the config's `socket`.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Overrides the config's `state`.
    #[arg(long)]
    state: Option<PathBuf>,
    /// The least severe messages logged: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
    /// Read the config, say whether berthd takes it, and exit.
    #[arg(long)]
    check_config: bool,
    /// text (colour only on a terminal) or json (one object per line, for log collectors).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    systemd::take_environment();
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(serve());
    // Not a drop of the runtime: it would wait for the tasks following the shims' events, and
    // containers outlive berthd by design.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            1
        }
    })
}

async fn serve() -> anyhow::Result<()> {
    let args = Args::parse();
    // Colour only on a terminal, never escape codes into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_max_level(args.log_level);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(ansi).init(),
        LogFormat::Json => logs.json().init(),
    }
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let config = with_overrides(config::load(&args.config, explicit)?, &args);
    if args.check_config {
        println!("{}: a config berthd takes", args.config.display());
        return Ok(());
    }

    let store = berth_image::Store::open(&config.root)
        .with_context(|| format!("open the image store at {}", config.root.display()))?
        .with_max_image_size(config.max_image_size);
    store.recover().context("recover the image store")?;
    let store = Arc::new(store);
    let runtimes = runtimes(&config);
    let containers = open_containers(&config, store.clone(), runtimes)?;
    // Before recovery: a pod found half-created is detached from the network it may have got.
    // CNI results are cached under the root (not the state tmpfs): host-local's allocations
    // outlive a reboot, and DEL needs what ADD returned.
    let cni = berth_cni::Cni::new(config.cni_bin_dirs.clone(), config.root.join("cni"))
        .with_limits(berth_cni::Limits { timeout: std::time::Duration::from_secs(config.cni_timeout.max(1)), ..Default::default() });
    containers.set_pod_network(Arc::new(berth_containers::pod_network::CniNetwork { conf_dir: config.cni_conf_dir.clone(), cni: cni.clone() }));
    // berth run's own networks: config lists under the root, never in the node's CNI dir.
    containers.set_networks(berth_containers::NetworkService {
        networks: berth_containers::networks::Networks::new(
            config.root.join("networks"),
            config.default_bridge.clone(),
            config.default_subnet.clone(),
        ),
        cni,
    });
    let recovered = containers.recover().await.context("recover the containers")?;
    // Tried once (mounts in a scratch directory), off the async workers, before any request asks.
    let probed = containers.clone();
    let userns = tokio::task::spawn_blocking(move || probed.user_namespaces_supported()).await.unwrap_or(false);
    tracing::info!(user_namespaces = userns, "pods in user namespaces (idmapped layers under the data directory)");
    tracing::info!(
        running = recovered.running,
        exited_meanwhile = recovered.exited_meanwhile,
        half_created_removed = recovered.half_created,
        half_created_pods_removed = recovered.half_created_pods,
        stale_network_attachments_removed = recovered.stale_attachments,
        "containers recovered"
    );
    // tini's static build, as docker's docker-init is (a dynamic one would not run in an image
    // without its libraries).
    let init = config.init_path.clone().or_else(|| ["tini-static", "catatonit", "docker-init"].iter().find_map(|n| locate(std::path::Path::new(n))));
    // The default network's gateway: its subnet's first address.
    let host_gateway = config
        .default_subnet
        .split_once('/')
        .and_then(|(base, _)| base.parse::<std::net::Ipv4Addr>().ok())
        // (default_subnet is IPv4, config-checked when the network is made; 10.210.0.1 if not.)
        .map_or(std::net::Ipv4Addr::new(10, 210, 0, 1), |base| std::net::Ipv4Addr::from(u32::from(base) + 1))
        .into();
    let containers_service =
        containers::ContainersService { containers: containers.clone(), default_network: config.default_network.clone(), host_gateway, init };
    let networks_service = networks::NetworksService { containers: containers.clone() };
    let volumes_service = volumes::VolumesService { containers: containers.clone() };
    let registries = berth_image::registries::SharedRegistries::new(registries_of(&config));
    let tls = match (&config.streaming_tls_cert, &config.streaming_tls_key) {
        (Some(cert), Some(key)) => Some(berth_streaming::Tls { cert: cert.clone(), key: key.clone() }),
        (None, None) => None,
        _ => anyhow::bail!("streaming_tls_cert and streaming_tls_key go together"),
    };
    let streaming = berth_streaming::Server::start(
        berth_streaming::Config { address: config.streaming_address, tls, ..Default::default() },
        Arc::new(berth_cri::StreamingRuntime::new(containers.clone())),
    )
    .await
    .with_context(|| format!("start the streaming server on {}", config.streaming_address))?;
    tracing::info!(address = %streaming.address(), "streaming server listening");
    let cri = berth_cri::Cri::new(
        containers.clone(),
        store.clone(),
        registries.clone(),
        berth_cri::Config { pinned_images: config.pinned_images.clone() },
        Some(Arc::new(streaming)),
    );
    let (reloaded_registries, reloaded_containers) = (registries.clone(), containers.clone());
    let metrics = metrics::Metrics::new(containers.clone(), store.clone());
    if let Some(address) = config.metrics_address {
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("metrics_address {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }
    let service = images::ImagesService { store, registries, containers };

    // The main socket is systemd's when it passed one (berthd.socket): not ours to make or remove.
    let activated = systemd::take_listener();
    let mut sockets: Vec<&PathBuf> = config.extra_sockets.iter().collect();
    let mut incoming: std::pin::Pin<Box<dyn tokio_stream::Stream<Item = std::io::Result<tokio::net::UnixStream>> + Send>> =
        Box::pin(tokio_stream::empty());
    match activated {
        Some(fd) => {
            let listener = std::os::unix::net::UnixListener::from(fd);
            listener.set_nonblocking(true).context("the socket systemd passed")?;
            let listener = tokio::net::UnixListener::from_std(listener).context("the socket systemd passed")?;
            incoming = Box::pin(berth_api::incoming(listener));
            tracing::info!("serving on the socket systemd passed");
            if config.socket_group.is_some() {
                tracing::warn!("socket_group does not apply to the socket systemd passed: set SocketGroup= and SocketMode=0660 in berthd.socket");
            }
        }
        None => sockets.insert(0, &config.socket),
    }
    let group = config.socket_group.as_deref().map(socket_group).transpose()?;
    for socket in &sockets {
        incoming = Box::pin(tokio_stream::StreamExt::merge(incoming, berth_api::incoming(bind(socket, group)?)));
    }
    tracing::info!(sockets = ?sockets, root = %config.root.display(), "serving");
    systemd::notify(&format!("READY=1\nMAINPID={}\nSTATUS=serving", std::process::id()));
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let mut running = config.clone();
    let shutdown = async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        // SIGHUP (the terminal or the job that started berthd went away) is no reason to stop: a
        // handler rather than SIG_IGN, so the processes berthd starts get the default back.
        let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = hangup.recv() => reload(&args, &mut running, &reloaded_containers, &reloaded_registries),
            }
        }
        tracing::info!("shutting down");
        systemd::notify("STOPPING=1");
        let _ = stopping_tx.send(true);
    };
    let serving = tonic::transport::Server::builder()
        .layer(metrics::Layer(metrics))
        .add_service(berth_api::v1::images_server::ImagesServer::new(service))
        .add_service(berth_api::v1::containers_server::ContainersServer::new(containers_service))
        .add_service(berth_api::v1::networks_server::NetworksServer::new(networks_service))
        .add_service(berth_api::v1::volumes_server::VolumesServer::new(volumes_service))
        .add_service(cri.runtime_service())
        .add_service(cri.image_service())
        .serve_with_incoming_shutdown(incoming, shutdown);
    // A graceful stop waits for every call to end, and some never do (`berth events`, `logs -f`,
    // the CRI's GetContainerEvents): those get SHUTDOWN_GRACE, then berthd goes all the same.
    let served = tokio::select! {
        served = serving => served,
        _ = async {
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("streams still open {} s after the stop began: closed", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    };
    for socket in sockets {
        let _ = std::fs::remove_file(socket);
    }
    served.context("serve berth.v1")
}

/// The command line's overrides of the config file.
fn with_overrides(mut config: config::Config, args: &Args) -> config::Config {
    config.root = args.root.clone().unwrap_or(config.root);
    config.socket = args.socket.clone().unwrap_or(config.socket);
    config.state = args.state.clone().unwrap_or(config.state);
    config
}

fn registries_of(config: &config::Config) -> berth_image::registries::Registries {
    berth_image::registries::Registries {
        plain_http: config.plain_http.clone(),
        mirrors: config.mirrors.clone(),
        credentials: config.auth.iter().map(|(registry, c)| (registry.clone(), (c.username.clone(), c.password.clone()))).collect(),
        docker_config: config.docker_config.clone(),
        concurrency: config.concurrency,
        timeouts: berth_image::distribution::Timeouts::uniform(std::time::Duration::from_secs(config.registry_timeout.max(1))),
    }
}

/// What SIGHUP reloads: the registries' settings and the runtimes. Every other key is read at
/// start only.
const RELOADABLE: [&str; 8] = ["plain_http", "mirrors", "auth", "docker_config", "concurrency", "registry_timeout", "runtimes", "default_runtime"];

/// SIGHUP: the config file read again. Registries and runtimes change for what starts from now
/// on (running containers keep their runtime); any other key that changed is named as needing a
/// restart. A file that does not parse, or names a default runtime that is missing, changes
/// nothing.
fn reload(
    args: &Args,
    running: &mut config::Config,
    containers: &berth_containers::Containers,
    registries: &berth_image::registries::SharedRegistries,
) {
    let new = match config::load(&args.config, true) {
        Ok(new) => with_overrides(new, args),
        Err(e) => return tracing::warn!("SIGHUP: {e:#}; the running config stays"),
    };
    let runtimes = runtimes(&new);
    let shim = new.shim.clone().unwrap_or_else(|| berth_containers::shim_launcher::sibling_or_path("berth-shim"));
    if let Err(e) = check_binaries(&shim, &runtimes, &new.default_runtime) {
        return tracing::warn!("SIGHUP: {e:#}; the running config stays");
    }
    registries.replace(registries_of(&new));
    containers.set_runtimes(runtimes, new.default_runtime.clone());
    let (before, after) = (serde_json::to_value(&*running).unwrap_or_default(), serde_json::to_value(&new).unwrap_or_default());
    let changed = |key: &&String| before.get(key.as_str()) != after.get(key.as_str());
    let keys: Vec<&String> = after.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    let needs_restart: Vec<&String> = keys.iter().copied().filter(changed).filter(|k| !RELOADABLE.contains(&k.as_str())).collect();
    let reloaded: Vec<&String> = keys.iter().copied().filter(changed).filter(|k| RELOADABLE.contains(&k.as_str())).collect();
    // What runs is the old config but for what was reloaded: the next SIGHUP compares with that.
    let mut kept = before;
    for key in &reloaded {
        kept[key.as_str()] = after[key.as_str()].clone();
    }
    if let Ok(kept) = serde_json::from_value(kept) {
        *running = kept;
    }
    tracing::info!(reloaded = ?reloaded, needs_restart = ?needs_restart, "SIGHUP: config reloaded");
}

/// How long a stopping berthd waits for streaming calls that would never end by themselves.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// berthd holds a connection to every shim (their events): the soft limit on open files (1024
/// under most service managers) goes up to the hard one, as containerd and dockerd do.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct that outlives the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The OCI runtimes by name (the CRI's runtime handlers): berth-oci, runc and crun, and the
/// config's.
fn runtimes(config: &config::Config) -> std::collections::BTreeMap<String, PathBuf> {
    use berth_containers::shim_launcher::sibling_or_path;
    let mut runtimes: std::collections::BTreeMap<String, PathBuf> =
        [("berth-oci", sibling_or_path("berth-oci")), ("runc", PathBuf::from("runc")), ("crun", PathBuf::from("crun"))]
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect();
    runtimes.extend(config.runtimes.clone());
    runtimes
}

fn open_containers(
    config: &config::Config,
    store: Arc<berth_image::Store>,
    runtimes: std::collections::BTreeMap<String, PathBuf>,
) -> anyhow::Result<berth_containers::Containers> {
    use berth_containers::shim_launcher::sibling_or_path;
    let shim = config.shim.clone().unwrap_or_else(|| sibling_or_path("berth-shim"));
    check_binaries(&shim, &runtimes, &config.default_runtime)?;
    let binaries = berth_containers::shim_launcher::Binaries { shim, runtimes, default_runtime: config.default_runtime.clone() };
    let paths = berth_containers::Paths {
        data: config.root.join("containers"),
        state: config.state.join("containers"),
        runtime_root: config.state.join("runtime"),
        volumes: config.root.join("volumes"),
    };
    berth_containers::Containers::open(store, paths, binaries, config.log_max_size).context("open the containers")
}

/// Where a binary is: a path as it is, a bare name on $PATH.
fn locate(binary: &std::path::Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|dir| dir.join(binary)).find(|p| p.is_file())
}

/// The shim and the default runtime must exist, or nothing could run: berthd says where it looked
/// and stops. Other runtimes may be missing (runc and crun are optional): said once, here.
fn check_binaries(shim: &std::path::Path, runtimes: &std::collections::BTreeMap<String, PathBuf>, default: &str) -> anyhow::Result<()> {
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.display().to_string())).unwrap_or_default();
    let path = std::env::var("PATH").unwrap_or_default();
    let looked = |binary: &std::path::Path| match binary.components().count() {
        1 => format!("not next to berthd ({beside}) nor on PATH ({path})"),
        _ => format!("{} does not exist", binary.display()),
    };
    if locate(shim).is_none() {
        anyhow::bail!("berth-shim: {}; set `shim` in the config", looked(shim));
    }
    for (name, binary) in runtimes {
        match (locate(binary), name == default) {
            (Some(found), _) => tracing::debug!(runtime = %name, binary = %found.display(), "runtime found"),
            (None, true) => anyhow::bail!("the default runtime {name}: {}; set `runtimes` or `default_runtime` in the config", looked(binary)),
            (None, false) => tracing::info!(runtime = %name, "runtime unavailable: {}", looked(binary)),
        }
    }
    Ok(())
}

/// `socket_group` as a gid: a group's name, or its number.
fn socket_group(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => anyhow::bail!("socket_group {group:?}: no such group"),
        Err(e) => anyhow::bail!("socket_group {group:?}: {e}"),
    }
}

/// Binds the socket in a 0700 directory (0710 and the socket 0660, both of `group`, when given),
/// replacing a stale socket file left by a crash.
fn bind(socket: &std::path::Path, group: Option<u32>) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let dir_mode = if group.is_some() { 0o710 } else { 0o700 };
    if let Some(dir) = socket.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("create {}", dir.display()))?;
        std::os::unix::fs::chown(dir, None, Some(group.unwrap_or(0))).with_context(|| format!("chown {}", dir.display()))?;
        std::fs::set_permissions(dir, PermissionsExt::from_mode(dir_mode)).with_context(|| format!("chmod {dir_mode:o} {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(socket) {
        // Only a socket nobody answers on is stale: a live one is another berthd's, whose
        // clients would all be cut off if it were unlinked.
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                anyhow::bail!("{} is served by another process (another berthd?)", socket.display());
            }
            std::fs::remove_file(socket).with_context(|| format!("remove stale {}", socket.display()))?
        }
        Ok(_) => anyhow::bail!("{} exists and is not a socket", socket.display()),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(socket, None, Some(gid)).with_context(|| format!("chown {}", socket.display()))?;
        std::fs::set_permissions(socket, PermissionsExt::from_mode(0o660)).with_context(|| format!("chmod 0660 {}", socket.display()))?;
    }
    Ok(listener)
}
