//! Blobs on disk under `<root>/blobs/sha256/<hex>`. A blob is written under `<root>/ingest/`
//! while it streams in, verified against the digest and size it was announced with, synced, and
//! only then renamed into place, so a blob in `blobs/` is always whole and correct, and a crash
//! leaves at most a stray ingest file.

use super::{BlobWriter, ContentStore};
use crate::digest::Digester;
use crate::{Digest, Error, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct LocalContent {
    root: PathBuf,
}

impl LocalContent {
    /// Opens (creating, 0700) the store at `root`.
    pub fn open(root: &Path) -> Result<LocalContent> {
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| Error::io("create content store", &dir, e))?;
        }
        Ok(LocalContent { root: root.to_path_buf() })
    }

    /// Where the blob's file is (or would be); for tests and tools that look at the disk.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }
}

impl ContentStore for LocalContent {
    fn size(&self, digest: &Digest) -> Result<u64> {
        match std::fs::metadata(self.path(digest)) {
            Ok(meta) if meta.is_file() => Ok(meta.len()),
            Ok(_) => Err(Error::Missing(format!("blob {digest}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing(format!("blob {digest}"))),
            Err(e) => Err(Error::io("stat blob", self.path(digest), e)),
        }
    }

    fn reader(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.path(digest);
        match File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing(format!("blob {digest}"))),
            Err(e) => Err(Error::io("open blob", path, e)),
        }
    }

    fn writer(&self, expected: Option<&Digest>, size: Option<u64>) -> Result<Box<dyn BlobWriter>> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let stem = expected.map_or("any", |d| d.hex());
        let temp = self.root.join("ingest").join(format!("{stem}.{}.{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| Error::io("create ingest file", &temp, e))?;
        Ok(Box::new(LocalWriter {
            file,
            temp,
            blobs: self.root.join("blobs/sha256"),
            expected: expected.cloned(),
            size,
            digester: Digester::default(),
        }))
    }

    fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("delete blob", path, e)),
            _ => Ok(()),
        }
    }

    /// Names that are not digests are skipped.
    fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("list blobs", &dir, e))?;
        Ok(entries.flatten().filter_map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()).collect())
    }

    fn clean_ingest(&self) -> Result<()> {
        let dir = self.root.join("ingest");
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("list ingest", &dir, e))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }
}

struct LocalWriter {
    file: File,
    temp: PathBuf,
    blobs: PathBuf,
    /// None: the blob is stored under whatever digest its content has.
    expected: Option<Digest>,
    size: Option<u64>,
    digester: Digester,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(size) = self.size {
            if self.digester.len() + buf.len() as u64 > size {
                return Err(std::io::Error::other(format!("blob is longer than the {size} bytes announced")));
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

impl BlobWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<Digest> {
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

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // After a successful commit the temp name no longer exists; otherwise this discards it.
        let _ = std::fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = std::env::temp_dir().join(format!("berth-content-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LocalContent::open(&dir).unwrap();
        super::super::conformance(&store);
        // Nothing left in ingest by the failed and dropped writers.
        assert_eq!(std::fs::read_dir(dir.join("ingest")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
