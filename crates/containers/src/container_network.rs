//! A `berth run` container on a bridge network ([`crate::networks`]): at create its network
//! namespace is made and pinned in its bundle (`<bundle>/ns/net`), CNI gives it `eth0` with an
//! address and its published ports (portmap), and only then is its spec written (the runtime
//! joins the pinned namespace); at remove, DEL (from the CNI cache: also an ADD berthd died in)
//! and the pin go before the bundle does. A container on another's network (`container:NAME`)
//! pins that one's namespace in its own bundle instead, and shares its /etc files.
//!
//! Names: berthd owns each such container's /etc/hosts (bound read-only into it): its own lines,
//! then a section listing every container on the same network, rewritten in place (the bind
//! holds the inode) whenever one joins or leaves, so containers find each other by name both
//! ways, including ones started later. No DNS server: what docker's embedded resolver gives for
//! names, without its process.
//!
//! Published ports are berth's to keep apart: one `hostIP:hostPort/protocol` is published once
//! (checked under the table's lock, with the other containers' records), and a port some other
//! program holds on the host is refused at create with its address.

use crate::manager::{blocking, make_dir, Containers};
use crate::networks::{NetworkInfo, Networks};
use crate::pod_namespaces::{self, PodNamespace};
use crate::record::{short, ContainerRecord};
use crate::sandbox::PortMapping;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A container's place on a network: asked for at create (name, ports), its addresses once
/// attached. Kept in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerNetwork {
    pub name: String,
    pub ips: Vec<String>,
    /// Published ports; a host port of 0 is chosen at create.
    pub ports: Vec<PortMapping>,
}

/// The interface inside the container.
const IFNAME: &str = "eth0";
/// The most berthd's start waits for CNI garbage collection.
const GC_BOUND: std::time::Duration = std::time::Duration::from_secs(60);
/// The marker above the network's section of a container's /etc/hosts.
const HOSTS_MARKER: &str = "# berth: containers on network ";
/// Bound on a hosts file berthd reads back (its own, though a privileged container could write it).
const HOSTS_MAX: u64 = 1 << 20;

/// The network's configs and the plugins that attach to them (set by berthd).
pub struct NetworkService {
    pub networks: Networks,
    pub cni: berth_cni::Cni,
}

impl Containers {
    /// Gives `berth run` its bridge networks from now on (once, at start-up).
    pub fn set_networks(&self, service: NetworkService) {
        if self.networks.set(std::sync::Arc::new(service)).is_err() {
            tracing::warn!("the networks were set already; keeping the first");
        }
    }

    fn network_service(&self) -> Result<&NetworkService> {
        self.networks.get().map(|s| s.as_ref()).ok_or_else(|| Error::Invalid("bridge networks are not configured in this berthd".into()))
    }

    /// A network's name made canonical (the default made on first use), its ports checked and
    /// host ports of 0 chosen: what create records before anything exists.
    pub(crate) fn plan_network(&self, request: &ContainerNetwork) -> Result<ContainerNetwork> {
        let (info, _) = self.network_service()?.networks.resolve(&request.name)?;
        // Published by other containers: portmap's rules hold no socket, so the kernel would
        // call such a port free.
        let published: Vec<(i32, String)> =
            self.table().records().filter_map(|r| r.network).flat_map(|n| n.ports).map(|p| (p.host_port, p.protocol)).collect();
        let mut ports = Vec::with_capacity(request.ports.len());
        for port in &request.ports {
            let mut port = port.clone();
            port.protocol = port.protocol.to_ascii_lowercase();
            if port.protocol.is_empty() {
                port.protocol = "tcp".into();
            }
            if !["tcp", "udp", "sctp"].contains(&port.protocol.as_str()) {
                return Err(Error::Invalid(format!("port protocol {:?}: use tcp, udp or sctp", port.protocol)));
            }
            if !(1..=65535).contains(&port.container_port) || !(0..=65535).contains(&port.host_port) {
                return Err(Error::Invalid(format!("port {}:{}: ports are 1 to 65535", port.host_port, port.container_port)));
            }
            match port.host_ip.parse::<std::net::IpAddr>() {
                _ if port.host_ip.is_empty() => {}
                Ok(std::net::IpAddr::V6(_)) if info.subnet6.is_empty() => {
                    return Err(Error::Invalid(format!("host IP {}: network {} has no IPv6 (network create --ipv6)", port.host_ip, info.name)));
                }
                Ok(ip) => port.host_ip = ip.to_string(),
                Err(_) => return Err(Error::Invalid(format!("host IP {:?}: an IP address", port.host_ip))),
            }
            if port.host_port == 0 {
                // Each chosen port is free alone; not one another container publishes, nor two of
                // this container's own.
                let taken = |p: &PortMapping| {
                    ports.iter().any(|other: &PortMapping| other.host_port == p.host_port && other.protocol == p.protocol)
                        || published.iter().any(|(port, protocol)| *port == p.host_port && *protocol == p.protocol)
                };
                port.host_port = free_port(&port)?;
                for _ in 0..16 {
                    if !taken(&port) {
                        break;
                    }
                    port.host_port = free_port(&port)?;
                }
                if taken(&port) {
                    return Err(Error::Invalid(format!("no free host port for {}/{}", port.container_port, port.protocol)));
                }
            } else {
                probe_port(&port)?;
            }
            ports.push(port);
        }
        Ok(ContainerNetwork { name: info.name, ips: Vec::new(), ports })
    }

