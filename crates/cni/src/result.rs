//! A plugin's result (spec 0.3.0 to 1.1.0: `interfaces`, `ips`, `routes`, `dns`) and its error
//! object. The result is kept as the plugin printed it too: the next plugin of a list gets it
//! as `prevResult` unchanged, fields berth does not model included.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The netns path for an interface inside the container; absent on the host side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IpConfig {
    /// CIDR notation: `10.88.0.5/16`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl CniResult {
    /// The addresses (without prefix length) on interfaces inside the container, in result
    /// order; the pod IPs the CRI reports.
    pub fn sandbox_ips(&self) -> Vec<String> {
        self.ips
            .iter()
            .filter(|ip| {
                ip.interface.and_then(|i| self.interfaces.get(i)).is_none_or(|iface| iface.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
            })
            .map(|ip| ip.address.split('/').next().unwrap_or(&ip.address).to_string())
            .collect()
    }
}

/// The error object a failing plugin prints (`code`, `msg`, `details`).
#[derive(Debug, Deserialize)]
pub(crate) struct PluginError {
    pub code: Option<u64>,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

/// A result as printed (for chaining and the cache) and as read.
#[derive(Debug, Clone)]
pub struct Output {
    pub raw: Value,
    pub result: CniResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ips_skip_host_side_interfaces() {
        let result: CniResult = serde_json::from_value(serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "aa"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2}, {"address": "10.1.0.1/24", "interface": 0},
                    {"address": "fd00::5/64", "interface": 2}]
        }))
        .unwrap();
        assert_eq!(result.sandbox_ips(), ["10.1.0.5", "fd00::5"]);
    }
}
