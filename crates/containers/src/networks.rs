//! `berth run`'s networks, as docker and podman users know them: bridge networks berth makes and
//! owns. Each is a CNI config list berth writes itself (`<dir>/<name>.conflist`: bridge with NAT
//! to the outside and host-local addresses from the network's subnet, then portmap for published
//! ports), beside no other tool's configs; its addresses are recorded under `<dir>/ipam`. The
//! default network `berth` (bridge `berth0` unless configured) is made on first use; `bridge`
//! names it, as in docker. Which containers are on a network is the containers' records' business
//! ([`crate::container_network`]); this file only keeps the configs.

use crate::{Error, Result};
use berth_cni::NetworkList;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The default network's name, and docker's name for it.
pub const DEFAULT: &str = "berth";
pub const DEFAULT_ALIAS: &str = "bridge";

/// What `network ls` and `inspect` show of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    /// Its IPv6 subnet and gateway; empty for an IPv4-only network.
    pub subnet6: String,
    pub gateway6: String,
    pub config: PathBuf,
}

/// A subnet, checked: the network address with its prefix, IPv4 (in the low 32 bits) or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    base: u128,
    prefix: u8,
    v6: bool,
}

impl Subnet {
    /// `a.b.c.d/n` with 8 ≤ n ≤ 29, or an IPv6 `x::/n` with 48 ≤ n ≤ 120 (a gateway and some
    /// addresses), host bits zero.
    fn parse(text: &str) -> Result<Subnet> {
        let invalid = |why: &str| Error::Invalid(format!("subnet {text:?}: {why}"));
        let (addr, prefix) = text.split_once('/').ok_or_else(|| invalid("give it as address/prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("the prefix is not a number"))?;
        let (base, v6, prefixes) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), false, 8..=29),
            IpAddr::V6(a) => (u128::from(a), true, 48..=120),
        };
        if !prefixes.contains(&prefix) {
            return Err(invalid(&format!("the prefix must be {} to {}", prefixes.start(), prefixes.end())));
        }
        let subnet = Subnet { base, prefix, v6 };
        if base & !subnet.mask(prefix) != 0 {
            return Err(invalid("host bits are set"));
        }
        Ok(subnet)
    }

    /// The family's width in bits.
    fn bits(&self) -> u32 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    /// The mask of a `prefix` in this subnet's family, as the low bits of a u128.
    fn mask(&self, prefix: u8) -> u128 {
        let top = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        top >> (128 - self.bits())
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask(self.prefix.min(other.prefix));
        self.v6 == other.v6 && self.base & mask == other.base & mask
    }

    fn address(&self, offset: u128) -> IpAddr {
        match self.v6 {
            true => IpAddr::V6(Ipv6Addr::from(self.base + offset)),
            false => IpAddr::V4(Ipv4Addr::from((self.base + offset) as u32)),
        }
    }

    fn gateway(&self) -> IpAddr {
        self.address(1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address(0), self.prefix)
    }
}

/// Where user networks' IPv4 subnets come from when none is given: a /24 at a time.
const POOL: Subnet = Subnet { base: 0x0ad2_0000, prefix: 16, v6: false }; // 10.210.0.0/16

/// Where IPv6 subnets come from when `--ipv6` gives none: a /64 at a time of a unique local
/// /48 (RFC 4193; podman picks from fd00::/8 the same way).
const POOL6: Subnet = Subnet { base: 0xfd62_6572_7468 << 80, prefix: 48, v6: true }; // fd62:6572:7468::/48

/// What `network create` asks for: subnets by family (chosen from the pools when None), and
/// whether the network has IPv6 (a v6 subnet implies it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    pub subnet: Option<String>,
    pub subnet6: Option<String>,
    pub ipv6: bool,
}

pub struct Networks {
    dir: PathBuf,
    /// The default network's bridge and subnet (berthd.toml).
    default_bridge: String,
    default_subnet: String,
    /// Serialises creation and removal (names and subnets stay unique).
    lock: std::sync::Mutex<()>,
}

/// `bridge` is docker's name for the default network.
pub fn canonical(name: &str) -> &str {
    if name == DEFAULT_ALIAS {
        DEFAULT
    } else {
        name
    }
}

