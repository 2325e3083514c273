//! The image store on disk: `<root>/content` (blobs) and `<root>/snapshots` (unpacked layers).

use crate::content::ContentStore;
use crate::snapshots::Snapshots;
use crate::Result;
use std::path::Path;

pub struct Store {
    pub content: ContentStore,
    pub snapshots: Snapshots,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        Ok(Store { content: ContentStore::open(&root.join("content"))?, snapshots: Snapshots::open(&root.join("snapshots"))? })
    }
}
