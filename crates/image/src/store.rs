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
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| crate::Error::io("create image store", root, e))?;
        Ok(Store {
            content: ContentStore::open(&root.join("content"))?,
            snapshots: Snapshots::open(&root.join("snapshots"))?,
            images: ImageDb::open(&root.join("meta.redb"))?,
        })
    }

    /// After a crash (kill -9 of its owner): drops the half-written blobs and snapshots and the
    /// leases of pulls that died. Only for the store's one owner, before it starts pulling.
    pub fn recover(&self) -> Result<()> {
        self.content.clean_ingest()?;
        self.snapshots.clean_temp()?;
        self.images.release_all()
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

use std::os::unix::fs::DirBuilderExt;