/// Names: as containers' (docker's rule), and not one of the words `--network` gives a meaning.
fn check_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(Error::Invalid(format!("network name {name:?}: use up to 64 letters, digits, _ . - (starting with a letter or digit)")));
    }
    if ["host", "none", DEFAULT_ALIAS, "default", "container"].contains(&name) {
        return Err(Error::Invalid(format!("network name {name:?} is reserved")));
    }
    Ok(())
}

impl Networks {
    pub fn new(dir: PathBuf, default_bridge: String, default_subnet: String) -> Networks {
        Networks { dir, default_bridge, default_subnet, lock: Default::default() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.conflist"))
    }

    /// host-local's allocations, one directory per network.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new network; its subnet the next free /24 of 10.210.0.0/16 unless given, and with
    /// IPv6 a /64 of fd62:6572:7468::/48 unless given.
    pub fn create(&self, name: &str, request: &NetworkRequest) -> Result<NetworkInfo> {
        check_name(name)?;
        let _held = self.guard();
        self.create_locked(name, request, None)
    }

    fn create_locked(&self, name: &str, request: &NetworkRequest, bridge: Option<&str>) -> Result<NetworkInfo> {
        if self.path(name).exists() {
            return Err(Error::Conflict(format!("network {name} exists already")));
        }
        let networks = self.list_locked()?;
        let given = [&request.subnet, &request.subnet6].map(|s| s.as_deref().map(Subnet::parse).transpose());
        let [given4, given6] = given;
        let (given4, given6) = (given4?, given6?);
        if given4.is_some_and(|s| s.v6) || given6.is_some_and(|s| !s.v6) {
            return Err(Error::Invalid("give one IPv4 subnet and at most one IPv6 subnet".into()));
        }
        let used = networks.iter().flat_map(|n| [&n.subnet, &n.subnet6]).filter_map(|s| Subnet::parse(s).ok());
        let taken: Vec<Subnet> = used.chain(host_routes()).collect();
        let pick = |wanted: Option<Subnet>, pool: Subnet, size: u8, count: u128| -> Result<Subnet> {
            match wanted {
                Some(wanted) => match taken.iter().find(|t| t.overlaps(&wanted)) {
                    Some(used) => Err(Error::Conflict(format!("subnet {wanted} overlaps {used}, in use by another network or a route of the host"))),
                    None => Ok(wanted),
                },
                None => (1..count)
                    .map(|n| Subnet { base: pool.base | n << (pool.bits() - u32::from(size)), prefix: size, v6: pool.v6 })
                    .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
                    .ok_or_else(|| Error::Conflict(format!("no free /{size} left in {pool}: give a subnet"))),
            }
        };
        let subnet = pick(given4, POOL, 24, 256)?;
        let subnet6 = (request.ipv6 || given6.is_some()).then(|| pick(given6, POOL6, 64, 1 << 16)).transpose()?;
        let range = |s: Subnet| json!([{"subnet": s.to_string(), "gateway": s.gateway().to_string()}]);
        let mut ranges = vec![range(subnet)];
        let mut routes = vec![json!({"dst": "0.0.0.0/0"})];
        if let Some(subnet6) = subnet6 {
            ranges.push(range(subnet6));
            routes.push(json!({"dst": "::/0"}));
        }
        let bridge = bridge.map(str::to_string).unwrap_or_else(|| self.bridge_name(name));
        let config = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": ranges,
                        "routes": routes,
                        "dataDir": self.ipam_dir(),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        });
        crate::manager::make_dir(&self.dir)?;
        let path = self.path(name);
        let temporary = self.dir.join(format!(".{name}.conflist.new"));
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&temporary, bytes).map_err(|e| Error::io("write", &temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        self.info(name)
    }

    /// A bridge name of 15 bytes at most, different for each berth root (two berthds on one host
    /// never share a bridge): `br-` and 12 hex digits of a digest of the config dir and the name.
    fn bridge_name(&self, name: &str) -> String {
        let digest = berth_image::Digest::of(format!("{}\0{name}", self.dir.display()).as_bytes());
        format!("br-{}", &digest.hex()[..12])
    }

    /// `bridge` means the default network; the default network is made on first use.
    pub fn resolve(&self, name: &str) -> Result<(NetworkInfo, NetworkList)> {
        let name = canonical(name);
        if name == DEFAULT {
            let _held = self.guard();
            if !self.path(DEFAULT).exists() {
                let request = NetworkRequest { subnet: Some(self.default_subnet.clone()), ..Default::default() };
                self.create_locked(DEFAULT, &request, Some(&self.default_bridge))?;
            }
        }
        let list = NetworkList::load(&self.path(name)).map_err(|e| match e {
            berth_cni::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("network {name} (berth network ls lists them)"))
            }
            other => Error::Invalid(other.to_string()),
        })?;
        Ok((self.info(name)?, list))
    }

    /// What berth wrote for `name`, read back.
    pub fn info(&self, name: &str) -> Result<NetworkInfo> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(format!("network {name}"))),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let bridge = &value["plugins"][0];
        let (range, range6) = (&bridge["ipam"]["ranges"][0][0], &bridge["ipam"]["ranges"][1][0]);
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Ok(NetworkInfo {
            name: name.to_string(),
            bridge: text(&bridge["bridge"]),
            subnet: text(&range["subnet"]),
            gateway: text(&range["gateway"]),
            subnet6: text(&range6["subnet"]),
            gateway6: text(&range6["gateway"]),
            config: path,
        })
    }

    /// Every network berth made, by name.
    pub fn list(&self) -> Result<Vec<NetworkInfo>> {
        let _held = self.guard();
        self.list_locked()
    }

    fn list_locked(&self) -> Result<Vec<NetworkInfo>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &self.dir, e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".conflist").map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names.iter().map(|n| self.info(n)).collect()
    }

    /// Removes the network's config, its bridge and its allocation records. The caller has made
    /// sure no container is on it.
    pub fn remove(&self, name: &str) -> Result<NetworkInfo> {
        let name = canonical(name);
        let _held = self.guard();
        let info = self.info(name)?;
        delete_link(&info.bridge)?;
        std::fs::remove_file(&info.config).map_err(|e| Error::io("remove", &info.config, e))?;
        let ipam = self.ipam_dir().join(name);
        match std::fs::remove_dir_all(&ipam) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("remove", &ipam, e)),
            _ => {}
        }
        Ok(info)
    }
}

