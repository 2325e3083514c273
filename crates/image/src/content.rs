//! The content store: blobs by digest under `<root>/blobs/sha256/<hex>`. A blob is written under
//! `<root>/ingest/` while it streams in, verified against the digest and size it was announced with,
//! synced, and only then renamed into place, so a blob in `blobs/` is always whole and correct, and
//! a crash leaves at most a stray ingest file. JSON blobs (index, manifest, config) are read with a
//! size cap (CVE-2023-25153 class: an unbounded read of a hostile blob).

use crate::digest::Digester;
use crate::{Digest, Error, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Larger JSON documents than this are refused before they are read.
pub const MAX_JSON: u64 = 4 << 20;

pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating, 0700) the store at `root`.
    pub fn open(root: &Path) -> Result<ContentStore> {
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| Error::io("create content store", &dir, e))?;
        }
        Ok(ContentStore { root: root.to_path_buf() })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// A writer for the blob `expected` (of `size` bytes, when known); nothing is visible until
    /// [`BlobWriter::commit`] has verified it.
    pub fn writer(&self, expected: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        self.ingest_writer(Some(expected), size)
    }

    /// A new file in the ingest directory (a crash leaves it to [`ContentStore::clean_ingest`]).
    fn fresh_ingest_file(&self, stem: &str) -> Result<(File, PathBuf)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self.root.join("ingest").join(format!("{stem}.{}.{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| Error::io("create ingest file", &temp, e))?;
        Ok((file, temp))
    }

    /// Scratch space for the crate (an export's uncompressed layer); the caller removes it.
    pub(crate) fn scratch(&self) -> Result<(File, PathBuf)> {
        self.fresh_ingest_file("scratch")
    }

    /// A writer on a fresh ingest file, named after the expected digest when there is one.
    fn ingest_writer(&self, expected: Option<&Digest>, size: Option<u64>) -> Result<BlobWriter> {
        let (file, temp) = self.fresh_ingest_file(expected.map_or("any", |d| d.hex()))?;
        Ok(BlobWriter { file, temp, blobs: self.root.join("blobs/sha256"), expected: expected.cloned(), size, digester: Digester::default() })
    }

    /// Stores whatever `reader` yields under the digest it turns out to have (content from an
    /// archive names itself only by where it sits, so there is nothing to check it against).
    pub fn ingest(&self, mut reader: impl Read) -> Result<(Digest, u64)> {
        let mut writer = self.ingest_writer(None, None)?;
        let size = std::io::copy(&mut reader, &mut writer).map_err(|e| Error::io("ingest blob", &writer.temp, e))?;
        Ok((writer.commit()?, size))
    }

    /// Stores `bytes` as the blob with digest `expected`.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<()> {
        let mut writer = self.writer(expected, Some(bytes.len() as u64))?;
        writer.write_all(bytes).map_err(|e| Error::io("write blob", &writer.temp, e))?;
        writer.commit().map(|_| ())
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| Error::io("open blob", path, e))
    }

    /// Reads a JSON blob no larger than `limit` bytes.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest, limit: u64) -> Result<T> {
        let file = self.open_blob(digest)?;
        read_json_bounded(file, &format!("blob {digest}"), limit)
    }

    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("delete blob", path, e)),
            _ => Ok(()),
        }
    }

    /// Every blob in the store (names that are not digests are skipped).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("list blobs", &dir, e))?;
        Ok(entries.flatten().filter_map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()).collect())
    }

    /// Removes ingest files left by interrupted writers.
    pub fn clean_ingest(&self) -> Result<()> {
        let dir = self.root.join("ingest");
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("list ingest", &dir, e))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }
}

/// Reads at most `limit` bytes of JSON from `reader`; `what` names it in errors.
pub fn read_json_bounded<T: serde::de::DeserializeOwned>(reader: impl Read, what: &str, limit: u64) -> Result<T> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io("read", what, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge { what: what.into(), limit });
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid { what: what.into(), reason: e.to_string() })
}

/// A blob being written; see [`ContentStore::writer`]. Dropped without `commit`, it leaves nothing.
pub struct BlobWriter {
    file: File,
    temp: PathBuf,
    blobs: PathBuf,
    /// None: the blob is stored under whatever digest its content has.
    expected: Option<Digest>,
    size: Option<u64>,
    digester: Digester,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let (Some(size), Some(expected)) = (self.size, &self.expected) {
            if self.digester.len() + buf.len() as u64 > size {
                return Err(std::io::Error::other(format!("blob {expected} is longer than the {size} bytes announced")));
            }
        }
        let n = self.file.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Verifies size and digest, syncs, and moves the blob into place; returns its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let digester = std::mem::take(&mut self.digester);
        let written = digester.len();
        let actual = digester.finish();
        if let Some(expected) = &self.expected {
            if &actual != expected || self.size.is_some_and(|size| size != written) {
                return Err(Error::Mismatch { expected: expected.clone(), actual: written, actual_digest: actual });
            }
        }
        self.file.sync_all().map_err(|e| Error::io("sync blob", &self.temp, e))?;
        let target = self.blobs.join(actual.hex());
        std::fs::rename(&self.temp, &target).map_err(|e| Error::io("commit blob", &target, e))?;
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful commit the temp name no longer exists; otherwise this discards it.
        let _ = std::fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (ContentStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("berth-content-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        (ContentStore::open(&dir).unwrap(), dir)
    }

    #[test]
    fn verified_blobs_only() {
        let (store, dir) = store();
        let good = Digest::of(b"hello");
        store.put(&good, b"hello").unwrap();
        assert!(store.contains(&good));
        assert_eq!(std::fs::read(store.path(&good)).unwrap(), b"hello");
        // Wrong content, or more than announced: nothing committed, nothing left in ingest.
        let other = Digest::of(b"other");
        assert!(matches!(store.put(&other, b"hellO"), Err(Error::Mismatch { .. })));
        let mut writer = store.writer(&other, Some(2)).unwrap();
        assert!(writer.write_all(b"other").is_err());
        drop(writer);
        assert!(!store.contains(&other));
        assert_eq!(std::fs::read_dir(dir.join("ingest")).unwrap().count(), 0);
        assert_eq!(store.list().unwrap(), vec![good]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn json_reads_are_bounded() {
        let (store, dir) = store();
        let big = format!("[{}0]", "0,".repeat(1000));
        let digest = Digest::of(big.as_bytes());
        store.put(&digest, big.as_bytes()).unwrap();
        assert!(matches!(store.read_json::<serde_json::Value>(&digest, 100), Err(Error::TooLarge { .. })));
        assert_eq!(store.read_json::<Vec<u32>>(&digest, MAX_JSON).unwrap().len(), 1001);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
