//! How berth reaches registries, as one policy every API uses (berth.v1's pull and push, the
//! CRI's PullImage): credentials (the configured ones first, then docker's config.json with its
//! credential helpers, read at each use), mirrors tried before a registry, registries spoken to
//! over plain HTTP, and how many layers download at once.

use crate::credentials::DockerConfig;
use crate::distribution::Timeouts;
use crate::pull::PullOptions;
use crate::push::PushOptions;
use crate::{Reference, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The registries' settings as a daemon holds them: replaced whole by a reload (berthd's SIGHUP);
/// each pull or push takes the settings current when it starts.
#[derive(Debug, Clone, Default)]
pub struct SharedRegistries(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Registries>>>);

impl SharedRegistries {
    pub fn new(registries: Registries) -> SharedRegistries {
        SharedRegistries(std::sync::Arc::new(std::sync::RwLock::new(std::sync::Arc::new(registries))))
    }

    pub fn current(&self) -> std::sync::Arc<Registries> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, registries: Registries) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(registries);
    }
}

#[derive(Debug, Clone)]
pub struct Registries {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Mirrors by registry (`docker.io` → `mirror.local:5000`, …), tried in order before it.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Username and password by registry (`host[:port]`): the first choice.
    pub credentials: BTreeMap<String, (String, String)>,
    /// A docker `config.json` (auths, credential helpers), consulted next.
    pub docker_config: Option<PathBuf>,
    /// Layers downloaded at once per pull.
    pub concurrency: usize,
    /// How long a registry may take to connect, to send the next bytes, or to answer.
    pub timeouts: Timeouts,
}

impl Default for Registries {
    fn default() -> Registries {
        let concurrency = PullOptions::default().concurrency;
        Registries {
            plain_http: Vec::new(),
            mirrors: BTreeMap::new(),
            credentials: BTreeMap::new(),
            docker_config: None,
            concurrency,
            timeouts: Timeouts::default(),
        }
    }
}

impl Registries {
    /// Credentials for `registry`: the configured ones, else the docker config's.
    pub fn credentials(&self, registry: &str) -> Result<Option<(String, String)>> {
        if let Some(found) = self.credentials.get(registry) {
            return Ok(Some(found.clone()));
        }
        match &self.docker_config {
            Some(path) => DockerConfig::load(path)?.credentials(registry),
            None => Ok(None),
        }
    }

    /// How to pull `reference`: its registry's credentials and mirrors.
    pub fn pull_options(&self, reference: &Reference) -> Result<PullOptions> {
        Ok(PullOptions {
            plain_http: self.plain_http.clone(),
            credentials: self.credentials(reference.registry())?,
            concurrency: self.concurrency,
            mirrors: self.mirrors.get(reference.registry()).cloned().unwrap_or_default(),
            timeouts: self.timeouts,
            ..Default::default()
        })
    }

    /// How to push to `reference`'s registry.
    pub fn push_options(&self, reference: &Reference) -> Result<PushOptions> {
        Ok(PushOptions { plain_http: self.plain_http.clone(), credentials: self.credentials(reference.registry())?, timeouts: self.timeouts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_credentials_and_mirrors_are_per_registry() {
        let registries = Registries {
            credentials: [("reg.example:5000".to_string(), ("u".to_string(), "p".to_string()))].into_iter().collect(),
            mirrors: [("docker.io".to_string(), vec!["mirror.local:5000".to_string()])].into_iter().collect(),
            plain_http: vec!["mirror.local:5000".into()],
            ..Default::default()
        };
        let private = Reference::parse("reg.example:5000/app:1").unwrap();
        let hub = Reference::parse("busybox").unwrap();
        assert_eq!(registries.pull_options(&private).unwrap().credentials, Some(("u".into(), "p".into())));
        assert_eq!(registries.pull_options(&private).unwrap().mirrors, Vec::<String>::new());
        let from_hub = registries.pull_options(&hub).unwrap();
        assert_eq!((from_hub.credentials, from_hub.mirrors), (None, vec!["mirror.local:5000".to_string()]));
        assert_eq!(registries.push_options(&private).unwrap().plain_http, ["mirror.local:5000"]);
    }
}