/// The host's routes (their destinations, default routes aside), IPv4 and IPv6, so a new network
/// does not shadow a network the host already reaches.
fn host_routes() -> Vec<Subnet> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let (routes, routes6) = (read("/proc/net/route"), read("/proc/net/ipv6_route"));
    let v4 = routes.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // The kernel prints each address as the hex of its in-memory (network-order) u32.
        let field = |i: usize| u32::from_str_radix(fields.get(i)?, 16).ok().map(|v| u32::from_be_bytes(v.to_ne_bytes()));
        let (destination, mask) = (field(1)?, field(7)?);
        let route = Subnet { base: 0, prefix: mask.count_ones() as u8, v6: false };
        (route.prefix > 0).then(|| Subnet { base: u128::from(destination) & route.mask(route.prefix), ..route })
    });
    // ipv6_route: the destination as 32 hex digits in network order, then its prefix in hex.
    let v6 = routes6.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let destination = u128::from_str_radix(fields.next()?, 16).ok()?;
        let prefix = u8::from_str_radix(fields.next()?, 16).ok().filter(|p| (1..=128).contains(p))?;
        let route = Subnet { base: 0, prefix, v6: true };
        Some(Subnet { base: destination & route.mask(prefix), ..route })
    });
    v4.chain(v6).collect()
}