    /// Pins the container's network namespace in its bundle and attaches it: its addresses.
    pub(crate) async fn join_network(&self, record: &ContainerRecord) -> Result<Vec<String>> {
        let Some(request) = &record.network else { return Ok(Vec::new()) };
        let service = self.network_service()?;
        let (_, list) = service.networks.resolve(&request.name)?;
        let bundle = self.bundle_dir(&record.id);
        let dir = bundle.clone();
        blocking(move || {
            make_dir(&dir)?;
            pod_namespaces::pin(&dir, &[PodNamespace::Net], "", None)
        })
        .await?;
        let mappings: Vec<serde_json::Value> = request
            .ports
            .iter()
            .map(|p| serde_json::json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol, "hostIP": p.host_ip}))
            .collect();
        let attachment = berth_cni::Attachment {
            container_id: record.id.clone(),
            netns: pod_namespaces::pin_path(&bundle, PodNamespace::Net),
            ifname: IFNAME.into(),
            args: Vec::new(),
            capability_args: [("portMappings".to_string(), serde_json::Value::Array(mappings))].into_iter().collect(),
        };
        let output = service.cni.add(&list, &attachment).await.map_err(|e| Error::Network(format!("network {}: {e}", request.name)))?;
        Ok(output.result.sandbox_ips())
    }

    /// Pins the network namespace of the running container `theirs` in `record`'s bundle
    /// (`container:NAME`): it stays the joiner's through restarts of either, as a bridge
    /// network's pin does; unpinned when the joiner is removed.
    pub(crate) async fn share_network(&self, record: &ContainerRecord, theirs: &str) -> Result<()> {
        let theirs = self.find(theirs)?;
        if theirs.state != crate::record::State::Running || theirs.pid <= 0 {
            return Err(Error::WrongState(format!("container {} is {}: its network cannot be joined", theirs.name, theirs.state.as_str())));
        }
        let bundle = self.bundle_dir(&record.id);
        blocking(move || {
            make_dir(&bundle)?;
            pod_namespaces::pin_of_container(&bundle, PodNamespace::Net, theirs.pid, &theirs.id)
        })
        .await
    }

    /// CNI garbage collection at start, after recovery (before berthd serves: nothing is being
    /// created): an attachment the CNI cache holds, on any network (berth's or the node's pod
    /// network: one cache), for a container or pod berthd no longer has (its record went while a
    /// DEL could not finish, or the metadata was reset) is deleted with what ADD cached, a netns
    /// that is gone left out, and its pin goes. Plugins are not sent CNI's GC verb: other
    /// runtimes may share the node's list, and their attachments are not berthd's to judge.
    /// Failures are logged, the next start tries again; the whole is bounded. Returns how many
    /// attachments went.
    pub(crate) async fn collect_network_garbage(&self) -> usize {
        let Ok(service) = self.network_service() else { return 0 };
        let known: std::collections::HashSet<String> =
            self.table().records().map(|r| r.id).chain(self.list_sandboxes().into_iter().map(|s| s.id)).collect();
        let stale: std::collections::BTreeSet<String> =
            service.cni.cache().all().into_iter().map(|e| e.container_id).filter(|id| !known.contains(id)).collect();
        let mut removed = 0;
        let collect = async {
            for id in stale {
                match crate::pod_network::del_cached(&service.cni, &id).await {
                    Ok(()) => {
                        removed += 1;
                        let dir = self.bundle_dir(&id);
                        if let Err(e) = blocking(move || pod_namespaces::unpin(&dir)).await {
                            tracing::warn!(attachment = %id, "CNI GC: unpin: {e}");
                        }
                    }
                    Err(e) => tracing::warn!(attachment = %id, "CNI GC: DEL of an attachment nobody owns: {e}"),
                }
            }
        };
        if tokio::time::timeout(GC_BOUND, collect).await.is_err() {
            tracing::warn!("CNI GC: stopped after {} s; the next start goes on", GC_BOUND.as_secs());
        }
        removed
    }

    /// Undoes [`Self::join_network`] whatever part of it happened (DEL for whatever the CNI
    /// cache holds of the container, then the pin), and takes the container out of its
    /// neighbours' /etc/hosts.
    pub(crate) async fn leave_network(&self, record: &ContainerRecord) -> Result<()> {
        let Some(joined) = &record.network else { return Ok(()) };
        let service = self.network_service()?;
        crate::pod_network::del_cached(&service.cni, &record.id).await?;
        let dir = self.bundle_dir(&record.id);
        blocking(move || pod_namespaces::unpin(&dir)).await?;
        self.refresh_hosts(&joined.name, Some(&record.id)).await;
        Ok(())
    }

    /// Rewrites the network section of the /etc/hosts of every container on `network` (but
    /// `leaving`): one line per container with an address. A file that cannot be written is
    /// logged, not fatal (its container keeps the names it had).
    pub(crate) async fn refresh_hosts(&self, network: &str, leaving: Option<&str>) {
        let members: Vec<ContainerRecord> =
            self.table().records().filter(|r| r.network.as_ref().is_some_and(|n| n.name == network) && Some(r.id.as_str()) != leaving).collect();
        let mut section = format!("{HOSTS_MARKER}{network}\n");
        for member in &members {
            for ip in member.network.iter().flat_map(|n| &n.ips) {
                section += &format!("{ip}\t{} {}\n", member.name, short(&member.id));
            }
        }
        let files: Vec<std::path::PathBuf> = members.iter().map(|m| self.bundle_dir(&m.id).join("hosts")).collect();
        let _ = blocking(move || {
            for file in files {
                if let Err(e) = rewrite_section(&file, &section) {
                    tracing::warn!(file = %file.display(), "names of the network's containers not updated: {e}");
                }
            }
            Ok(())
        })
        .await;
    }

    /// Refuses a published port another container has: called under the table's lock, so two
    /// creates cannot both take one.
    pub(crate) fn check_ports(records: impl Iterator<Item = ContainerRecord>, wanted: &ContainerRecord) -> Result<()> {
        let Some(mine) = &wanted.network else { return Ok(()) };
        for other in records.filter(|r| r.id != wanted.id) {
            let Some(theirs) = &other.network else { continue };
            for a in &mine.ports {
                if let Some(b) = theirs.ports.iter().find(|b| clash(a, b)) {
                    return Err(Error::Conflict(format!(
                        "port {}:{}/{} is already published by container {} ({}:{})",
                        shown_ip(&a.host_ip),
                        a.host_port,
                        a.protocol,
                        other.name,
                        shown_ip(&b.host_ip),
                        b.host_port
                    )));
                }
            }
        }
        Ok(())
    }

    /// berth's networks with the containers on each (by name).
    pub fn list_networks(&self) -> Result<Vec<(NetworkInfo, Vec<String>)>> {
        let networks = self.network_service()?.networks.list()?;
        Ok(networks
            .into_iter()
            .map(|n| {
                let members = self.network_members(&n.name);
                (n, members)
            })
            .collect())
    }

    pub fn inspect_network(&self, name: &str) -> Result<(NetworkInfo, Vec<String>)> {
        let name = crate::networks::canonical(name);
        let info = self.network_service()?.networks.info(name)?;
        Ok((info, self.network_members(name)))
    }

    pub async fn create_network(&self, name: &str, request: crate::networks::NetworkRequest) -> Result<NetworkInfo> {
        let (this, name) = (self.clone(), name.to_string());
        blocking(move || this.network_service()?.networks.create(&name, &request)).await
    }

    /// Removes a network no container is on (its bridge too).
    pub async fn remove_network(&self, name: &str) -> Result<NetworkInfo> {
        let (info, members) = self.inspect_network(name)?;
        if !members.is_empty() {
            return Err(Error::WrongState(format!("network {} has containers: {} (remove them first)", info.name, members.join(", "))));
        }
        let this = self.clone();
        blocking(move || this.network_service()?.networks.remove(&info.name)).await
    }

    fn network_members(&self, network: &str) -> Vec<String> {
        let mut names: Vec<String> =
            self.table().records().filter(|r| r.network.as_ref().is_some_and(|n| n.name == network)).map(|r| r.name).collect();
        names.sort();
        names
    }
}

