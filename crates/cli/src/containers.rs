//! The container verbs, docker's and podman's names and flags: each is one or two
//! berth.v1.Containers calls, plus a stream to the shim for run, attach and exec.

use crate::each;
use crate::format::{json_time, Output};
use crate::stream::{pump, DetachKeys, Ended, Kind};
use crate::{status, Format};
use berth_api::v1::containers_client::ContainersClient;
use berth_api::v1::{
    stream_input, AttachRequest, Container, ContainerRef, CreateContainerRequest, EventsRequest, ExecRequest, KillContainerRequest,
    ListContainersRequest, LogsRequest, PortMapping, RemoveContainerRequest, StopContainerRequest, Tmpfs, TopRequest, Volume, WaitRequest,
};
use clap::{Args, Subcommand};
use std::io::Write;
use tonic::transport::Channel;

/// What both `run` and `exec` may set about the process.
#[derive(Args)]
pub struct ProcessArgs {
    /// KEY=VALUE, or KEY to pass this shell's value.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// A file of KEY=VALUE (or KEY) lines, `#` comments and blank lines skipped, read before
    /// any -e (which may override it), as docker's.
    #[arg(long = "env-file")]
    env_file: Vec<std::path::PathBuf>,
    /// user, uid, user:group or uid:gid (looked up in the image).
    #[arg(short, long)]
    user: Option<String>,
    /// The working directory inside (the image's by default).
    #[arg(short, long)]
    workdir: Option<String>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// A name (default: the short id).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    process: ProcessArgs,
    /// Replaces the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// SOURCE:TARGET[:ro]: a host directory (a path) or a named volume (a name), made on first use;
    /// /TARGET alone: an anonymous volume.
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…], as
    /// docker's.
    #[arg(long)]
    mount: Vec<String>,
    /// TARGET[:OPTIONS]: a tmpfs (noexec,nosuid,nodev, then OPTIONS such as size=64m,mode=1777).
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Memory limit: bytes, or with a k, m or g suffix.
    #[arg(short, long)]
    memory: Option<String>,
    /// CPUs the container may use (a quota: 0.5 is half of one).
    #[arg(long)]
    cpus: Option<f64>,
    /// The most processes (and threads) it may have; -1 for no limit.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Add a capability (CAP_NET_ADMIN or NET_ADMIN; ALL for every one).
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop a capability (ALL for every one).
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Every capability and device, no seccomp filter: the host's power.
    #[arg(long)]
    privileged: bool,
    /// bridge (berth's default network), a network's name, host, none, or container:NAME (another
    /// container's network, as in docker); berthd's
    /// default_network (bridge unless configured) when not given.
    #[arg(long, visible_alias = "net", default_value = "")]
    network: String,
    /// [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]: publish a port on the host (bridge networks;
    /// an IPv6 HOST_IP in brackets).
    #[arg(short, long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image exposes on a free host port (bridge networks).
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// NAME:IP: a line added to the container's /etc/hosts (IP host-gateway: the host, at the
    /// default network's gateway).
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// A name server for the container's resolv.conf (in place of the host's).
    #[arg(long)]
    dns: Vec<String>,
    /// A DNS search domain (in place of the host's).
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// A resolver option such as ndots:5 (in place of the host's).
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    dns_option: Vec<String>,
    /// HOST[:CONTAINER[:PERMISSIONS]]: a host device in the container (permissions of rwm).
    #[arg(long)]
    device: Vec<String>,
    /// NAME=SOFT[:HARD]: a resource limit (nofile, nproc, core, …; -1 for unlimited).
    #[arg(long)]
    ulimit: Vec<String>,
    /// The container's hostname (its short id by default).
    #[arg(long)]
    hostname: Option<String>,
    /// A terminal for the container.
    #[arg(short, long)]
    tty: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// KEY=VALUE.
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// An OCI runtime from berthd's config (berth-oci, runc, crun …).
    #[arg(long)]
    runtime: Option<String>,
    /// A healthcheck command (run by /bin/sh -c in the container), over the image's HEALTHCHECK.
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between checks (30s, 1m30s, 500ms …).
    #[arg(long, value_parser = duration)]
    health_interval: Option<std::time::Duration>,
    /// Time a check may take before it counts as failed.
    #[arg(long, value_parser = duration)]
    health_timeout: Option<std::time::Duration>,
    /// Time after the start during which failures do not count.
    #[arg(long, value_parser = duration)]
    health_start_period: Option<std::time::Duration>,
    /// Failures in a row that make the container unhealthy.
    #[arg(long)]
    health_retries: Option<u32>,
    /// No healthcheck, whatever the image says.
    #[arg(long)]
    no_healthcheck: bool,
    /// When berthd starts it again after it exits: no, on-failure[:N] (a non-zero exit, at most
    /// N times), always, or unless-stopped (as always, but not after a `stop` even across
    /// berthd's restarts).
    #[arg(long, default_value = "no")]
    restart: String,
    /// Run an init as PID 1 (tini) that reaps zombies and passes signals on to the command.
    #[arg(long)]
    init: bool,
    /// When to pull the image first: missing (when it is not in the store), always, or never.
    #[arg(long, value_enum, default_value = "missing")]
    pull: PullPolicy,
    /// The image: a name, an id (12 hex digits or more) or a digest.
    image: String,
    /// The command and its arguments (the image's Cmd by default).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container; in the foreground, exit with its status.
    #[command(after_help = "Examples:
  berth run --rm -it localhost/busybox sh
  berth run -d --name web -p 127.0.0.1:8080:80 --restart unless-stopped localhost/busybox httpd -f -p 80
  berth run --rm -v data:/data --tmpfs /tmp --memory 64m --cpus 0.5 localhost/busybox du -sh /data")]
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Print the id and leave it running.
        #[arg(short, long)]
        detach: bool,
        /// Remove the container when it exits.
        #[arg(long)]
        rm: bool,
        /// Pass the signals this client gets (^C, SIGTERM, …) on to the container (without -t).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        sig_proxy: bool,
        /// Keys that leave the container running and end this client (with -i): keys
        /// separated by commas, each a character or ctrl-X; empty for none.
        #[arg(long, default_value = "ctrl-p,ctrl-q", value_parser = crate::stream::detach_keys)]
        detach_keys: DetachKeys,
    },
    /// Create a container (start it later).
    Create {
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Start created or exited containers.
    Start {
        /// Containers by name or id (prefix).
        #[arg(required = true)]
        containers: Vec<String>,
        /// Attach to its output and exit with its status (one container).
        #[arg(short, long)]
        attach: bool,
        /// With --attach, pass the signals this client gets on to the container (without a tty).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        sig_proxy: bool,
        /// With --attach, the keys that detach (as run's).
        #[arg(long, default_value = "ctrl-p,ctrl-q", value_parser = crate::stream::detach_keys)]
        detach_keys: DetachKeys,
    },
    /// List containers (running ones unless --all).
    Ps {
        /// Stopped containers too.
        #[arg(short, long)]
        all: bool,
        /// Only the short ids, one per line (docker's `ps -q`, for `berth rm $(berth ps -aq)`).
        #[arg(short, long)]
        quiet: bool,
        /// KEY=VALUE, as docker's: id, name, label (KEY or KEY=VALUE), status, ancestor, exited,
        /// health, network. A key given twice matches either value; different keys all must.
        #[arg(short, long, value_parser = ps_filter)]
        filter: Vec<(String, String)>,
        /// table, json, or a Go template of docker's fields: {{.ID}} {{.Names}} {{.Image}}
        /// {{.Command}} {{.CreatedAt}} {{.RunningFor}} {{.Status}} {{.State}} {{.Ports}}
        /// {{.Labels}} {{.Networks}}, {{json .}}; `table TEMPLATE` adds a header.
        #[arg(long, default_value = "table", value_parser = crate::format::output)]
        format: Output,
    },
    /// Print a container's log.
    Logs {
        /// A container by name or id (prefix).
        container: String,
        /// Keep printing as the container writes, until it exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u32>,
        /// Each line's time (RFC 3339, nanoseconds).
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Only lines since a time: RFC 3339 (2026-12-04T10:00:00Z, or a date), a Unix time in
        /// seconds, or a duration before now (10m, 1h30m).
        #[arg(long, value_parser = point_in_time)]
        since: Option<u64>,
        /// Only lines before a time, given as --since takes it.
        #[arg(long, value_parser = point_in_time)]
        until: Option<u64>,
    },
    /// Run a command in a running container.
    Exec {
        /// A terminal for the command.
        #[arg(short, long)]
        tty: bool,
        /// Keep stdin open and pass this terminal's input on.
        #[arg(short, long)]
        interactive: bool,
        #[command(flatten)]
        process: ProcessArgs,
        /// A container by name or id (prefix).
        container: String,
        /// The command to run and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Attach to a running container's output (and its stdin, if it has one open).
    Attach {
        /// A container by name or id (prefix).
        container: String,
        /// Do not pass this terminal's input on.
        #[arg(long)]
        no_stdin: bool,
        /// The keys that detach (as run's).
        #[arg(long, default_value = "ctrl-p,ctrl-q", value_parser = crate::stream::detach_keys)]
        detach_keys: DetachKeys,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Containers by name or id (prefix).
        #[arg(required = true)]
        containers: Vec<String>,
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u32,
    },
    /// Stop containers (as stop does) and start them again.
    Restart {
        /// Containers by name or id (prefix).
        #[arg(required = true)]
        containers: Vec<String>,
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u32,
    },
    /// Send a signal to a container's init.
    Kill {
        /// Containers by name or id (prefix).
        #[arg(required = true)]
        containers: Vec<String>,
        /// A signal by name (TERM, SIGHUP) or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
    },
    /// Remove containers.
    Rm {
        /// Containers by name or id (prefix).
        #[arg(required = true)]
        containers: Vec<String>,
        /// Kill it first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        /// Containers by name or id (prefix).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print container events as they happen.
    Events {
        /// KEY=VALUE, as docker's: container (a name or id prefix), event (create, start, die,
        /// oom, destroy, health_status…), type (container). A key given twice matches either.
        #[arg(short, long, value_parser = event_filter)]
        filter: Vec<(String, String)>,
        /// table (docker's line), or json (an object per line).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List a running container's processes.
    Top {
        /// A container by name or id (prefix).
        container: String,
        /// ps's options (the host's ps, as docker runs it; -ef when none), keeping a PID column.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List a container's published ports.
    Port {
        /// A container by name or id (prefix).
        container: String,
    },
    /// Running containers' resource use: CPU %, memory, pids.
    Stats {
        /// Every running container when none is named.
        containers: Vec<String>,
        /// table or json (a line per sample).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// One sample and exit (else a new one every second, as docker's).
        #[arg(long)]
        no_stream: bool,
    },
}

/// `--env-file`s' lines, then `-e`s: `KEY=VALUE` as it is, a bare `KEY` from this shell (left out
/// when it has none there).
fn env_entries(process: &ProcessArgs) -> anyhow::Result<Vec<String>> {
    use std::io::Read;
    let mut entries = Vec::new();
    for file in &process.env_file {
        let mut text = String::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_ENV_FILE + 1).read_to_string(&mut text))
            .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", file.display()))?;
        if text.len() as u64 > MAX_ENV_FILE {
            anyhow::bail!("--env-file {}: larger than {MAX_ENV_FILE} bytes", file.display());
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // docker's rules: a line is trimmed at its start, a bare KEY at its end too.
        let lines = text.lines().map(str::trim_start).filter(|l| !l.is_empty() && !l.starts_with('#'));
        entries.extend(lines.map(|l| if l.contains('=') { l.to_string() } else { l.trim_end().to_string() }));
    }
    entries.extend(process.env.iter().cloned());
    let bad_name = |name: &str| name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control());
    if let Some(entry) = entries.iter().find(|e| e.split('=').next().is_none_or(bad_name)) {
        anyhow::bail!("environment entry {entry:?}: not a variable name");
    }
    Ok(entries.into_iter().filter_map(|e| if e.contains('=') { Some(e) } else { std::env::var(&e).ok().map(|v| format!("{e}={v}")) }).collect())
}

/// The most of one `--env-file` read (an environment, not a data file).
const MAX_ENV_FILE: u64 = 1 << 20;

fn parse_bytes(text: &str) -> anyhow::Result<i64> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let value: i64 = digits.parse().map_err(|_| anyhow::anyhow!("memory {text:?}: use bytes or a k, m, g suffix"))?;
    let scale: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => anyhow::bail!("memory {text:?}: use bytes or a k, m, g suffix"),
    };
    value.checked_mul(scale).ok_or_else(|| anyhow::anyhow!("memory {text:?} is too large"))
}

