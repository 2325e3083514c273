//! The image store on disk: `<root>/content` (blobs), `<root>/snapshots` (unpacked layers) and
//! `<root>/meta.redb` (images, leases).

use crate::content::ContentStore;
use crate::meta::ImageDb;
use crate::snapshots::Snapshots;
use crate::Result;
use std::path::Path;

pub struct Store {
    pub content: ContentStore,
    pub snapshots: Snapshots,
    pub images: ImageDb,
    /// Blobs being downloaded, so concurrent pulls fetch each once.
    pub(crate) in_flight: InFlight,
}

/// One async lock per blob digest being fetched: a second pull of the same blob waits for the
/// first and then finds it in the store. Only that blob waits; nothing store-wide is held.
#[derive(Default)]
pub(crate) struct InFlight(std::sync::Mutex<std::collections::HashMap<crate::Digest, std::sync::Weak<tokio::sync::Mutex<()>>>>);

impl InFlight {
    pub(crate) async fn claim(&self, digest: &crate::Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.retain(|_, lock| lock.strong_count() > 0);
            match locks.get(digest).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(digest.clone(), std::sync::Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// What the store holds, as [`Store::disk_usage`] counts it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub images: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    pub snapshots: usize,
    pub snapshot_bytes: u64,
}

/// What a [`Store::gc`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub blobs: usize,
    pub snapshots: usize,
    pub bytes: u64,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| crate::Error::io("create image store", root, e))?;
        Ok(Store {
            content: ContentStore::open(&root.join("content"))?,
            snapshots: Snapshots::open(&root.join("snapshots"))?,
            images: ImageDb::open(&root.join("meta.redb"))?,
            in_flight: InFlight::default(),
        })
    }

    /// After a crash (kill -9 of its owner): drops the half-written blobs and snapshots and the
    /// leases of pulls that died. Only for the store's one owner, before it starts pulling.
    pub fn recover(&self) -> Result<()> {
        self.content.clean_ingest()?;
        self.snapshots.clean_temp()?;
        self.images.release_transient()
    }

    /// Records the image `source` under the name `target` too (same manifest, same blobs).
    pub fn tag(&self, source: &str, target: &str) -> Result<crate::meta::ImageRecord> {
        let mut record = self.images.get(source)?.ok_or_else(|| crate::Error::NotFound(source.into()))?;
        record.name = target.to_string();
        self.images.put(&record)?;
        Ok(record)
    }

    /// Counts images, blobs and snapshots and the bytes they take (regular files, by size).
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let blobs = self.content.list()?;
        let snapshots = self.snapshots.list()?;
        let blob_bytes = blobs.iter().filter_map(|b| std::fs::metadata(self.content.path(b)).ok()).map(|m| m.len()).sum();
        let snapshot_bytes = snapshots.iter().map(|s| tree_bytes(&self.snapshots.path(s))).sum();
        Ok(DiskUsage { images: self.images.list()?.len(), blobs: blobs.len(), blob_bytes, snapshots: snapshots.len(), snapshot_bytes })
    }

    /// Removes every blob and snapshot no image and no lease keeps. What is listed before the
    /// kept set is read can be removed; anything committed later is left for the next run (a
    /// pull leases what it downloads before committing it, so nothing in flight is lost).
    pub fn gc(&self) -> Result<Collected> {
        let blobs = self.content.list()?;
        let snapshots = self.snapshots.list()?;
        let kept = self.images.kept()?;
        let mut collected = Collected::default();
        for blob in blobs.into_iter().filter(|b| !kept.contains(b)) {
            collected.bytes += std::fs::metadata(self.content.path(&blob)).map(|m| m.len()).unwrap_or(0);
            self.content.delete(&blob)?;
            collected.blobs += 1;
        }
        for snapshot in snapshots.into_iter().filter(|s| !kept.contains(s)) {
            self.snapshots.remove(&snapshot)?;
            collected.snapshots += 1;
        }
        Ok(collected)
    }
}

/// Bytes of the regular files under `dir`, not following symlinks (each hardlinked inode once).
fn tree_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
        } else if meta.is_file() && seen.insert(meta.ino()) {
            total += meta.len();
        }
    }
    total
}

use std::os::unix::fs::DirBuilderExt;
