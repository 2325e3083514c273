//! Image metadata in an embedded database (redb, one file): images by name, and leases, the
//! blobs and snapshots a pull in progress needs kept from GC. The schema has a version; a database
//! from another version is refused with a clear error instead of being misread.

use crate::{Digest, Error, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

pub const SCHEMA_VERSION: u64 = 1;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// Leases named so belong to a pull or an import in progress (and die with the process doing it).
pub const TRANSIENT_LEASE_PREFIX: &str = "transient-";

/// One image as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized reference it was pulled or imported as.
    pub name: String,
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<Digest>,
    pub chain_ids: Vec<Digest>,
    /// The index the manifest was chosen from, when there was one (also kept in the content store).
    pub index: Option<Digest>,
    /// Compressed size of the layers.
    pub size: u64,
    /// Seconds since the epoch.
    pub created: u64,
}

impl ImageRecord {
    /// Every blob of the image in the content store.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.index.iter().chain([&self.manifest, &self.config]).chain(&self.layers)
    }
}

/// Opens (creating) a redb database whose `meta` table records `version`, with `tables` made; a
/// database written with another version is refused with a clear error instead of being misread.
pub fn open_versioned(path: &Path, version: u64, tables: &[TableDefinition<&str, &[u8]>]) -> Result<redb::Database> {
    let db = redb::Database::create(path).map_err(|e| Error::Internal { what: path.display().to_string(), reason: e.to_string() })?;
    let txn = db.begin_write().map_err(db_error)?;
    {
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let found = meta.get("schema").map_err(db_error)?.map(|v| v.value());
        match found {
            None => {
                meta.insert("schema", version).map_err(db_error)?;
            }
            Some(v) if v == version => {}
            Some(other) => {
                return Err(Error::Invalid {
                    what: path.display().to_string(),
                    reason: format!("schema version {other}; this berth reads version {version}"),
                })
            }
        }
        for table in tables {
            txn.open_table(*table).map_err(db_error)?;
        }
    }
    txn.commit().map_err(db_error)?;
    Ok(db)
}

/// A pull's or an import's lease, released when it ends, however it ends: what it stores is
/// leased before it is committed, so a concurrent GC keeps it.
pub(crate) struct Lease<'a> {
    images: &'a ImageDb,
    id: String,
}

impl<'a> Lease<'a> {
    pub(crate) fn new(images: &'a ImageDb) -> Result<Lease<'a>> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!("{TRANSIENT_LEASE_PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        images.lease(&id, &[])?;
        Ok(Lease { images, id })
    }

    pub(crate) fn add(&self, digests: &[Digest]) -> Result<()> {
        self.images.lease(&self.id, digests)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.images.release(&self.id);
    }
}

pub struct ImageDb {
    db: std::sync::Arc<redb::Database>,
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Internal { what: "image metadata".into(), reason: e.to_string() }
}

impl ImageDb {
    pub fn open(path: &Path) -> Result<ImageDb> {
        Ok(ImageDb { db: std::sync::Arc::new(open_versioned(path, SCHEMA_VERSION, &[IMAGES, LEASES])?) })
    }

    /// The database file itself: berth-containers keeps its containers' and pods' tables in it
    /// (one file for all of berthd's metadata, one schema version).
    pub fn database(&self) -> std::sync::Arc<redb::Database> {
        self.db.clone()
    }