/// `30s`, `1m30s`, `500ms`: docker's duration flags.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (say 30s, 1m30s, 500ms)"))
}

/// `--since`/`--until` as docker takes them, in nanoseconds since the epoch: RFC 3339 (a date
/// alone is its midnight, UTC), Unix seconds (with a fraction), or a duration before now.
fn point_in_time(text: &str) -> Result<u64, String> {
    let nanos = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).map_err(|e| e.to_string());
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds.max(0.0) * 1e9) as u64);
    }
    let date_only = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
    let stamp = if date_only { format!("{text}T00:00:00Z") } else { text.to_string() };
    if let Ok(t) = humantime::parse_rfc3339_weak(&stamp) {
        return nanos(t);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => nanos(std::time::SystemTime::now().checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH)),
        Err(_) => Err(format!("{text:?}: an RFC 3339 time, Unix seconds, or a duration (10m)")),
    }
}

/// 0 when not given or given as 0: the image's value, or docker's default, as docker takes 0s.
fn nanos(given: Option<std::time::Duration>) -> u64 {
    given.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn create_request(args: CreateArgs) -> anyhow::Result<CreateContainerRequest> {
    let console = if args.tty { crate::stream::terminal_size() } else { None };
    let mut volumes = args.volume.iter().map(|v| volume(v)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut tmpfs_mounts: Vec<Tmpfs> = args.tmpfs.iter().map(|t| tmpfs(t)).collect();
    for spec in &args.mount {
        match mount(spec)? {
            Ok(volume) => volumes.push(volume),
            Err(t) => tmpfs_mounts.push(t),
        }
    }
    let mut labels = std::collections::HashMap::new();
    for label in &args.label {
        let (key, value) = label.split_once('=').unwrap_or((label, ""));
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(CreateContainerRequest {
        image: args.image,
        name: args.name.unwrap_or_default(),
        args: args.command,
        entrypoint: args.entrypoint.clone().into_iter().filter(|e| !e.is_empty()).collect(),
        entrypoint_set: args.entrypoint.is_some(),
        env: env_entries(&args.process)?,
        user: args.process.user.unwrap_or_default(),
        workdir: args.process.workdir.unwrap_or_default(),
        volumes,
        read_only: args.read_only,
        memory: args.memory.as_deref().map(parse_bytes).transpose()?.unwrap_or(0),
        cpus: args.cpus.unwrap_or(0.0),
        pids_limit: args.pids_limit.unwrap_or(0),
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        privileged: args.privileged,
        network: args.network,
        ports: args.publish.iter().map(|p| port_mapping(p)).collect::<anyhow::Result<Vec<_>>>()?,
        publish_all: args.publish_all,
        add_hosts: args.add_host,
        dns: args.dns,
        dns_search: args.dns_search,
        dns_options: args.dns_option,
        devices: args.device,
        ulimits: args.ulimit,
        hostname: args.hostname.unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive,
        labels,
        runtime: args.runtime.unwrap_or_default(),
        console_width: console.map_or(0, |c| c.0.into()),
        console_height: console.map_or(0, |c| c.1.into()),
        auto_remove: false,
        restart: args.restart,
        init: args.init,
        tmpfs: tmpfs_mounts,
        health_cmd: args.health_cmd.unwrap_or_default(),
        health_interval_ns: nanos(args.health_interval),
        health_timeout_ns: nanos(args.health_timeout),
        health_start_period_ns: nanos(args.health_start_period),
        health_retries: args.health_retries.unwrap_or(0),
        no_healthcheck: args.no_healthcheck,
    })
}

/// docker's `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`:
/// a bind or volume mount (as `-v`'s), or a tmpfs (as `--tmpfs`'s).
fn mount(spec: &str) -> anyhow::Result<Result<Volume, Tmpfs>> {
    let bad = |why: &str| anyhow::anyhow!("mount {spec:?}: {why}");
    let (mut kind, mut source, mut target, mut read_only, mut tmpfs) = ("volume", String::new(), String::new(), false, Vec::new());
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("type", Some(v @ ("bind" | "volume" | "tmpfs"))) => kind = v,
            ("type", _) => return Err(bad("type is bind, volume or tmpfs")),
            ("source" | "src", Some(v)) => source = v.to_string(),
            ("target" | "destination" | "dst", Some(v)) => target = v.to_string(),
            ("readonly" | "ro", None | Some("true" | "1")) => read_only = true,
            ("readonly" | "ro", Some("false" | "0")) => read_only = false,
            ("tmpfs-size", Some(v)) => tmpfs.push(format!("size={v}")),
            ("tmpfs-mode", Some(v)) => tmpfs.push(format!("mode={v}")),
            _ => return Err(bad(&format!("unknown or malformed field {field:?}"))),
        }
    }
    if !target.starts_with('/') {
        return Err(bad("target=/PATH is needed"));
    }
    match kind {
        "tmpfs" => {
            if read_only {
                tmpfs.push("ro".into());
            }
            Ok(Err(Tmpfs { target, options: tmpfs.join(",") }))
        }
        "bind" if !source.starts_with('/') => Err(bad("a bind's source is an absolute path")),
        _ if !tmpfs.is_empty() => Err(bad("tmpfs-* fields go with type=tmpfs")),
        // A volume's source is its name; none: an anonymous one.
        _ => Ok(Ok(Volume { source, target, read_only })),
    }
}

/// docker's `--tmpfs TARGET[:OPTIONS]`.
fn tmpfs(spec: &str) -> Tmpfs {
    let (target, options) = spec.split_once(':').unwrap_or((spec, ""));
    Tmpfs { target: target.to_string(), options: options.to_string() }
}

/// docker's `-p`: `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`; no host port means one
/// berthd chooses.
fn port_mapping(spec: &str) -> anyhow::Result<PortMapping> {
    let bad = || anyhow::anyhow!("publish {spec:?}: use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]");
    let (ports, protocol) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    // An IPv6 host address goes in brackets: `[::1]:8080:80`.
    let (bracketed, ports) = match ports.strip_prefix('[') {
        Some(rest) => {
            let (ip, rest) = rest.split_once("]:").ok_or_else(bad)?;
            (Some(ip), rest)
        }
        None => (None, ports),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host_port, container_port) = match (bracketed, parts.as_slice()) {
        (None, [c]) => ("", "", *c),
        (None, [h, c]) => ("", *h, *c),
        (None, [ip, h, c]) => (*ip, *h, *c),
        (Some(ip), [h, c]) => (ip, *h, *c),
        _ => return Err(bad()),
    };
    let port = |text: &str| text.parse::<u16>().ok().filter(|p| *p > 0).map(u32::from).ok_or_else(bad);
    Ok(PortMapping {
        host_ip: host_ip.to_string(),
        host_port: if host_port.is_empty() { 0 } else { port(host_port)? },
        container_port: port(container_port)?,
        protocol: protocol.to_string(),
    })
}

/// `80/tcp -> 127.0.0.1:18080`, as `docker port` prints it.
fn port_line(p: &PortMapping) -> String {
    let ip = match p.host_ip.as_str() {
        "" => "0.0.0.0".to_string(),
        v6 if v6.contains(':') => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    format!("{}/{} -> {ip}:{}", p.container_port, p.protocol, p.host_port)
}

/// `-v SOURCE:TARGET[:ro|rw]`: a SOURCE that looks like a path (it holds a `/`, or starts with `.`
/// or `~`) is a host directory, made absolute here (berthd's working directory is not ours);
/// anything else names a volume, as in docker.
fn volume(spec: &str) -> anyhow::Result<Volume> {
    let mut parts = spec.splitn(2, ':');
    let source = parts.next().unwrap_or_default();
    let Some(rest) = parts.next() else {
        // `-v /dst`: an anonymous volume there, as docker's.
        anyhow::ensure!(source.starts_with('/'), "volume {spec:?}: use SOURCE:TARGET[:ro], or /TARGET for an anonymous volume");
        return Ok(Volume { source: String::new(), target: source.to_string(), read_only: false });
    };
    let source = match source.strip_prefix("~/").zip(std::env::var_os("HOME")) {
        Some((under_home, home)) => std::path::Path::new(&home).join(under_home).to_string_lossy().into_owned(),
        None if source.contains('/') || source.starts_with('.') => std::path::absolute(source)?.to_string_lossy().into_owned(),
        None => source.to_string(),
    };
    let (target, read_only) = match rest.rsplit_once(':') {
        Some((target, "ro")) => (target.to_string(), true),
        Some((target, "rw")) => (target.to_string(), false),
        _ => (rest.to_string(), false),
    };
    Ok(Volume { source, target, read_only })
}

pub fn container_json(c: &Container, full: bool) -> serde_json::Value {
    let mut json = serde_json::json!({
        "id": c.id, "name": c.name, "image": c.image, "state": c.state, "pid": c.pid, "command": c.command,
        "created_at": json_time(c.created_at), "started_at": json_time(c.started_at), "finished_at": json_time(c.finished_at),
        "runtime": c.runtime, "labels": c.labels,
    });
    if c.exited {
        json["exit_code"] = c.exit_code.into();
    }
    if full {
        json["manifest"] = c.image_manifest.clone().into();
        json["tty"] = c.tty.into();
        json["stdin"] = c.stdin.into();
        json["oom_killed"] = c.oom_killed.into();
        if !c.health.is_empty() {
            json["health"] = c.health.clone().into();
        }
        json["auto_remove"] = c.auto_remove.into();
        json["restart_policy"] = serde_json::json!({"name": c.restart_policy, "restart_count": c.restart_count});
        json["spec"] = serde_json::from_str(&c.spec_json).unwrap_or_default();
        json["network"] = serde_json::json!({
            "name": c.network, "ips": c.ips,
            "ports": c.ports.iter().map(|p| serde_json::json!({"host_ip": p.host_ip, "host_port": p.host_port, "container_port": p.container_port, "protocol": p.protocol})).collect::<Vec<_>>(),
        });
    }
    json
}

/// Attaches to the container through berthd, runs `start`, and streams until it exits.
async fn attach_and_pump(
    client: &mut ContainersClient<Channel>,
    container: &Container,
    tty: bool,
    stdin: bool,
    detach: &DetachKeys,
    start: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Ended> {
    let attach = stream_input::Input::Attach(AttachRequest { container: container.id.clone(), stdin });
    pump(client, Kind::Attach, attach, tty, stdin, detach, start).await
}

/// Signals a foreground client passes on to its container (docker's sig-proxy): what a user or a
/// supervisor sends to stop or poke the process. Not SIGCHLD, SIGWINCH (a tty's own), SIGPIPE
/// (this client's output), SIGKILL or SIGSTOP (uncatchable). With a tty, ^C is a byte the
/// container's terminal turns into its own SIGINT, so nothing is proxied.
const PROXIED: [i32; 6] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// Forwards [`PROXIED`] signals to `container` until the returned guard is dropped.
fn proxy_signals(client: ContainersClient<Channel>, container: String) -> anyhow::Result<AbortOnDrop> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut forwarders = Vec::new();
    for number in PROXIED {
        let mut received = signal(SignalKind::from_raw(number)).map_err(|e| anyhow::anyhow!("catch signal {number}: {e}"))?;
        let (mut client, container) = (client.clone(), container.clone());
        forwarders.push(tokio::spawn(async move {
            while received.recv().await.is_some() {
                // A container that has just exited makes this fail: then there is nobody to tell.
                let _ = client.kill(KillContainerRequest { container: container.clone(), signal: number, all: false }).await;
            }
        }));
    }
    Ok(AbortOnDrop(forwarders))
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Creates the container, pulling its image first as `--pull` says: always, or (docker's default)
/// when berthd has no such image. Pull output goes to stderr: stdout is the container's.
async fn create_pulling(client: &mut ContainersClient<Channel>, channel: &Channel, args: CreateArgs, auto_remove: bool) -> anyhow::Result<Container> {
    let (policy, image) = (args.pull, args.image.clone());
    let mut request = create_request(args)?;
    request.auto_remove = auto_remove;
    let mut images = berth_api::v1::images_client::ImagesClient::new(channel.clone());
    if policy == PullPolicy::Always {
        crate::images::pull(&mut images, image.clone(), &mut std::io::stderr()).await?;
    }
    match client.create(request.clone()).await {
        Err(e) if policy == PullPolicy::Missing && e.code() == tonic::Code::NotFound && e.message().contains("no such image") => {
            eprintln!("Unable to find image '{image}' locally");
            crate::images::pull(&mut images, image, &mut std::io::stderr()).await?;
            Ok(client.create(request).await.map_err(status)?.into_inner())
        }
        created => Ok(created.map_err(status)?.into_inner()),
    }
}

pub async fn run(channel: Channel, command: ContainerCommand) -> anyhow::Result<i32> {
    let mut client = ContainersClient::new(channel.clone());
    match command {
        ContainerCommand::Run { create, detach, rm, sig_proxy, detach_keys } => {
            let (tty, stdin) = (create.tty, create.interactive);
            // berthd removes it once it has exited, whatever happens to this client.
            let container = create_pulling(&mut client, &channel, create, rm).await.map_err(RunFailed::wrap)?;
            if detach {
                client.start(ContainerRef { container: container.id.clone() }).await.map_err(|e| RunFailed::wrap(status(e)))?;
                println!("{}", container.id);
                return Ok(0);
            }
            let mut starter = client.clone();
            let id = container.id.clone();
            let start = async move { starter.start(ContainerRef { container: id }).await.map(|_| ()).map_err(|e| RunFailed::wrap(status(e))) };
            let _proxy = (sig_proxy && !tty).then(|| proxy_signals(client.clone(), container.id.clone())).transpose()?;
            let streamed = attach_and_pump(&mut client.clone(), &container, tty, stdin, &detach_keys, start).await;
            if matches!(streamed, Ok(Ended::Detached)) {
                // It runs on (and with --rm goes when it exits, berthd's business).
                return Ok(0);
            }
            // The exit as berthd recorded it (also when the stream broke off); with --rm, once
            // the container is gone.
            let waited = client.wait(WaitRequest { container: container.id.clone(), removed: rm }).await.map_err(status);
            Ok(match streamed? {
                Ended::Exited(code) => code,
                _ => waited?.into_inner().exit_code,
            })
        }
        ContainerCommand::Create { create } => {
            let container = create_pulling(&mut client, &channel, create, false).await?;
            println!("{}", container.id);
            Ok(0)
        }
        ContainerCommand::Start { containers, attach, sig_proxy, detach_keys } => {
            if attach {
                let [key] = containers.as_slice() else { anyhow::bail!("start --attach takes one container") };
                let container = client.prepare(ContainerRef { container: key.clone() }).await.map_err(status)?.into_inner();
                let _proxy = (sig_proxy && !container.tty).then(|| proxy_signals(client.clone(), container.id.clone())).transpose()?;
                let mut starter = client.clone();
                let id = container.id.clone();
                let start = async move { starter.start(ContainerRef { container: id }).await.map(|_| ()).map_err(status) };
                let ended = attach_and_pump(&mut client.clone(), &container, container.tty, container.stdin, &detach_keys, start).await?;
                return match ended {
                    Ended::Exited(code) => Ok(code),
                    Ended::Detached => Ok(0),
                    Ended::Gone => {
                        Ok(client.wait(WaitRequest { container: container.id, removed: false }).await.map_err(status)?.into_inner().exit_code)
                    }
                };
            }
            for key in containers {
                client.start(ContainerRef { container: key.clone() }).await.map_err(status)?;
                println!("{key}");
            }
            Ok(0)
        }
        ContainerCommand::Ps { all, quiet, filter: filters, format } => {
            // A status filter looks at every container, as docker's does.
            let all = all || filters.iter().any(|(key, _)| key == "status");
            let list = client.list(ListContainersRequest { all }).await.map_err(status)?.into_inner().containers;
            let list: Vec<Container> = list.into_iter().filter(|c| ps_matches(c, &filters)).collect();
            if quiet {
                for c in list {
                    println!("{}", &c.id[..12.min(c.id.len())]);
                }
                return Ok(0);
            }
            match format {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list.iter().map(|c| container_json(c, false)).collect::<Vec<_>>())?),
                Output::Template { text, header } => crate::format::print_template(&text, header, &list.iter().map(ps_fields).collect::<Vec<_>>())?,
                Output::Table => {
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(ps_fields)
                        .map(|f| {
                            ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
                                .map(|k| f[k].as_str().unwrap_or_default().to_string())
                                .to_vec()
                        })
                        .collect();
                    crate::format::print_table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows);
                }
            }
            Ok(0)
        }
        ContainerCommand::Logs { container, follow, tail, timestamps, since, until } => {
            let request = LogsRequest { container, follow, tail: tail.unwrap_or(0), since_ns: since.unwrap_or(0), until_ns: until.unwrap_or(0) };
            let mut entries = client.logs(request).await.map_err(status)?.into_inner();
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            while let Some(entry) = entries.message().await.map_err(status)? {
                let sink: &mut dyn Write = if entry.stderr { &mut err } else { &mut out };
                if timestamps {
                    write!(sink, "{} ", entry.timestamp)?;
                }
                sink.write_all(&entry.text)?;
                if !entry.partial {
                    sink.write_all(b"\n")?;
                }
                sink.flush()?;
            }
            Ok(0)
        }
        ContainerCommand::Exec { tty, interactive, process, container, command } => {
            let console = if tty { crate::stream::terminal_size() } else { None };
            let exec = ExecRequest {
                container,
                args: command,
                tty,
                env: env_entries(&process)?,
                user: process.user.unwrap_or_default(),
                workdir: process.workdir.unwrap_or_default(),
                console_width: console.map_or(0, |c| c.0.into()),
                console_height: console.map_or(0, |c| c.1.into()),
                stdin: interactive,
            };
            let none = DetachKeys(Vec::new());
            match pump(&mut client, Kind::Exec, stream_input::Input::Exec(exec), tty, interactive, &none, async { Ok(()) }).await? {
                Ended::Exited(code) => Ok(code),
                // No exit frame: the container stopped under the exec.
                Ended::Gone | Ended::Detached => Ok(137),
            }
        }
        ContainerCommand::Attach { container, no_stdin, detach_keys } => {
            let container = client.inspect(ContainerRef { container }).await.map_err(status)?.into_inner();
            if container.state != "running" {
                anyhow::bail!("container {} is not running", container.name);
            }
            let stdin = container.stdin && !no_stdin;
            match attach_and_pump(&mut client, &container, container.tty, stdin, &detach_keys, async { Ok(()) }).await? {
                Ended::Exited(code) => Ok(code),
                Ended::Gone | Ended::Detached => Ok(0),
            }
        }
        ContainerCommand::Stop { containers, time } => {
            Ok(each(containers, async |key| client.stop(StopContainerRequest { container: key.clone(), timeout_seconds: time }).await.map(|_| key))
                .await)
        }
        ContainerCommand::Restart { containers, time } => Ok(each(containers, async |key| {
            client.stop(StopContainerRequest { container: key.clone(), timeout_seconds: time }).await?;
            client.start(ContainerRef { container: key.clone() }).await.map(|_| key)
        })
        .await),
        ContainerCommand::Kill { containers, signal } => {
            let number = parse_signal(&signal)?;
            Ok(each(containers, async |key| {
                client.kill(KillContainerRequest { container: key.clone(), signal: number, all: false }).await.map(|_| key)
            })
            .await)
        }
        ContainerCommand::Rm { containers, force } => {
            Ok(each(containers, async |key| client.remove(RemoveContainerRequest { container: key.clone(), force }).await.map(|_| key)).await)
        }
        ContainerCommand::Wait { containers } => {
            for key in containers {
                println!("{}", client.wait(WaitRequest { container: key, removed: false }).await.map_err(status)?.into_inner().exit_code);
            }
            Ok(0)
        }
        ContainerCommand::Port { container } => {
            for p in client.inspect(ContainerRef { container }).await.map_err(status)?.into_inner().ports {
                println!("{}", port_line(&p));
            }
            Ok(0)
        }
        ContainerCommand::Top { container, ps_args } => {
            let top = client.top(TopRequest { container, ps_args }).await.map_err(status)?.into_inner();
            // Columns as wide as their widest field, the last (a command) as it is.
            let rows: Vec<Vec<String>> = std::iter::once(top.titles).chain(top.rows.into_iter().map(|r| r.fields)).collect();
            let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
            let widths: Vec<usize> =
                (0..columns).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|f| f.chars().count()).max().unwrap_or(0)).collect();
            for row in rows {
                let line: Vec<String> =
                    row.iter().enumerate().map(|(i, f)| if i + 1 < columns { format!("{f:<w$}", w = widths[i]) } else { f.clone() }).collect();
                println!("{}", line.join("  ").trim_end());
            }
            Ok(0)
        }
        ContainerCommand::Stats { containers, format, no_stream } => {
            let named = !containers.is_empty();
            let names = match named {
                true => containers,
                false => client
                    .list(ListContainersRequest { all: false })
                    .await
                    .map_err(status)?
                    .into_inner()
                    .containers
                    .into_iter()
                    .map(|c| c.name)
                    .collect(),
            };
            // CPU % is the CPU time between two samples over the time between them (100% is a
            // whole core, as docker counts): a table without a stream samples twice, half a
            // second apart.
            let mut previous: std::collections::HashMap<String, (u64, std::time::Instant)> = Default::default();
            let clear = !no_stream && format == Format::Table && std::io::IsTerminal::is_terminal(&std::io::stdout());
            for round in 0.. {
                let mut rows = Vec::new();
                for key in &names {
                    let sample = match client.stats(ContainerRef { container: key.clone() }).await {
                        Ok(sample) => sample.into_inner(),
                        // Gone or stopped meanwhile: a stream of all goes on without it.
                        Err(_) if !named && round > 0 => continue,
                        Err(e) => return Err(status(e)),
                    };
                    let stats: serde_json::Value = serde_json::from_str(&sample.stats_json)?;
                    let (cpu, now) = (stats["cpu"]["usage"]["total"].as_u64().unwrap_or(0), std::time::Instant::now());
                    let percent = previous
                        .get(key)
                        .map(|(before, then)| cpu.saturating_sub(*before) as f64 * 100.0 / now.duration_since(*then).as_nanos().max(1) as f64);
                    previous.insert(key.clone(), (cpu, now));
                    rows.push((key, stats, percent));
                }
                if round == 0 && no_stream && format == Format::Table {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                if clear {
                    print!("\x1b[2J\x1b[H");
                }
                if format == Format::Table {
                    println!("{:<20}  {:>8}  {:>24}  {:>6}  PIDS", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %");
                }
                for (key, stats, percent) in rows {
                    match format {
                        Format::Json => println!("{}", serde_json::json!({"container": key, "cpu_percent": percent, "stats": stats})),
                        Format::Table => println!("{}", stats_row(key, &stats, percent)),
                    }
                }
                std::io::stdout().flush()?;
                if no_stream {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Ok(0)
        }
        ContainerCommand::Events { filter, format } => {
            let mut events = client.events(EventsRequest {}).await.map_err(status)?.into_inner();
            while let Some(event) = events.message().await.map_err(status)? {
                if !event_matches(&event, &filter) {
                    continue;
                }
                match format {
                    Format::Json => println!(
                        "{}",
                        serde_json::json!({"type": "container", "action": event.action, "id": event.id, "name": event.name, "exit_code": event.exit_code, "time_nano": event.at})
                    ),
                    Format::Table => {
                        let exit = if event.action == "die" { format!(" exit_code={}", event.exit_code) } else { String::new() };
                        println!("{} container {} {} (name={}{exit})", event.at, event.action, event.id, event.name);
                    }
                }
                std::io::stdout().flush()?;
            }
            Ok(0)
        }
    }
}

/// `KEY=VALUE` of `events --filter`, its key checked (a usage error otherwise).
fn event_filter(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("filter {text:?}: KEY=VALUE"))?;
    let key = key.trim().to_ascii_lowercase();
    if !["container", "event", "type"].contains(&key.as_str()) {
        return Err(format!("filter {text:?}: the keys are container, event, type"));
    }
    Ok((key, value.to_string()))
}

/// Whether an event passes the filters: any value of one key, and every key.
fn event_matches(event: &berth_api::v1::ContainerEvent, filters: &[(String, String)]) -> bool {
    let one = |key: &str, value: &str| match key {
        "container" => event.name == value || (!value.is_empty() && event.id.starts_with(value)),
        // health_status: healthy matches "health_status" too, as docker's.
        "event" => event.action == value || event.action.split(':').next() == Some(value),
        "type" => value == "container",
        _ => false,
    };
    ["container", "event", "type"].iter().all(|key| {
        let mut values = filters.iter().filter(|(k, _)| k == key).peekable();
        values.peek().is_none() || values.any(|(_, v)| one(key, v))
    })
}

/// A container as docker's `ps` templates see it (`{{.Names}}`, `{{.Status}}` …).
fn ps_fields(c: &Container) -> serde_json::Value {
    use crate::format::{human_duration, seconds_since};
    let status = match (c.state.as_str(), c.health.as_str()) {
        ("exited", _) => format!("Exited ({}) {} ago", c.exit_code, human_duration(seconds_since(c.finished_at))),
        ("running", "") => format!("Up {}", human_duration(seconds_since(c.started_at))),
        ("running", health) => format!("Up {} ({health})", human_duration(seconds_since(c.started_at))),
        (other, _) => other.get(..1).map(|first| format!("{}{}", first.to_uppercase(), &other[1..])).unwrap_or_default(),
    };
    let command: String = c.command.join(" ");
    let command =
        if command.chars().count() > 20 { format!("\"{}…\"", command.chars().take(19).collect::<String>()) } else { format!("\"{command}\"") };
    let mut labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    serde_json::json!({
        "ID": &c.id[..12.min(c.id.len())],
        "Names": c.name,
        "Image": c.image,
        "Command": command,
        "CreatedAt": crate::format::rfc3339(c.created_at),
        "RunningFor": format!("{} ago", human_duration(seconds_since(c.created_at))),
        "Status": status,
        "State": c.state,
        "Ports": c.ports.iter().map(|p| { let l = port_line(p); let (inside, outside) = l.split_once(" -> ").unwrap_or((&l, "")); format!("{outside}->{inside}") }).collect::<Vec<_>>().join(", "),
        "Labels": labels.join(","),
        "Networks": c.network,
    })
}

/// The keys `ps --filter` takes.
const PS_FILTERS: [&str; 8] = ["id", "name", "label", "status", "ancestor", "exited", "health", "network"];

/// `KEY=VALUE` of `ps --filter`, its key checked (a usage error otherwise).
fn ps_filter(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("filter {text:?}: KEY=VALUE"))?;
    let key = key.trim().to_ascii_lowercase();
    if !PS_FILTERS.contains(&key.as_str()) {
        return Err(format!("filter {text:?}: the keys are {}", PS_FILTERS.join(", ")));
    }
    Ok((key, value.to_string()))
}

/// Whether a container passes the filters: any value of one key, and every key.
fn ps_matches(c: &Container, filters: &[(String, String)]) -> bool {
    let one = |key: &str, value: &str| match key {
        "id" => c.id.starts_with(value),
        "name" => c.name.contains(value),
        "label" => match value.split_once('=') {
            Some((k, v)) => c.labels.get(k).is_some_and(|l| l == v),
            None => c.labels.contains_key(value),
        },
        "status" => c.state == value,
        // The image by name, with or without its tag (latest implied), or its manifest digest.
        "ancestor" => {
            let tagged =
                |name: &str| if name.rsplit('/').next().is_some_and(|last| last.contains(':')) { name.to_string() } else { format!("{name}:latest") };
            c.image == value
                || tagged(&c.image) == tagged(value)
                || c.image.ends_with(&format!("/{}", tagged(value)))
                || (value.len() >= 12 && c.image_manifest.trim_start_matches("sha256:").starts_with(value.trim_start_matches("sha256:")))
        }
        "exited" => c.exited && value.parse() == Ok(c.exit_code),
        "health" => c.health == value || (value == "none" && c.health.is_empty()),
        "network" => c.network == value,
        _ => false,
    };
    PS_FILTERS.iter().all(|key| {
        let mut values = filters.iter().filter(|(k, _)| k == key).peekable();
        values.peek().is_none() || values.any(|(_, v)| one(key, v))
    })
}

/// One row of `berth stats` from runc's stats JSON: CPU % (when two samples gave it), memory
/// (usage / limit, and its share of the limit), pids.
fn stats_row(name: &str, stats: &serde_json::Value, cpu_percent: Option<f64>) -> String {
    let mib = |b: u64| format!("{:.1}MiB", b as f64 / 1048576.0);
    let usage = stats["memory"]["usage"]["usage"].as_u64();
    let limit = stats["memory"]["usage"]["limit"].as_u64().filter(|l| *l < (1 << 60));
    let memory = format!("{} / {}", usage.map(mib).unwrap_or_else(|| "-".into()), limit.map(mib).unwrap_or_else(|| "unlimited".into()));
    let share = usage.zip(limit).map(|(u, l)| format!("{:.2}%", u as f64 * 100.0 / l.max(1) as f64)).unwrap_or_else(|| "-".into());
    let cpu = cpu_percent.map(|p| format!("{p:.2}%")).unwrap_or_else(|| "-".into());
    format!("{name:<20}  {cpu:>8}  {memory:>24}  {share:>6}  {}", stats["pids"]["current"])
}

/// A signal by name (`TERM`, `SIGTERM`) or number.
fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return Ok(number);
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>().map(|s| s as i32).map_err(|_| anyhow::anyhow!("unknown signal {text}"))
}

