//! The spec of a `berth run` container: the template, then the image's config, then the user's
//! options, in that order of precedence — as `docker run` composes them — mapped onto
//! [`crate::spec_opts`]; its /etc/hosts, /etc/hostname and /etc/resolv.conf written into the
//! bundle and bound read-only.

use crate::blueprint::{Blueprint, SpecContext, SpecMaker};
use crate::image_config::RunConfig;
use crate::options::{CreateOptions, Network};
use crate::passwd::{self, ResolvedUser};
use crate::record::short;
use crate::spec_opts::{self, SpecOpt};
use crate::volumes::VolumeUse;
use crate::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub options: &'a CreateOptions,
    pub image: &'a RunConfig,
    pub user: &'a ResolvedUser,
    pub hostname: &'a str,
    /// Files berthd wrote for the container (hosts, hostname, resolv.conf), bound read-only.
    pub etc_files: &'a [(String, std::path::PathBuf)],
    /// The pinned network namespace it joins (a bridge network's).
    pub netns: Option<PathBuf>,
    /// Its named and anonymous volumes, ready to bind.
    pub volumes: &'a [(VolumeUse, PathBuf)],
}

/// What create makes of `berth run`'s flags.
pub fn blueprint(options: CreateOptions) -> Blueprint {
    Blueprint {
        image: options.image.clone(),
        name: options.name.clone(),
        metadata_name: String::new(),
        labels: options.labels.clone(),
        annotations: Default::default(),
        sandbox: options.sandbox.clone(),
        attempt: 0,
        tty: options.tty,
        stdin: options.stdin,
        stdin_once: false,
        runtime: options.runtime.clone(),
        auto_remove: options.auto_remove,
        restart: options.restart,
        log_path: None,
        network: match &options.network {
            Network::Bridge(name) => {
                Some(crate::container_network::ContainerNetwork { name: name.clone(), ips: Vec::new(), ports: options.publish.clone() })
            }
            _ => None,
        },
        network_of: match &options.network {
            Network::Container(name) => Some(name.clone()),
            _ => None,
        },
        spec: Box::new(RunSpec(options)),
    }
}

struct RunSpec(CreateOptions);

/// Where `--init`'s binary is bound, and what runs the command: docker's path for its tini, so
/// what looks for it there finds it.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The widest range of an image's EXPOSE that `-P` publishes port by port (docker expands them
/// too; an image asking for thousands of host ports is refused).
const MAX_EXPOSED_RANGE: i32 = 100;

/// The most ports `-P` publishes for one container, all ranges together.
const MAX_PUBLISHED: usize = 1024;

impl SpecMaker for RunSpec {
    fn command(&self, image: &RunConfig) -> Result<Vec<String>> {
        command(&self.0, image)
    }

    fn healthcheck(&self, image: &RunConfig) -> Result<Option<crate::health::HealthCheck>> {
        crate::health::resolve(image.healthcheck.as_ref(), &self.0.health)
    }

