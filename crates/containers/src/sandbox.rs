//! Pods (sandboxes), as first-class records beside containers: a pod's containers share one shim
//! (crate::create places them), and removing the pod removes them. The CRI's RunPodSandbox builds
//! on this (namespaces pinned without a process, networking); here is what every pod has.

use crate::manager::Containers;
use crate::record::{short, Change};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: SandboxConfig,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: u64,
}

/// What a new pod is asked to be: its metadata as the kubelet names it, its labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Containers {
    pub async fn create_sandbox(&self, config: SandboxConfig) -> Result<SandboxRecord> {
        if config.name.is_empty() || config.namespace.is_empty() {
            return Err(Error::Invalid("a pod needs a name and a namespace".into()));
        }
        let record = SandboxRecord { id: crate::create::random_id()?, config, state: SandboxState::Ready, created_at: crate::now_ns() };
        {
            let mut sandboxes = self.sandboxes();
            let key = |c: &SandboxConfig| (c.name.clone(), c.namespace.clone(), c.uid.clone(), c.attempt);
            if let Some(other) = sandboxes.values().find(|s| key(&s.config) == key(&record.config)) {
                let c = &record.config;
                return Err(Error::Conflict(format!("pod {}/{} (attempt {}) exists: {}", c.namespace, c.name, c.attempt, short(&other.id))));
            }
            sandboxes.insert(record.id.clone(), record.clone());
        }
        if let Err(e) = self.persister.write(Change::PutSandbox(Box::new(record.clone()))).await {
            self.sandboxes().remove(&record.id);
            return Err(e);
        }
        Ok(record)
    }

    /// Every pod, oldest first.
    pub fn list_sandboxes(&self) -> Vec<SandboxRecord> {
        let mut pods: Vec<SandboxRecord> = self.sandboxes().values().cloned().collect();
        pods.sort_by_key(|p| p.created_at);
        pods
    }

    /// By id or unique id prefix.
    pub fn find_sandbox(&self, key: &str) -> Result<SandboxRecord> {
        let sandboxes = self.sandboxes();
        if let Some(found) = sandboxes.get(key) {
            return Ok(found.clone());
        }
        let mut matching = sandboxes.values().filter(|s| !key.is_empty() && s.id.starts_with(key));
        match (matching.next(), matching.next()) {
            (Some(one), None) => Ok(one.clone()),
            (Some(_), Some(_)) => Err(Error::Invalid(format!("{key} names more than one pod; give more of the id"))),
            _ => Err(Error::NoPod(key.to_string())),
        }
    }

    /// Removes the pod's containers (killed if they run), its shim's directory, then the pod.
    pub async fn remove_sandbox(&self, key: &str) -> Result<SandboxRecord> {
        let sandbox = self.find_sandbox(key)?;
        let members: Vec<String> = self.list().into_iter().filter(|c| c.sandbox.as_deref() == Some(&sandbox.id)).map(|c| c.id).collect();
        for id in members {
            match self.remove(&id, true).await {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let dir = self.bundle_dir(&sandbox.id);
        crate::manager::blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        })
        .await?;
        self.persister.write(Change::RemoveSandbox(sandbox.id.clone())).await?;
        self.sandboxes().remove(&sandbox.id);
        Ok(sandbox)
    }

    fn sandboxes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SandboxRecord>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