/// `run` failed before the container's process ran: its exit status says why, as docker's and
/// podman's do, so scripts tell it from the process's own status — 125 berth or berthd failed,
/// 126 the command cannot be run, 127 it was not found.
#[derive(Debug)]
pub struct RunFailed {
    code: i32,
    error: anyhow::Error,
}

impl RunFailed {
    fn wrap(error: anyhow::Error) -> anyhow::Error {
        let text = format!("{error:#}");
        let code = if text.contains("executable file not found") {
            127
        } else if text.to_lowercase().contains("permission denied") && text.contains("exec") {
            126
        } else {
            125
        };
        anyhow::Error::new(RunFailed { code, error })
    }
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for RunFailed {}

/// The exit status of a failed command: a failed `run`'s own (see [`RunFailed`]), else 1.
pub fn exit_code_of(error: &anyhow::Error) -> i32 {
    error.downcast_ref::<RunFailed>().map_or(1, |r| r.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_filters_as_docker_combines_them() {
        let c = Container {
            id: "abcdef0123456789".into(),
            name: "web-1".into(),
            image: "registry.local/test/busybox:v1".into(),
            image_manifest: "sha256:0123456789abcdef".into(),
            state: "exited".into(),
            exited: true,
            exit_code: 3,
            labels: [("tier".to_string(), "front".to_string())].into_iter().collect(),
            ..Default::default()
        };
        let passes = |filters: &[&str]| ps_matches(&c, &filters.iter().map(|f| ps_filter(f).unwrap()).collect::<Vec<_>>());
        assert!(passes(&[]) && passes(&["id=abcdef"]) && passes(&["name=web"]) && passes(&["label=tier"]) && passes(&["label=tier=front"]));
        assert!(passes(&["status=exited", "exited=3"]) && passes(&["health=none"]) && passes(&["ancestor=test/busybox:v1"]));
        assert!(passes(&["ancestor=registry.local/test/busybox:v1"]) && passes(&["ancestor=0123456789ab"]));
        assert!(passes(&["status=running", "status=exited"]), "one key's values: either");
        assert!(!passes(&["status=exited", "name=db"]), "different keys: all");
        assert!(!passes(&["label=tier=back"]) && !passes(&["exited=0"]) && !passes(&["ancestor=busybox"]) && !passes(&["id=bcd"]));
        assert!(ps_filter("colour=red").is_err() && ps_filter("name").is_err());
    }

    #[test]
    fn publish_specs_as_docker_takes_them() {
        let parsed = |spec: &str| port_mapping(spec).map(|p| (p.host_ip, p.host_port, p.container_port, p.protocol)).ok();
        assert_eq!(parsed("80"), Some(("".into(), 0, 80, "tcp".into())));
        assert_eq!(parsed("8080:80/udp"), Some(("".into(), 8080, 80, "udp".into())));
        assert_eq!(parsed("127.0.0.1:8080:80"), Some(("127.0.0.1".into(), 8080, 80, "tcp".into())));
        assert_eq!(parsed("[::1]:8080:80"), Some(("::1".into(), 8080, 80, "tcp".into())));
        assert_eq!(parsed("[fd00::1]::80"), Some(("fd00::1".into(), 0, 80, "tcp".into())), "a host port berthd picks");
        for bad in ["[::1]:80", "[::1:8080:80", "::1:8080:80", "0:80", "a:b:c:d"] {
            assert_eq!(parsed(bad), None, "{bad}");
        }
        let line = |host_ip: &str| port_line(&PortMapping { host_ip: host_ip.into(), host_port: 8080, container_port: 80, protocol: "tcp".into() });
        assert_eq!((line(""), line("::1")), ("80/tcp -> 0.0.0.0:8080".to_string(), "80/tcp -> [::1]:8080".to_string()));
    }
}