fn shown_ip(ip: &str) -> &str {
    if ip.is_empty() {
        "0.0.0.0"
    } else {
        ip
    }
}

/// The same port and protocol on host addresses that meet (equal, or either is every address).
fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    a.host_port == b.host_port && a.protocol == b.protocol && (a.host_ip == b.host_ip || any(&a.host_ip) || any(&b.host_ip))
}

fn bind_address(port: &PortMapping, number: u16) -> std::net::SocketAddr {
    let ip: std::net::IpAddr = port.host_ip.parse().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    std::net::SocketAddr::from((ip, number))
}

/// Refuses a host port some program already holds (portmap would publish it anyway, and
/// whichever came first would silently win).
fn probe_port(port: &PortMapping) -> Result<()> {
    let address = bind_address(port, port.host_port as u16);
    let taken = match port.protocol.as_str() {
        "udp" => std::net::UdpSocket::bind(address).err(),
        "tcp" => std::net::TcpListener::bind(address).err(),
        _ => None,
    };
    match taken {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(Error::Conflict(format!("port {}/{} is in use on the host", address, port.protocol)))
        }
        Some(e) => Err(Error::Invalid(format!("host address {address}: {e}"))),
        None => Ok(()),
    }
}

/// A port the kernel says is free now, for `-p CONTAINER_PORT` alone.
fn free_port(port: &PortMapping) -> Result<i32> {
    let address = bind_address(port, 0);
    let chosen = match port.protocol.as_str() {
        "udp" => std::net::UdpSocket::bind(address).and_then(|s| s.local_addr()),
        _ => std::net::TcpListener::bind(address).and_then(|s| s.local_addr()),
    };
    chosen.map(|a| i32::from(a.port())).map_err(|e| Error::Invalid(format!("choose a host port on {address}: {e}")))
}

