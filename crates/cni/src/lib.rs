//! The invocation side of the CNI spec (1.0/1.1 exec protocol): what a runtime does to give a
//! container a network with the node's CNI plugins. Network config lists are read from a dir
//! ([`load_dir`], lowest name first); [`Cni::add`] runs a list's plugins in order with
//! `prevResult` chained and capability args in `runtimeConfig`, [`Cni::del`] runs them in reverse
//! with the cached result, [`Cni::check`], [`Cni::status`], [`Cni::gc`] and [`Cni::version`] as the
//! spec gives them per version.
//!
//! Our own code, not a crate: the Rust CNI crates implement the plugin side (cni-plugin,
//! rscni-plugin, whose runtime side is only planned) or are small unmaintained clients without
//! a result cache, bounded reads or timeouts (rust-cni, cni). Here every plugin call has a
//! timeout that kills its process group, a cap on what is read of its output, stderr kept for
//! the message, a clean environment, and plugin types that can only name files in the bin dirs
//! ([`invoke`]). Each attachment's config and result are cached on disk before and after ADD
//! ([`cache`]), so DEL after a crash or a restart undoes what ADD did.
//!
//! Calls for different attachments may run at once (the spec allows it); the caller serialises
//! calls for one attachment.

pub mod cache;
pub mod config;
mod error;
pub mod invoke;
pub mod result;

pub use config::{load_dir, Loaded, NetworkList, PluginConf};
pub use error::{Error, PluginFailure, Result};
pub use invoke::Limits;
pub use result::{CniResult, Output};

use invoke::Call;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// One container's interface on one network.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The pod sandbox's or container's id: letters, digits, `_`, `.`, `-`.
    pub container_id: String,
    /// The network namespace path (a pin under berth's state dir); empty for a DEL once it is gone.
    pub netns: PathBuf,
    /// The interface name inside (`eth0`).
    pub ifname: String,
    /// CNI_ARGS (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, … for pods).
    pub args: Vec<(String, String)>,
    /// Capability args by name (`portMappings`, `ips`, `mac`, `bandwidth`, `dns`): each goes to the
    /// plugins that declare it in `capabilities`, in their `runtimeConfig`.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    fn check(&self) -> Result<()> {
        let id = &self.container_id;
        if id.is_empty() || id.len() > 256 || id.starts_with('.') || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(Error::Invalid(format!("container id {id:?}")));
        }
        let ifname = &self.ifname;
        if ifname.is_empty()
            || ifname.len() > 15
            || ifname == "."
            || ifname == ".."
            || ifname.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(Error::Invalid(format!("interface name {ifname:?}")));
        }
        for (k, v) in &self.args {
            if k.is_empty() || [k, v].iter().any(|s| s.contains(';') || s.contains('=') || s.contains('\0')) {
                return Err(Error::Invalid(format!("CNI_ARGS entry {k:?}={v:?}")));
            }
        }
        // Empty only for a DEL of a namespace that is gone (the spec allows it).
        if !self.netns.as_os_str().is_empty() && !self.netns.is_absolute() {
            return Err(Error::Invalid(format!("netns path {} is not absolute", self.netns.display())));
        }
        Ok(())
    }
}

/// The plugin side of the node: where binaries are, where results are cached, the bounds.
#[derive(Debug, Clone)]
pub struct Cni {
    bin_dirs: Vec<PathBuf>,
    cache: cache::Cache,
    limits: Limits,
}

impl Cni {
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Cni {
        Cni { bin_dirs, cache: cache::Cache::new(cache_dir), limits: Limits::default() }
    }

    pub fn with_limits(mut self, limits: Limits) -> Cni {
        self.limits = limits;
        self
    }

    pub fn cache(&self) -> &cache::Cache {
        &self.cache
    }