    pub fn put(&self, record: &ImageRecord) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(db_error)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(IMAGES).map_err(db_error)?.insert(record.name.as_str(), json.as_slice()).map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    pub fn get(&self, name: &str) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(IMAGES).map_err(db_error)?;
        let value = table.get(name).map_err(db_error)?;
        value.map(|v| serde_json::from_slice(v.value()).map_err(db_error)).transpose()
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(IMAGES).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (_, value) = entry.map_err(db_error)?;
            out.push(serde_json::from_slice(value.value()).map_err(db_error)?);
        }
        Ok(out)
    }

    /// An image by name (`busybox` normalised to `docker.io/library/busybox:latest`), by id (its
    /// config digest, with or without `sha256:`, or a unique prefix of at least 12 of its hex
    /// digits), or by repo digest (`name@sha256:…`: that repository's image with that manifest).
    pub fn find(&self, key: &str) -> Result<Option<ImageRecord>> {
        if let Some(found) = self.get(key)? {
            return Ok(Some(found));
        }
        let hex = key.strip_prefix("sha256:").unwrap_or(key);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matching = self.list()?.into_iter().filter(|r| r.config.hex().starts_with(hex));
            if let Some(first) = matching.next() {
                if matching.any(|other| other.config != first.config) {
                    return Err(Error::Invalid { what: format!("image id {key}"), reason: "names more than one image; give more of it".into() });
                }
                return Ok(Some(first));
            }
        }
        let Ok(reference) = crate::Reference::parse(key) else { return Ok(None) };
        match reference.digest() {
            None => self.get(&reference.to_string()),
            Some(digest) => {
                if let Some(exact) = self.get(&reference.to_string())? {
                    return Ok(Some(exact));
                }
                let repository = reference.name();
                Ok(self.list()?.into_iter().find(|r| &r.manifest == digest && crate::Reference::parse(&r.name).is_ok_and(|n| n.name() == repository)))
            }
        }
    }

    /// Removes the image `name`; false if there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let removed = txn.open_table(IMAGES).map_err(db_error)?.remove(name).map_err(db_error)?.is_some();
        txn.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// Adds `digests` (blobs or chain ids) to the lease `id`, creating it.
    pub fn lease(&self, id: &str, digests: &[Digest]) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(LEASES).map_err(db_error)?;
            let mut held: BTreeSet<Digest> = match table.get(id).map_err(db_error)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(db_error)?,
                None => BTreeSet::new(),
            };
            held.extend(digests.iter().cloned());
            let json = serde_json::to_vec(&held).map_err(db_error)?;
            table.insert(id, json.as_slice()).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    pub fn release(&self, id: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(LEASES).map_err(db_error)?.remove(id).map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    /// Drops the leases of pulls and imports (at start-up, when none can be running); other
    /// leases (a container's, on its image) outlive their owner's restarts.
    pub fn release_transient(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(LEASES).map_err(db_error)?;
            let ids: Vec<String> = table
                .iter()
                .map_err(db_error)?
                .flatten()
                .map(|(k, _)| k.value().to_string())
                .filter(|id| id.starts_with(TRANSIENT_LEASE_PREFIX))
                .collect();
            for id in ids {
                table.remove(id.as_str()).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// Everything some image or lease keeps, read in one transaction.
    pub fn kept(&self) -> Result<BTreeSet<Digest>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let mut kept = BTreeSet::new();
        for entry in txn.open_table(IMAGES).map_err(db_error)?.iter().map_err(db_error)? {
            let (_, value) = entry.map_err(db_error)?;
            let record: ImageRecord = serde_json::from_slice(value.value()).map_err(db_error)?;
            kept.extend(record.blobs().cloned());
            kept.extend(record.chain_ids);
        }
        for entry in txn.open_table(LEASES).map_err(db_error)?.iter().map_err(db_error)? {
            let (_, value) = entry.map_err(db_error)?;
            let held: BTreeSet<Digest> = serde_json::from_slice(value.value()).map_err(db_error)?;
            kept.extend(held);
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_schema_version_is_refused() {
        let path = std::env::temp_dir().join(format!("berth-meta-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(ImageDb::open(&path).unwrap());
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema", SCHEMA_VERSION + 1).unwrap();
            txn.commit().unwrap();
        }
        let error = ImageDb::open(&path).err().expect("refused").to_string();
        assert!(error.contains("schema version 2"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn leases_keep_what_they_name_until_released() {
        let path = std::env::temp_dir().join(format!("berth-lease-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let db = ImageDb::open(&path).unwrap();
        let digest = Digest::of(b"layer");
        db.lease("pull-1", std::slice::from_ref(&digest)).unwrap();
        assert!(db.kept().unwrap().contains(&digest));
        db.release("pull-1").unwrap();
        assert!(db.kept().unwrap().is_empty());
        // A transient lease goes when its guard does, and all of them at start-up; a container's
        // lease stays through both.
        let other = Digest::of(b"container layer");
        db.lease("container-x", std::slice::from_ref(&other)).unwrap();
        {
            let lease = Lease::new(&db).unwrap();
            lease.add(std::slice::from_ref(&digest)).unwrap();
            assert!(db.kept().unwrap().contains(&digest));
        }
        assert!(!db.kept().unwrap().contains(&digest));
        let orphan = Lease::new(&db).unwrap();
        orphan.add(std::slice::from_ref(&digest)).unwrap();
        std::mem::forget(orphan);
        db.release_transient().unwrap();
        assert_eq!(db.kept().unwrap().into_iter().collect::<Vec<_>>(), [other]);
        std::fs::remove_file(&path).unwrap();
    }
}