    /// `-P`: each port the image EXPOSEs (`80`, `80/tcp`, `53/udp`) that no `-p` publishes,
    /// as docker does.
    fn published(&self, image: &RunConfig) -> Result<Vec<crate::sandbox::PortMapping>> {
        if !self.0.publish_all {
            return Ok(Vec::new());
        }
        let mut ports = std::collections::BTreeSet::new();
        for exposed in image.exposed_ports.iter().flat_map(|p| p.keys()) {
            let (range, protocol) = exposed.split_once('/').unwrap_or((exposed, "tcp"));
            let protocol = protocol.to_ascii_lowercase();
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).map(i32::from);
            let (Some(first), Some(last), "tcp" | "udp" | "sctp") = (port(first), port(last), protocol.as_str()) else {
                return Err(Error::Invalid(format!("the image exposes {exposed:?}: not PORT[-PORT][/tcp|udp|sctp]")));
            };
            if first > last || last - first >= MAX_EXPOSED_RANGE {
                return Err(Error::Invalid(format!("the image exposes {exposed:?}: a range of 1 to {MAX_EXPOSED_RANGE} ports")));
            }
            for container_port in first..=last {
                let taken = self.0.publish.iter().any(|p| p.container_port == container_port && p.protocol.eq_ignore_ascii_case(&protocol));
                if !taken {
                    ports.insert((protocol.clone(), container_port));
                }
            }
            // A hostile config lists overlapping ranges by the thousand: the set bounds it.
            if ports.len() > MAX_PUBLISHED {
                return Err(Error::Invalid(format!("the image exposes more than {MAX_PUBLISHED} ports for -P")));
            }
        }
        Ok(ports
            .into_iter()
            .map(|(protocol, container_port)| crate::sandbox::PortMapping { protocol, container_port, host_port: 0, host_ip: String::new() })
            .collect())
    }

    /// `-v NAME:/dst` (a source that is not an absolute path names a volume, as in docker), then
    /// an anonymous volume for each of the image's VOLUMEs that no `-v` covers.
    fn volumes(&self, image: &RunConfig) -> Result<Vec<VolumeUse>> {
        let mut uses = Vec::new();
        for volume in self.0.volumes.iter().filter(|v| !v.source.starts_with('/')) {
            // `-v /dst`, `--mount type=volume,dst=/dst`: an anonymous volume (named at create).
            if volume.source.is_empty() {
                uses.push(VolumeUse { name: String::new(), target: volume.target.clone(), read_only: volume.read_only, anonymous: true });
                continue;
            }
            if !crate::volumes::valid_name(&volume.source) {
                return Err(Error::Invalid(format!(
                    "volume {:?}: a name is [a-zA-Z0-9][a-zA-Z0-9_.-]*; a host directory needs an absolute path",
                    volume.source
                )));
            }
            uses.push(VolumeUse { name: volume.source.clone(), target: volume.target.clone(), read_only: volume.read_only, anonymous: false });
        }
        let covered = |path: &str| self.0.volumes.iter().any(|v| Path::new(&v.target) == Path::new(path));
        for path in image.volumes.iter().flat_map(|v| v.keys()).filter(|p| !covered(p)) {
            uses.push(VolumeUse { name: String::new(), target: path.clone(), read_only: false, anonymous: true });
        }
        Ok(uses)
    }

    fn spec(self: Box<Self>, context: &SpecContext) -> Result<Spec> {
        let options = &self.0;
        let user_spec = options.user.clone().or_else(|| context.image.user.clone()).unwrap_or_default();
        let user = passwd::resolve(context.rootfs, &user_spec)?;
        let (hostname, etc_files) = match context.network_of {
            Some(theirs) => shared_etc_files(theirs, context.id)?,
            None => {
                let hostname = options.hostname.clone().unwrap_or_else(|| short(context.id).to_string());
                let own_ips = context.network.map(|n| n.ips.as_slice()).unwrap_or_default();
                let files = write_etc_files(context.bundle, &hostname, options, own_ips)?;
                (hostname, files)
            }
        };
        let pinned = context.network.is_some() || context.network_of.is_some();
        let netns = pinned.then(|| crate::pod_namespaces::pin_path(context.bundle, crate::pod_namespaces::PodNamespace::Net));
        build(&SpecInputs {
            id: context.id,
            options,
            image: context.image,
            user: &user,
            hostname: &hostname,
            etc_files: &etc_files,
            netns,
            volumes: context.volumes,
        })
    }
}