    /// ADD: every plugin of the list in order, each given the previous one's result. On failure
    /// what the list did is undone (DEL of the whole list) and ADD's error returned; if that DEL
    /// fails too, the cache entry stays so that a later DEL or GC can finish the job.
    pub async fn add(&self, network: &NetworkList, attachment: &Attachment) -> Result<Output> {
        attachment.check()?;
        if attachment.netns.as_os_str().is_empty() {
            return Err(Error::Invalid("ADD needs a netns path".into()));
        }
        let mut entry = cache::Entry::new(network, attachment);
        self.cache.write(&entry)?;
        let mut previous: Option<Value> = None;
        for plugin in &network.plugins {
            let stdin = plugin_config(network, plugin, previous.as_ref(), attachment);
            match self.call(plugin, "ADD", Some(attachment), &stdin, true).await {
                Ok(result) => previous = result,
                Err(e) => {
                    if let Err(undo) = self.del_list(network, attachment, previous.as_ref()).await {
                        tracing::warn!(network = %network.name, container = %attachment.container_id, "undoing a failed CNI ADD: {undo}");
                    } else {
                        let _ = self.cache.remove(&network.name, &attachment.container_id, &attachment.ifname);
                    }
                    return Err(e);
                }
            }
        }
        let last = network.plugins.last().map(|p| p.typ.as_str()).unwrap_or_default();
        let output = invoke::output(last, previous.unwrap_or(Value::Null))?;
        entry.result = Some(output.raw.clone());
        self.cache.write(&entry)?;
        Ok(output)
    }

    /// DEL with what ADD cached (its config, args and result; the netns is the caller's, empty
    /// when it is gone); an attachment never added, or already deleted, is not an error. The cache entry goes once every plugin succeeded.
    pub async fn del(&self, network_name: &str, attachment: &Attachment) -> Result<()> {
        attachment.check()?;
        config::check_name(network_name)?;
        let Some(entry) = self.cache.read(network_name, &attachment.container_id, &attachment.ifname)? else { return Ok(()) };
        let network = entry.network()?;
        // ADD's args and capability args, but the caller's netns: empty once it is gone.
        let cached = Attachment { netns: attachment.netns.clone(), ..entry.attachment() };
        self.del_list(&network, &cached, entry.result.as_ref()).await?;
        self.cache.remove(network_name, &attachment.container_id, &attachment.ifname)
    }

