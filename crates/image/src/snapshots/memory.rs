//! The snapshotter's fake: layers checked and counted but not written anywhere, active snapshots
//! in a map, and mounts that name them (`memory` mounts nothing can perform). For tests of the
//! logic above snapshots (pulls, GC, container records) without root or a disk layout.

use super::{check_key, Budget, Budgeted, Mount, Snapshotter};
use crate::unpack::Applied;
use crate::{Digest, Error, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemorySnapshots {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Committed snapshots and the bytes of file content each holds.
    committed: BTreeMap<String, u64>,
    active: BTreeMap<String, Vec<Digest>>,
}

impl MemorySnapshots {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Snapshotter for MemorySnapshots {
    fn exists(&self, chain_id: &Digest) -> bool {
        self.state().committed.contains_key(chain_id.hex())
    }

    fn unpack(&self, chain_id: &Digest, diff_id: &Digest, layer: &mut dyn Read, budget: &Budget) -> Result<Option<Applied>> {
        if self.exists(chain_id) {
            return Ok(None);
        }
        let mut tar = Vec::new();
        Budgeted { inner: crate::unpack::decompress::decoder(layer)?, budget }
            .read_to_end(&mut tar)
            .map_err(|e| budget.explain(Error::io("read layer", "<stream>", e)))?;
        let actual = Digest::of(&tar);
        if &actual != diff_id {
            return Err(Error::Invalid {
                what: format!("layer {chain_id}"),
                reason: format!("uncompressed digest {actual} is not the diff_id {diff_id}"),
            });
        }
        let mut applied = Applied { entries: 0, bytes: 0, whiteouts: 0, diff_id: actual };
        for entry in tar::Archive::new(&tar[..]).entries().map_err(|e| Error::io("read layer", "<stream>", e))? {
            let entry = entry.map_err(|e| Error::io("read layer entry", "<stream>", e))?;
            applied.entries += 1;
            let path = entry.path_bytes();
            let name = path.rsplit(|b| *b == b'/').next().unwrap_or_default();
            if name.starts_with(b".wh.") {
                applied.whiteouts += 1;
            } else if entry.header().entry_type().is_file() {
                applied.bytes += entry.size();
            }
        }
        self.state().committed.insert(chain_id.hex().to_string(), applied.bytes);
        Ok(Some(applied))
    }

    fn usage(&self, chain_id: &Digest) -> Result<u64> {
        self.state().committed.get(chain_id.hex()).copied().ok_or_else(|| Error::Missing(format!("snapshot {chain_id}")))
    }

    fn list(&self) -> Result<Vec<Digest>> {
        self.state().committed.keys().map(|hex| Digest::parse(&format!("sha256:{hex}"))).collect()
    }

    fn remove(&self, chain_id: &Digest) -> Result<()> {
        self.state().committed.remove(chain_id.hex());
        Ok(())
    }

    fn prepare(&self, key: &str, chain: &[Digest]) -> Result<Vec<Mount>> {
        check_key(key)?;
        let mut state = self.state();
        if let Some(missing) = chain.iter().find(|c| !state.committed.contains_key(c.hex())) {
            return Err(Error::Missing(format!("snapshot {missing}")));
        }
        if state.active.contains_key(key) {
            return Err(Error::Exists(format!("snapshot {key}")));
        }
        state.active.insert(key.to_string(), chain.to_vec());
        Ok(mounts(key, chain))
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let state = self.state();
        let chain = state.active.get(key).ok_or_else(|| Error::Missing(format!("snapshot {key}")))?;
        Ok(mounts(key, chain))
    }

    fn remove_active(&self, key: &str) -> Result<()> {
        self.state().active.remove(key);
        Ok(())
    }

    fn active(&self) -> Result<Vec<String>> {
        Ok(self.state().active.keys().cloned().collect())
    }

    /// Unpacks happen in memory: nothing is left half-done.
    fn clean_temp(&self) -> Result<()> {
        Ok(())
    }
}

fn mounts(key: &str, chain: &[Digest]) -> Vec<Mount> {
    let layers = chain.iter().rev().map(|c| c.hex()).collect::<Vec<_>>().join(":");
    vec![Mount { kind: "memory".into(), source: key.into(), options: vec![format!("layers={layers}")] }]
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance(&super::MemorySnapshots::default());
    }
}