/// The process's argv: entrypoint + command, with the user's overrides.
pub fn command(options: &CreateOptions, image: &RunConfig) -> Result<Vec<String>> {
    let (entrypoint, cmd) = match &options.entrypoint {
        Some(entrypoint) => (entrypoint.clone(), options.args.clone()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            if options.args.is_empty() { image.cmd.clone().unwrap_or_default() } else { options.args.clone() },
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(Error::Invalid("no command: the image has no Entrypoint or Cmd, give one".into()));
    }
    Ok(argv)
}

pub fn build(inputs: &SpecInputs) -> Result<Spec> {
    let SpecInputs { id, options, image, user, hostname, etc_files, netns, volumes } = inputs;
    let cwd = options.workdir.clone().or_else(|| image.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    let argv = match &options.init {
        Some(_) => [INIT_PATH.to_string(), "--".into()].into_iter().chain(command(options, image)?).collect(),
        None => command(options, image)?,
    };
    let mut opts: Vec<SpecOpt> = vec![
        spec_opts::with_args(argv),
        spec_opts::with_env(spec_opts::environment(image.env.as_deref().unwrap_or_default(), &options.env, hostname, &user.home, options.tty)?),
        spec_opts::with_cwd(cwd),
        spec_opts::with_user(user),
        spec_opts::with_hostname(hostname.to_string()),
        spec_opts::with_root("rootfs", options.read_only),
        spec_opts::with_cgroups_path(PathBuf::from(format!("/berth/{id}"))),
        spec_opts::with_capabilities(spec_opts::capability_set(options.privileged, &options.cap_add, &options.cap_drop)?),
        spec_opts::with_limits(options.memory, options.cpus, options.pids_limit),
        // Not berthd's own score (its unit makes it -999, so the kernel spares it): a runaway
        // container is what the OOM killer should take, as docker's get 0.
        spec_opts::with_oom_score_adj(0),
    ];
    if options.tty {
        opts.push(spec_opts::with_terminal(options.console_size));
    }
    for (host, container, permissions) in &options.devices {
        opts.push(spec_opts::with_device(host.clone(), container.clone(), permissions.clone()));
    }
    for (name, soft, hard) in &options.ulimits {
        opts.push(spec_opts::with_rlimit(name.clone(), *soft, *hard));
    }
    // Processes keep no privilege they did not start with (setuid binaries excepted only when privileged).
    opts.push(if options.privileged { spec_opts::with_privileged() } else { spec_opts::with_no_new_privileges(true) });
    for (target, tmpfs_options) in &options.tmpfs {
        opts.push(spec_opts::with_tmpfs(target.clone(), tmpfs_options.clone()));
    }
    if let Some(init) = &options.init {
        opts.push(spec_opts::with_bind(init.clone(), INIT_PATH.into(), ["bind", "ro", "nosuid", "nodev"].map(String::from).to_vec()));
    }
    for (target, source) in etc_files.iter() {
        opts.push(spec_opts::with_bind(source.clone(), target.clone(), ["rbind", "ro", "nosuid", "nodev", "noexec"].map(String::from).to_vec()));
    }
    // Host directories as they are; named and anonymous volumes from their directories.
    let binds = options.volumes.iter().filter(|v| v.source.starts_with('/')).map(|v| (PathBuf::from(&v.source), &v.target, v.read_only));
    for (source, target, read_only) in binds.chain(volumes.iter().map(|(v, dir)| (dir.clone(), &v.target, v.read_only))) {
        let mode = if read_only { "ro" } else { "rw" };
        opts.push(spec_opts::with_bind(source, target.clone(), ["rbind", "rprivate", mode].map(String::from).to_vec()));
    }
    if options.network == Network::Host {
        opts.push(spec_opts::with_namespace(LinuxNamespaceType::Network, None, true));
    } else if let Some(netns) = netns {
        opts.push(spec_opts::with_namespace(LinuxNamespaceType::Network, Some(netns.clone()), false));
    }
    opts.push(spec_opts::with_annotations(options.labels.iter().map(|(k, v)| (format!("berth.label.{k}"), v.clone())).collect()));
    spec_opts::build(opts)
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for the container, bound read-only: with the
/// host's network, the host's files; with none, loopback only; on a bridge, its own address by its
/// name (berthd adds its neighbours', [`crate::container_network`]) and the host's name servers
/// but those on the host's loopback, which the container cannot reach.
fn write_etc_files(bundle: &Path, hostname: &str, options: &CreateOptions, own_ips: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let network = &options.network;
    let loopback = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let host_resolv = || std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (hosts, resolv) = match network {
        Network::Host => (std::fs::read_to_string("/etc/hosts").unwrap_or_default(), host_resolv()),
        // On another container's network the files are that one's ([`shared_etc_files`]).
        Network::None | Network::Container(_) => (loopback, String::new()),
        Network::Bridge(_) => (
            loopback,
            host_resolv()
                .lines()
                .filter(|l| {
                    !l.split_whitespace()
                        .nth(1)
                        .is_some_and(|server| l.trim_start().starts_with("nameserver") && (server.starts_with("127.") || server == "::1"))
                })
                .map(|l| format!("{l}\n"))
                .collect(),
        ),
    };
    let extra: String = options.extra_hosts.iter().map(|(name, ip)| format!("{ip}\t{name}\n")).collect();
    let own: String = match own_ips {
        [] => format!("127.0.1.1\t{hostname}\n"),
        ips => ips.iter().map(|ip| format!("{ip}\t{hostname}\n")).collect(),
    };
    let hosts = format!("{hosts}{extra}{own}");
    let resolv = with_dns(&resolv, &options.dns);
    let mut files = Vec::new();
    for (name, text) in [("hosts", hosts), ("hostname", format!("{hostname}\n")), ("resolv.conf", resolv)] {
        let path = bundle.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
        files.push((format!("/etc/{name}"), path));
    }
    Ok(files)
}

/// On another container's network (`container:NAME`), its hostname and its /etc files, bound
/// from its bundle as docker shares them: names berthd adds to its hosts file reach both. Files
/// it lacks (a pod's container keeps them in its pod's directory) are left as the image has them.
fn shared_etc_files(theirs: &Path, id: &str) -> Result<(String, Vec<(String, PathBuf)>)> {
    use std::io::Read;
    let mut hostname = String::new();
    if let Ok(file) = std::fs::File::open(theirs.join("hostname")) {
        // berthd's own file, bounded all the same: a hostname is at most 64 bytes.
        let _ = file.take(256).read_to_string(&mut hostname);
    }
    let hostname = match hostname.trim() {
        "" => short(id).to_string(),
        name => name.to_string(),
    };
    let files = ["hosts", "hostname", "resolv.conf"]
        .into_iter()
        .map(|name| (format!("/etc/{name}"), theirs.join(name)))
        .filter(|(_, path)| path.is_file())
        .collect();
    Ok((hostname, files))
}

/// `resolv` with the kinds of line `dns` gives replaced by its (name servers, search domains,
/// options), as docker's `--dns*` do; the others kept.
fn with_dns(resolv: &str, dns: &crate::sandbox::DnsConfig) -> String {
    let replaced = |line: &str| match line.split_whitespace().next() {
        Some("nameserver") => !dns.servers.is_empty(),
        Some("search" | "domain") => !dns.searches.is_empty(),
        Some("options") => !dns.options.is_empty(),
        _ => false,
    };
    let mut text: String = resolv.lines().filter(|l| !replaced(l)).map(|l| format!("{l}\n")).collect();
    text.extend(dns.servers.iter().map(|s| format!("nameserver {s}\n")));
    if !dns.searches.is_empty() {
        text += &format!("search {}\n", dns.searches.join(" "));
    }
    if !dns.options.is_empty() {
        text += &format!("options {}\n", dns.options.join(" "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Volume;

    #[test]
    fn dns_flags_replace_their_kind_of_line_only() {
        let host = "# generated\nnameserver 10.0.0.1\nsearch corp.example\noptions ndots:2\n";
        let dns = crate::sandbox::DnsConfig { servers: vec!["192.0.2.53".into()], searches: vec![], options: vec!["ndots:5".into(), "edns0".into()] };
        assert_eq!(with_dns(host, &dns), "# generated\nsearch corp.example\nnameserver 192.0.2.53\noptions ndots:5 edns0\n");
        assert_eq!(with_dns(host, &Default::default()), host);
    }

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            env: Some(vec!["PATH=/opt/bin".into(), "A=1".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn command_precedence() {
        let mut options = CreateOptions::default();
        assert_eq!(command(&options, &image()).unwrap(), ["/entry", "serve"]);
        options.args = vec!["other".into()];
        assert_eq!(command(&options, &image()).unwrap(), ["/entry", "other"]);
        options.entrypoint = Some(vec!["/bin/sh".into()]);
        options.args.clear();
        assert_eq!(command(&options, &image()).unwrap(), ["/bin/sh"]);
        assert!(command(&CreateOptions::default(), &RunConfig::default()).is_err());
    }

    #[test]
    fn options_shape_the_spec() {
        let options = CreateOptions {
            cap_drop: vec!["all".into()],
            cap_add: vec!["net_admin".into()],
            network: Network::Host,
            memory: Some(64 << 20),
            read_only: true,
            volumes: vec![Volume { source: "/tmp".into(), target: "/data".into(), read_only: true }],
            ..Default::default()
        };
        let user = ResolvedUser { uid: 33, gid: 33, additional_gids: vec![4], home: "/var/www".into() };
        let image = image();
        let inputs =
            |options| SpecInputs { id: "abc", options, image: &image, user: &user, hostname: "h", etc_files: &[], netns: None, volumes: &[] };
        let spec = build(&inputs(&options)).unwrap();
        let process = spec.process().as_ref().unwrap();
        let bounding = process.capabilities().as_ref().unwrap().bounding().clone().unwrap();
        assert_eq!(serde_json::to_value(&bounding).unwrap(), serde_json::json!(["CAP_NET_ADMIN"]));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.namespaces().as_ref().unwrap().iter().all(|ns| ns.typ() != LinuxNamespaceType::Network));
        assert_eq!(linux.resources().as_ref().unwrap().memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!((process.user().uid(), process.user().gid(), process.user().additional_gids().clone()), (33, 33, Some(vec![4])));
        let data = spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == &PathBuf::from("/data")).expect("the volume");
        assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(linux.seccomp().is_some() && process.no_new_privileges() == Some(true));
        assert_eq!(linux.cgroups_path().as_deref(), Some(std::path::Path::new("/berth/abc")));

        let missing =
            CreateOptions { volumes: vec![Volume { source: "/nonexistent/x".into(), target: "/x".into(), read_only: false }], ..Default::default() };
        assert!(build(&inputs(&missing)).unwrap_err().to_string().contains("volume source /nonexistent/x does not exist"));
        let relative =
            CreateOptions { volumes: vec![Volume { source: "/tmp".into(), target: "data".into(), read_only: false }], ..Default::default() };
        assert!(build(&inputs(&relative)).unwrap_err().to_string().contains("absolute"));
        let bad_cap = CreateOptions { cap_add: vec!["CAP_NOPE".into()], ..Default::default() };
        assert!(build(&inputs(&bad_cap)).is_err());
        let privileged = build(&inputs(&CreateOptions { privileged: true, ..Default::default() })).unwrap();
        let linux = privileged.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none() && linux.masked_paths().as_ref().is_some_and(|m| m.is_empty()));
        assert_eq!(privileged.process().as_ref().unwrap().no_new_privileges(), Some(false));
    }
}
