//! Network config lists: a `.conflist` (`{"cniVersion", "name", "plugins": [...]}`) or a single
//! plugin's `.conf`/`.json` (made a one-plugin list), read with a size bound, checked, and kept
//! with each plugin's own JSON untouched (plugins have fields of their own that berth passes on).

use crate::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Config files larger than this are refused (real ones are a few hundred bytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Spec versions whose result format berth reads (0.3.0 on: `ips` and `interfaces`).
const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConf>,
    /// Where it was read from (for messages), if from a file.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct PluginConf {
    /// The plugin binary's name.
    pub typ: String,
    /// The runtime capabilities it takes in `runtimeConfig` (portMappings, ips, mac, bandwidth, dns).
    pub capabilities: BTreeSet<String>,
    /// Its config object as written.
    pub raw: Map<String, Value>,
}

impl NetworkList {
    /// Parses a list (or, with `single`, one plugin's config).
    pub fn parse(bytes: &[u8], single: bool, source: &Path) -> Result<NetworkList> {
        let bad = |reason: String| Error::Config { path: source.to_path_buf(), reason };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(top) = value else { return Err(bad("not a JSON object".into())) };
        let string = |key: &str| top.get(key).and_then(Value::as_str).map(str::to_string);
        let name = string("name").ok_or_else(|| bad("no \"name\"".into()))?;
        check_name(&name).map_err(|e| bad(e.to_string()))?;
        let cni_version = string("cniVersion").ok_or_else(|| bad("no \"cniVersion\"".into()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(bad(format!("cniVersion {cni_version:?} is not one berth supports ({})", SUPPORTED_VERSIONS.join(", "))));
        }
        let flag = |key: &str| top.get(key).and_then(Value::as_bool).unwrap_or(false);
        let plugin_values: Vec<Value> = if single {
            vec![Value::Object(top.clone())]
        } else {
            match top.get("plugins") {
                Some(Value::Array(plugins)) if !plugins.is_empty() => plugins.clone(),
                _ => return Err(bad("\"plugins\" must be a non-empty array".into())),
            }
        };
        let plugins = plugin_values
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let Value::Object(raw) = value else { return Err(bad(format!("plugin {i} is not an object"))) };
                let typ = raw.get("type").and_then(Value::as_str).ok_or_else(|| bad(format!("plugin {i} has no \"type\"")))?.to_string();
                check_plugin_type(&typ).map_err(|e| bad(e.to_string()))?;
                let capabilities = match raw.get("capabilities") {
                    Some(Value::Object(caps)) => caps.iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(k, _)| k.clone()).collect(),
                    _ => BTreeSet::new(),
                };
                Ok(PluginConf { typ, capabilities, raw })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(NetworkList {
            name,
            cni_version,
            disable_check: flag("disableCheck"),
            disable_gc: flag("disableGC"),
            plugins,
            source: Some(source.to_path_buf()),
        })
    }

    /// Reads one file: `.conflist` as a list, `.conf`/`.json` as one plugin (or a list, if it has
    /// `plugins`, as libcni accepts).
    pub fn load(path: &Path) -> Result<NetworkList> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::Config { path: path.into(), reason: "not a regular file".into() });
        }
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(Error::Config { path: path.into(), reason: format!("larger than {MAX_CONFIG_BYTES} bytes") });
        }
        let is_list =
            path.extension().is_some_and(|e| e == "conflist") || serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.get("plugins").is_some());
        NetworkList::parse(&bytes, !is_list, path)
    }

    /// The list as one JSON object, as written (for the attachment cache: DEL after a restart
    /// uses the config ADD used, even if the file changed or went since).
    pub fn to_json(&self) -> Value {
        let mut top = Map::new();
        top.insert("cniVersion".into(), self.cni_version.clone().into());
        top.insert("name".into(), self.name.clone().into());
        if self.disable_check {
            top.insert("disableCheck".into(), true.into());
        }
        if self.disable_gc {
            top.insert("disableGC".into(), true.into());
        }
        top.insert("plugins".into(), Value::Array(self.plugins.iter().map(|p| Value::Object(p.raw.clone())).collect()));
        Value::Object(top)
    }

    /// Whether the list's version has a command (CHECK from 0.4.0, STATUS and GC from 1.1.0).
    pub(crate) fn at_least(&self, version: &str) -> bool {
        version_key(&self.cni_version) >= version_key(version)
    }
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

/// What `load_dir` found: the usable lists in name order, and each file that was not usable.
#[derive(Debug, Default)]
pub struct Loaded {
    pub networks: Vec<NetworkList>,
    pub errors: Vec<Error>,
}

/// The config files in `dir` (`.conflist`, `.conf`, `.json`), lowest name first, as the
/// kubelet's runtimes read them; a missing dir has none.
pub fn load_dir(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return loaded,
        Err(e) => {
            loaded.errors.push(Error::io("read dir", dir, e));
            return loaded;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conflist" || e == "conf" || e == "json"))
        .collect();
    files.sort();
    for file in files {
        match NetworkList::load(&file) {
            Ok(list) => loaded.networks.push(list),
            Err(e) => loaded.errors.push(e),
        }
    }
    loaded
}

/// A network name (a cache path component): letters, digits, `_`, `.`, `-`, as the spec allows.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || name.starts_with('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(Error::Invalid(format!("network name {name:?}: letters, digits, '_', '.', '-' only, not starting with '.'")));
    }
    Ok(())
}

/// A plugin type is a file name in a bin dir, never a path.
fn check_plugin_type(typ: &str) -> Result<()> {
    if typ.is_empty() || typ.contains('/') || typ == "." || typ == ".." || typ.contains('\0') {
        return Err(Error::Invalid(format!("plugin type {typ:?} is not a plain file name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_single_configs_parse_and_bad_ones_say_why() {
        let list = br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge","bridge":"b0"},{"type":"portmap","capabilities":{"portMappings":true,"ips":false}}]}"#;
        let net = NetworkList::parse(list, false, Path::new("x.conflist")).unwrap();
        assert_eq!((net.name.as_str(), net.plugins.len()), ("pods", 2));
        assert_eq!(net.plugins[1].capabilities.iter().collect::<Vec<_>>(), ["portMappings"]);
        assert_eq!(net.plugins[0].raw["bridge"], "b0");
        assert!(net.at_least("0.4.0") && !net.at_least("1.1.0"));
        let single = NetworkList::parse(br#"{"cniVersion":"0.4.0","name":"one","type":"loopback"}"#, true, Path::new("x.conf")).unwrap();
        assert_eq!(single.plugins[0].typ, "loopback");
        for (bad, why) in [
            (&b"not json"[..], "not JSON"),
            (br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, "non-empty"),
            (br#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"b"}]}"#, "0.2.0"),
            (br#"{"cniVersion":"1.0.0","name":"../x","plugins":[{"type":"b"}]}"#, "network name"),
            (br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#, "plain file name"),
            (br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]}"#, "no \"type\""),
        ] {
            let err = NetworkList::parse(bad, false, Path::new("bad.conflist")).unwrap_err().to_string();
            assert!(err.contains("bad.conflist") && err.contains(why), "{err}");
        }
    }
}