/// Replaces what follows the marker in `file` with `section`, in place.
fn rewrite_section(file: &Path, section: &str) -> std::io::Result<()> {
    let mut handle = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(file)?;
    if !handle.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    (&mut handle).take(HOSTS_MAX).read_to_string(&mut text)?;
    let head = match text.find(HOSTS_MARKER) {
        Some(at) => &text[..at],
        None => text.as_str(),
    };
    let content = format!("{head}{section}");
    handle.set_len(0)?;
    std::os::unix::fs::FileExt::write_all_at(&handle, content.as_bytes(), 0)?;
    handle.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: &str, host: i32, protocol: &str) -> PortMapping {
        PortMapping { protocol: protocol.into(), container_port: 80, host_port: host, host_ip: ip.into() }
    }

    #[test]
    fn clashes() {
        assert!(clash(&port("127.0.0.1", 8080, "tcp"), &port("127.0.0.1", 8080, "tcp")));
        assert!(clash(&port("", 8080, "tcp"), &port("127.0.0.1", 8080, "tcp")));
        assert!(clash(&port("127.0.0.1", 8080, "tcp"), &port("0.0.0.0", 8080, "tcp")));
        assert!(!clash(&port("127.0.0.1", 8080, "tcp"), &port("127.0.0.2", 8080, "tcp")));
        assert!(!clash(&port("127.0.0.1", 8080, "tcp"), &port("127.0.0.1", 8080, "udp")));
        assert!(!clash(&port("127.0.0.1", 8080, "tcp"), &port("127.0.0.1", 8081, "tcp")));
    }

    #[test]
    fn a_published_port_is_refused_to_a_second_container() {
        let mut first = ContainerRecord::for_test("a1", "web");
        first.network = Some(ContainerNetwork { name: "n1".into(), ips: vec![], ports: vec![port("127.0.0.1", 18080, "tcp")] });
        let mut second = ContainerRecord::for_test("b2", "other");
        second.network = Some(ContainerNetwork { name: "n2".into(), ips: vec![], ports: vec![port("", 18080, "tcp")] });
        let error = Containers::check_ports([first.clone()].into_iter(), &second).unwrap_err().to_string();
        assert!(error.contains("already published by container web"), "{error}");
        second.network.as_mut().unwrap().ports[0].protocol = "udp".into();
        Containers::check_ports([first].into_iter(), &second).unwrap();
    }

    #[test]
    fn the_hosts_section_is_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("berth-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(&file, "127.0.0.1\tlocalhost\n10.0.0.2\tme\n").unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        rewrite_section(&file, &format!("{HOSTS_MARKER}n1\n10.0.0.2\tme\n10.0.0.3\tyou\n")).unwrap();
        rewrite_section(&file, &format!("{HOSTS_MARKER}n1\n10.0.0.2\tme\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("127.0.0.1\tlocalhost\n10.0.0.2\tme\n{HOSTS_MARKER}n1\n10.0.0.2\tme\n"));
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap()), inode, "the bind mount's inode is kept");
        // Never through a symlink, never a FIFO (no blocking open).
        std::os::unix::fs::symlink(&file, dir.join("link")).unwrap();
        assert!(rewrite_section(&dir.join("link"), "x").is_err());
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(rewrite_section(&dir.join("fifo"), "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
