//! Snapshots: one directory per layer, `<root>/<chain id hex>/fs`, in overlayfs lower-dir format.
//! A layer is unpacked into a temporary directory beside them and renamed into place only after
//! its diff_id checked out, so a snapshot that exists is whole, and layers unpack in parallel
//! without mounting the ones below (the chain id names the whole stack up to the layer).

use crate::unpack::{apply_layer, Applied};
use crate::{Digest, Error, Result};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The image-spec chain ids of a layer stack: ChainID(L0) = DiffID(L0), ChainID(Ln) =
/// sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| Error::io("create snapshot store", root, e))?;
        Ok(Snapshots { root: root.to_path_buf() })
    }

    /// The snapshot's file tree (an overlayfs lower dir).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("fs")
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// Unpacks `layer` (compressed or not) as the snapshot `chain_id`, whose uncompressed stream
    /// must have the digest `diff_id`. Returns None when the snapshot already exists.
    pub fn unpack(&self, chain_id: &Digest, diff_id: &Digest, layer: impl Read) -> Result<Option<Applied>> {
        if self.exists(chain_id) {
            return Ok(None);
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.root.join(format!(".tmp-{}-{}-{}", chain_id.hex(), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let result = self.unpack_into(&temp, chain_id, diff_id, layer);
        if result.is_err() || self.exists(chain_id) {
            let _ = std::fs::remove_dir_all(&temp);
        }
        result.map(Some)
    }

    fn unpack_into(&self, temp: &Path, chain_id: &Digest, diff_id: &Digest, layer: impl Read) -> Result<Applied> {
        let fs = temp.join("fs");
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&fs).map_err(|e| Error::io("create snapshot", &fs, e))?;
        let applied = apply_layer(layer, &fs)?;
        if &applied.diff_id != diff_id {
            return Err(Error::Invalid {
                what: format!("layer {chain_id}"),
                reason: format!("uncompressed digest {} is not the diff_id {diff_id}", applied.diff_id),
            });
        }
        let target = self.root.join(chain_id.hex());
        match std::fs::rename(temp, &target) {
            // Another pull of the same layer got there first: theirs is as good as ours.
            Err(e) if self.exists(chain_id) && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => Ok(applied),
            other => other.map(|_| applied).map_err(|e| Error::io("commit snapshot", target, e)),
        }
    }

    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let dir = self.root.join(chain_id.hex());
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove snapshot", dir, e)),
            _ => Ok(()),
        }
    }

    /// Every committed snapshot.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io("list snapshots", &self.root, e))?;
        Ok(entries.flatten().filter_map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()).collect())
    }

    /// Removes what interrupted unpacks left (call when no unpack runs, e.g. at daemon start).
    pub fn clean_temp(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.root).map_err(|e| Error::io("list snapshots", &self.root, e))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