    /// Every plugin in reverse order; the first error is returned after all were tried (a DEL
    /// must undo as much as it can).
    async fn del_list(&self, network: &NetworkList, attachment: &Attachment, result: Option<&Value>) -> Result<()> {
        let mut first_error = None;
        for plugin in network.plugins.iter().rev() {
            let stdin = plugin_config(network, plugin, result, attachment);
            if let Err(e) = self.call(plugin, "DEL", Some(attachment), &stdin, false).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// CHECK (lists of 0.4.0 on without `disableCheck`): each plugin confirms what ADD set up.
    pub async fn check(&self, network_name: &str, attachment: &Attachment) -> Result<()> {
        attachment.check()?;
        config::check_name(network_name)?;
        let entry = self
            .cache
            .read(network_name, &attachment.container_id, &attachment.ifname)?
            .filter(|e| e.result.is_some())
            .ok_or_else(|| Error::NotCached(format!("{network_name}/{}/{}", attachment.container_id, attachment.ifname)))?;
        let network = entry.network()?;
        if !network.at_least("0.4.0") || network.disable_check {
            return Ok(());
        }
        for plugin in &network.plugins {
            let stdin = plugin_config(&network, plugin, entry.result.as_ref(), attachment);
            self.call(plugin, "CHECK", Some(attachment), &stdin, false).await?;
        }
        Ok(())
    }

    /// STATUS (lists of 1.1.0 on): whether each plugin is ready for ADDs. Older lists have no
    /// such command: their plugins being found is what can be checked.
    pub async fn status(&self, network: &NetworkList) -> Result<()> {
        for plugin in &network.plugins {
            if network.at_least("1.1.0") {
                let stdin = plugin_config(network, plugin, None, &Attachment::none());
                self.call(plugin, "STATUS", None, &stdin, false).await?;
            } else {
                invoke::find(&plugin.typ, &self.bin_dirs)?;
            }
        }
        Ok(())
    }

    /// GC: every cached attachment of `network` not in `valid` is deleted; lists of 1.1.0 on
    /// (without `disableGC`) then get the GC command with the valid ones, for what the cache
    /// does not know of.
    pub async fn gc(&self, network: &NetworkList, valid: &[Attachment]) -> Result<()> {
        let mut first_error = None;
        for entry in self.cache.all().into_iter().filter(|e| e.network == network.name) {
            if valid.iter().any(|a| a.container_id == entry.container_id && a.ifname == entry.ifname) {
                continue;
            }
            if let Err(e) = self.del(&network.name, &entry.attachment()).await {
                first_error.get_or_insert(e);
            }
        }
        if network.at_least("1.1.0") && !network.disable_gc {
            let attachments: Vec<Value> = valid.iter().map(|a| serde_json::json!({"containerID": a.container_id, "ifname": a.ifname})).collect();
            for plugin in &network.plugins {
                let mut stdin = plugin_config(network, plugin, None, &Attachment::none());
                stdin["cni.dev/valid-attachments"] = Value::Array(attachments.clone());
                if let Err(e) = self.call(plugin, "GC", None, &stdin, false).await {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// VERSION of one plugin: the spec versions it supports.
    pub async fn version(&self, plugin_type: &str) -> Result<Vec<String>> {
        let call = Call { command: "VERSION", container_id: None, netns: None, ifname: None, args: &[] };
        let stdin = serde_json::json!({"cniVersion": "1.0.0"});
        let out = invoke::run(plugin_type, &self.bin_dirs, self.limits, &call, &stdin, true).await?.unwrap_or(Value::Null);
        let versions = out.get("supportedVersions").and_then(Value::as_array).ok_or_else(|| Error::BadOutput {
            plugin: plugin_type.into(),
            command: "VERSION",
            reason: "no supportedVersions".into(),
        })?;
        Ok(versions.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
    }

    async fn call(
        &self,
        plugin: &PluginConf,
        command: &'static str,
        attachment: Option<&Attachment>,
        stdin: &Value,
        want: bool,
    ) -> Result<Option<Value>> {
        let call = Call {
            command,
            container_id: attachment.map(|a| a.container_id.as_str()),
            netns: attachment.map(|a| a.netns.as_path()),
            ifname: attachment.map(|a| a.ifname.as_str()),
            args: attachment.map(|a| a.args.as_slice()).unwrap_or_default(),
        };
        invoke::run(&plugin.typ, &self.bin_dirs, self.limits, &call, stdin, want).await
    }
}

impl Attachment {
    /// For the commands that name no attachment (STATUS, GC).
    fn none() -> Attachment {
        Attachment { container_id: String::new(), netns: PathBuf::new(), ifname: String::new(), args: Vec::new(), capability_args: Map::new() }
    }
}

/// What one plugin reads on stdin: its own config with the list's name and version, the
/// previous result, and the capability args it declared, in `runtimeConfig`.
fn plugin_config(network: &NetworkList, plugin: &PluginConf, previous: Option<&Value>, attachment: &Attachment) -> Value {
    let mut config = plugin.raw.clone();
    config.insert("name".into(), network.name.clone().into());
    config.insert("cniVersion".into(), network.cni_version.clone().into());
    if let Some(previous) = previous {
        config.insert("prevResult".into(), previous.clone());
    }
    let runtime: Map<String, Value> =
        attachment.capability_args.iter().filter(|(name, _)| plugin.capabilities.contains(*name)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !runtime.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(config)
}

#[cfg(test)]
mod tests;
