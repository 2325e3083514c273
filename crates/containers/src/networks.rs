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
use std::net::Ipv4Addr;
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
    pub config: PathBuf,
}

/// An IPv4 subnet, checked: the network address with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/n`, 8 ≤ n ≤ 29 (a gateway and some addresses), host bits zero.
    fn parse(text: &str) -> Result<Subnet> {
        let invalid = |why: &str| Error::Invalid(format!("subnet {text:?}: {why}"));
        let (addr, prefix) = text.split_once('/').ok_or_else(|| invalid("give it as a.b.c.d/prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address (IPv6 networks are not supported yet)"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("the prefix is not a number"))?;
        if !(8..=29).contains(&prefix) {
            return Err(invalid("the prefix must be 8 to 29"));
        }
        let base = u32::from(addr);
        if base & !Subnet::mask(prefix) != 0 {
            return Err(invalid("host bits are set"));
        }
        Ok(Subnet { base, prefix })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let mask = Subnet::mask(self.prefix.min(other.prefix));
        self.base & mask == other.base & mask
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Where user networks' subnets come from when none is given: a /24 at a time.
const POOL: Subnet = Subnet { base: 0x0ad2_0000, prefix: 16 }; // 10.210.0.0/16

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

    /// A new network; its subnet the next free /24 of 10.210.0.0/16 unless given.
    pub fn create(&self, name: &str, subnet: Option<&str>) -> Result<NetworkInfo> {
        check_name(name)?;
        let _held = self.guard();
        self.create_locked(name, subnet, None)
    }

    fn create_locked(&self, name: &str, subnet: Option<&str>, bridge: Option<&str>) -> Result<NetworkInfo> {
        if self.path(name).exists() {
            return Err(Error::Conflict(format!("network {name} exists already")));
        }
        let taken: Vec<Subnet> = self.list_locked()?.iter().filter_map(|n| Subnet::parse(&n.subnet).ok()).chain(host_routes()).collect();
        let subnet = match subnet {
            Some(text) => {
                let wanted = Subnet::parse(text)?;
                if let Some(used) = taken.iter().find(|t| t.overlaps(&wanted)) {
                    return Err(Error::Conflict(format!("subnet {wanted} overlaps {used}, in use by another network or a route of the host")));
                }
                wanted
            }
            None => (1..=255u32)
                .map(|third| Subnet { base: POOL.base | third << 8, prefix: 24 })
                .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
                .ok_or_else(|| Error::Conflict(format!("no free /24 left in {POOL}: give a subnet")))?,
        };
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
                        "ranges": [[{"subnet": subnet.to_string(), "gateway": subnet.gateway().to_string()}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
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
                self.create_locked(DEFAULT, Some(&self.default_subnet), Some(&self.default_bridge))?;
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
        let range = &bridge["ipam"]["ranges"][0][0];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Ok(NetworkInfo {
            name: name.to_string(),
            bridge: text(&bridge["bridge"]),
            subnet: text(&range["subnet"]),
            gateway: text(&range["gateway"]),
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

/// The host's IPv4 routes (their destinations, default route aside), so a new network does not
/// shadow a network the host already reaches.
fn host_routes() -> Vec<Subnet> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The kernel prints each address as the hex of its in-memory (network-order) u32.
            let field = |i: usize| u32::from_str_radix(fields.get(i)?, 16).ok().map(|v| u32::from_be_bytes(v.to_ne_bytes()));
            let (destination, mask) = (field(1)?, field(7)?);
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then_some(Subnet { base: destination & Subnet::mask(prefix), prefix })
        })
        .collect()
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
        for bad in ["10.210.3.1/24", "10.210.3.0", "10.210.3.0/30", "10.210.3.0/7", "fd00::/64", "x/24", "10.0.0.0/x"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        let a = Subnet::parse("10.210.0.0/16").unwrap();
        assert!(a.overlaps(&Subnet::parse("10.210.7.0/24").unwrap()));
        assert!(Subnet::parse("10.210.7.0/24").unwrap().overlaps(&a));
        assert!(!a.overlaps(&Subnet::parse("10.211.0.0/24").unwrap()));
    }

    #[test]
    fn create_list_resolve_remove() {
        let dir = std::env::temp_dir().join(format!("berth-networks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let networks = Networks::new(dir.clone(), "berth9test".into(), "10.210.0.0/24".into());
        assert!(networks.create("host", None).is_err());
        assert!(networks.create("../x", None).is_err());
        let n1 = networks.create("n1", None).unwrap();
        assert!(n1.bridge.starts_with("br-") && n1.bridge.len() == 15, "{}", n1.bridge);
        assert!(matches!(networks.create("n1", None), Err(Error::Conflict(_))));
        let n2 = networks.create("n2", Some("10.210.200.0/24")).unwrap();
        assert_eq!((n2.subnet.as_str(), n2.gateway.as_str()), ("10.210.200.0/24", "10.210.200.1"));
        assert!(matches!(networks.create("n3", Some("10.210.200.0/25")), Err(Error::Conflict(_))), "overlap refused");
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