/// Deletes a network interface by name (the bridge: CNI's bridge plugin makes it and never
/// removes it); one that is gone is fine. iproute2's `ip` does it: one call at `network rm`.
fn delete_link(name: &str) -> Result<()> {
    if name.is_empty() || !Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    let output = std::process::Command::new("ip").args(["link", "delete", "dev", name]).output().map_err(|e| Error::io("run", Path::new("ip"), e))?;
    if !output.status.success() {
        return Err(Error::Network(format!("delete bridge {name}: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert_eq!(Subnet::parse("10.210.3.0/24").unwrap().to_string(), "10.210.3.0/24");
        assert_eq!(Subnet::parse("10.210.3.0/24").unwrap().gateway().to_string(), "10.210.3.1");
        assert_eq!(Subnet::parse("fd00:1::/64").unwrap().gateway().to_string(), "fd00:1::1");
        assert_eq!(POOL6.to_string(), "fd62:6572:7468::/48");
        for bad in ["10.210.3.1/24", "10.210.3.0", "10.210.3.0/30", "10.210.3.0/7", "fd00::1/64", "fd00::/32", "x/24", "10.0.0.0/x"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        let a = Subnet::parse("10.210.0.0/16").unwrap();
        assert!(a.overlaps(&Subnet::parse("10.210.7.0/24").unwrap()));
        assert!(Subnet::parse("10.210.7.0/24").unwrap().overlaps(&a));
        assert!(!a.overlaps(&Subnet::parse("10.211.0.0/24").unwrap()));
        let v6 = Subnet::parse("fd00:1::/64").unwrap();
        assert!(v6.overlaps(&Subnet::parse("fd00:1::/80").unwrap()) && !v6.overlaps(&Subnet::parse("fd00:2::/64").unwrap()));
        // Families never overlap, whatever their bits.
        assert!(!Subnet::parse("0.0.0.0/8").unwrap().overlaps(&Subnet::parse("::/48").unwrap()));
    }

    #[test]
    fn create_list_resolve_remove() {
        let dir = std::env::temp_dir().join(format!("berth-networks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let networks = Networks::new(dir.clone(), "berth9test".into(), "10.210.0.0/24".into());
        let v4 = |subnet: &str| NetworkRequest { subnet: Some(subnet.into()), ..Default::default() };
        let none = NetworkRequest::default();
        assert!(networks.create("host", &none).is_err());
        assert!(networks.create("../x", &none).is_err());
        let n1 = networks.create("n1", &none).unwrap();
        assert!(n1.bridge.starts_with("br-") && n1.bridge.len() == 15, "{}", n1.bridge);
        assert!(n1.subnet6.is_empty());
        assert!(matches!(networks.create("n1", &none), Err(Error::Conflict(_))));
        let n2 = networks.create("n2", &v4("10.210.200.0/24")).unwrap();
        assert_eq!((n2.subnet.as_str(), n2.gateway.as_str()), ("10.210.200.0/24", "10.210.200.1"));
        assert!(matches!(networks.create("n3", &v4("10.210.200.0/25")), Err(Error::Conflict(_))), "overlap refused");
        assert!(matches!(networks.create("n3", &v4("fd00:9::/64")), Err(Error::Invalid(_))), "a v6 subnet as the v4 one");
        // IPv6: a /64 of the pool, one after the other; a given one checked for overlaps.
        let six = networks.create("six", &NetworkRequest { ipv6: true, ..Default::default() }).unwrap();
        let seven = networks.create("seven", &NetworkRequest { ipv6: true, ..Default::default() }).unwrap();
        assert!(six.subnet6.starts_with("fd62:6572:7468:") && six.subnet6.ends_with("::/64"), "{}", six.subnet6);
        assert_ne!(six.subnet6, seven.subnet6);
        assert_eq!(six.gateway6, six.subnet6.replace("::/64", "::1"));
        let taken6 = NetworkRequest { subnet6: Some(seven.subnet6.clone()), ..Default::default() };
        assert!(matches!(networks.create("n3", &taken6), Err(Error::Conflict(_))));
        let (_, list) = networks.resolve("six").unwrap();
        let ranges = list.plugins[0].raw["ipam"]["ranges"].clone();
        assert_eq!(ranges[1][0]["subnet"], six.subnet6.as_str());
        networks.remove("six").unwrap();
        networks.remove("seven").unwrap();
        assert_ne!(n1.subnet, n2.subnet);
        // The default network is made when first asked for, under both its names.
        let (default, list) = networks.resolve("bridge").unwrap();
        assert_eq!((default.name.as_str(), default.bridge.as_str(), default.subnet.as_str()), (DEFAULT, "berth9test", "10.210.0.0/24"));
        assert_eq!(list.plugins.iter().map(|p| p.typ.as_str()).collect::<Vec<_>>(), ["bridge", "portmap"]);
        assert!(n1.subnet != default.subnet && n2.subnet != default.subnet);
        assert_eq!(networks.list().unwrap().iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), [DEFAULT, "n1", "n2"]);
        assert!(matches!(networks.resolve("nosuch"), Err(Error::NotFound(_))));
        // No bridge exists for these: removal takes the config (and the allocations) only.
        networks.remove("n1").unwrap();
        assert!(matches!(networks.remove("n1"), Err(Error::NotFound(_))));
        assert_eq!(networks.list().unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
