//! One file per attachment (`<cache>/<network>/<container id>-<ifname>.json`): the list ADD ran
//! with, the attachment, and (once ADD finished) its result. Written before ADD starts, so a
//! berthd killed during ADD finds what to DEL; DEL and CHECK use the cached config and result, as
//! the spec asks, even when the config file changed or went since. Each write is a whole new file
//! renamed into place.

use crate::config::NetworkList;
use crate::{Attachment, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A cache file is the config plus a result: a few KiB; anything past this is not ours.
const MAX_ENTRY_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub network: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    pub netns: PathBuf,
    #[serde(default)]
    pub args: Vec<(String, String)>,
    #[serde(rename = "capabilityArgs", default)]
    pub capability_args: Map<String, Value>,
    /// The list as ADD ran it.
    pub config: Value,
    /// ADD's final result; None while ADD runs (or if it never finished).
    #[serde(default)]
    pub result: Option<Value>,
}

impl Entry {
    pub fn new(network: &NetworkList, attachment: &Attachment) -> Entry {
        Entry {
            network: network.name.clone(),
            container_id: attachment.container_id.clone(),
            ifname: attachment.ifname.clone(),
            netns: attachment.netns.clone(),
            args: attachment.args.clone(),
            capability_args: attachment.capability_args.clone(),
            config: network.to_json(),
            result: None,
        }
    }

    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            args: self.args.clone(),
            capability_args: self.capability_args.clone(),
        }
    }

    pub fn network(&self) -> Result<NetworkList> {
        let bytes = serde_json::to_vec(&self.config).expect("a JSON value serialises");
        NetworkList::parse(&bytes, false, Path::new(&format!("cached config of {}", self.network)))
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        // Every component was checked (names, ids and ifnames without '/' or a leading '.').
        self.dir.join(network).join(format!("{container_id}-{ifname}.json"))
    }

    pub fn write(&self, entry: &Entry) -> Result<()> {
        let path = self.path(&entry.network, &entry.container_id, &entry.ifname);
        let dir = path.parent().expect("a file in a network dir");
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(&serde_json::to_vec(entry).expect("an entry serialises")).map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
    }

    pub fn read(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<Entry>> {
        read_entry(&self.path(network, container_id, ifname))
    }

    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
            _ => Ok(()),
        }
    }

    /// Every cached attachment, of every network (for recovery after a restart); unreadable
    /// files are skipped with a warning.
    pub fn all(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let Ok(networks) = std::fs::read_dir(&self.dir) else { return entries };
        for network in networks.flatten() {
            let Ok(files) = std::fs::read_dir(network.path()) else { continue };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match read_entry(&path) {
                    Ok(Some(entry)) => entries.push(entry),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("skipping a CNI cache file: {e}"),
                }
            }
        }
        entries
    }
}

fn read_entry(path: &Path) -> Result<Option<Entry>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_BYTES).read_to_end(&mut bytes).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Config { path: path.into(), reason: format!("not a CNI cache entry: {e}") })
}
