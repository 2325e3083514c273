//! The image store: `<root>/content` (blobs), `<root>/snapshots` (unpacked layers),
//! `<root>/meta.redb` (images, leases) and `<root>/tmp` (scratch files). Blobs and snapshots sit
//! behind their traits, so the logic here and in pulls and archives runs on fakes too.

use crate::content::{ContentStore, LocalContent};
use crate::meta::ImageDb;
use crate::snapshots::{OverlaySnapshots, Snapshotter};
use crate::{Error, Result};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Store {
    pub content: Arc<dyn ContentStore>,
    pub snapshots: Arc<dyn Snapshotter>,
    pub images: ImageDb,
    root: PathBuf,
    /// Blobs being downloaded, so concurrent pulls fetch each once.
    pub(crate) in_flight: InFlight,
    /// The most one image may unpack to (uncompressed layer bytes, all its layers together).
    pub(crate) max_image_size: u64,
    /// Pulls since the store was opened (a daemon's metrics).
    pub pulls: PullCounts,
}

/// Pulls counted as they end: every one, the failed ones, and the bytes downloaded.
#[derive(Debug, Default)]
pub struct PullCounts {
    pub total: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
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
    /// The store on disk at `root`: blobs in files, snapshots for overlayfs.
    pub fn open(root: &Path) -> Result<Store> {
        let content = Arc::new(LocalContent::open(&root.join("content"))?);
        let snapshots = Arc::new(OverlaySnapshots::open(&root.join("snapshots"))?);
        Store::open_with(root, content, snapshots)
    }

    /// The store at `root` (its metadata and scratch files) with these blobs and snapshots.
    pub fn open_with(root: &Path, content: Arc<dyn ContentStore>, snapshots: Arc<dyn Snapshotter>) -> Result<Store> {
        let tmp = root.join("tmp");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&tmp).map_err(|e| Error::io("create image store", tmp, e))?;
        Ok(Store {
            content,
            snapshots,
            images: ImageDb::open(&root.join("meta.redb"))?,
            root: root.to_path_buf(),
            in_flight: InFlight::default(),
            pulls: PullCounts::default(),
            max_image_size: u64::MAX,
        })
    }

    /// With at most `bytes` unpacked per image (pulls, loads, imports): past it, the image is
    /// refused with `Error::TooLarge` and nothing of it is committed but what other images share.
    pub fn with_max_image_size(mut self, bytes: u64) -> Store {
        self.max_image_size = bytes;
        self
    }

    /// A fresh budget for one image's layers.
    pub(crate) fn image_budget(&self) -> crate::snapshots::Budget {
        crate::snapshots::Budget::new(self.max_image_size)
    }

    /// Where the store is (its filesystem holds every layer and writable layer).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch file (an export's uncompressed layer); the caller removes it, and
    /// [`Store::recover`] what a crash left.
    pub(crate) fn scratch(&self) -> Result<(File, PathBuf)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.root.join("tmp").join(format!("scratch.{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("create scratch file", &path, e))?;
        Ok((file, path))
    }

    /// After a crash (kill -9 of its owner): drops the half-written blobs and snapshots and the
    /// leases of pulls that died. Only for the store's one owner, before it starts pulling.
    pub fn recover(&self) -> Result<()> {
        self.content.clean_ingest()?;
        self.snapshots.clean_temp()?;
        let tmp = self.root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io("list scratch files", &tmp, e))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        self.images.release_transient()
    }

    /// Records the image `source` under the name `target` too (same manifest, same blobs).
    pub fn tag(&self, source: &str, target: &str) -> Result<crate::meta::ImageRecord> {
        let mut record = self.images.get(source)?.ok_or_else(|| Error::NotFound(source.into()))?;
        record.name = target.to_string();
        self.images.put(&record)?;
        Ok(record)
    }

    /// Counts images, blobs and snapshots and the bytes they take (regular files, by size).
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let blobs = self.content.list()?;
        let snapshots = self.snapshots.list()?;
        let blob_bytes = blobs.iter().filter_map(|b| self.content.size(b).ok()).sum();
        let snapshot_bytes = snapshots.iter().filter_map(|s| self.snapshots.usage(s).ok()).sum();
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
            collected.bytes += self.content.size(&blob).unwrap_or(0);
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

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::MemoryContent;
    use crate::meta::ImageRecord;
    use crate::snapshots::MemorySnapshots;
    use crate::Digest;

    /// GC and disk usage over the fakes: what an image or a lease keeps stays, the rest goes.
    #[test]
    fn gc_keeps_what_images_and_leases_hold() {
        let dir = std::env::temp_dir().join(format!("berth-store-gc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open_with(&dir, Arc::new(MemoryContent::default()), Arc::new(MemorySnapshots::default())).unwrap();
        let blob = |text: &str| {
            let digest = Digest::of(text.as_bytes());
            store.content.put(&digest, text.as_bytes()).unwrap();
            digest
        };
        let (manifest, config, layer, leased, loose) = (blob("manifest"), blob("config"), blob("layer"), blob("leased"), blob("loose"));
        let tar = tar::Builder::new(Vec::new()).into_inner().unwrap();
        let (kept_snapshot, loose_snapshot) = (Digest::of(&tar), Digest::of(b"another chain"));
        for chain_id in [&kept_snapshot, &loose_snapshot] {
            store.snapshots.unpack(chain_id, &Digest::of(&tar), &mut &tar[..], &crate::snapshots::Budget::unlimited()).unwrap();
        }
        let record = ImageRecord {
            name: "example.com/kept:1".into(),
            manifest,
            config,
            layers: vec![layer],
            chain_ids: vec![kept_snapshot.clone()],
            index: None,
            size: 5,
            created: 0,
        };
        store.images.put(&record).unwrap();
        store.images.lease("test", std::slice::from_ref(&leased)).unwrap();
        let before = store.disk_usage().unwrap();
        assert_eq!((before.images, before.blobs, before.snapshots), (1, 5, 2));

        let collected = store.gc().unwrap();
        assert_eq!((collected.blobs, collected.snapshots, collected.bytes), (1, 1, 5));
        assert!(!store.content.contains(&loose) && store.content.contains(&leased));
        assert_eq!(store.snapshots.list().unwrap(), vec![kept_snapshot]);
        store.images.release("test").unwrap();
        assert_eq!(store.gc().unwrap().blobs, 1, "a released lease keeps nothing");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
