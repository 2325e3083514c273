//! The content store's fake: blobs in a map, for tests of the logic above the store (GC, image
//! commits) without a disk layout. Keeps the same invariant as [`super::LocalContent`].

use super::{BlobWriter, ContentStore};
use crate::digest::Digester;
use crate::{Digest, Error, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

type Blobs = Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>;

#[derive(Default)]
pub struct MemoryContent {
    blobs: Blobs,
}

impl MemoryContent {
    fn blobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        self.blobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ContentStore for MemoryContent {
    fn size(&self, digest: &Digest) -> Result<u64> {
        self.blobs().get(&digest.to_string()).map(|b| b.len() as u64).ok_or_else(|| Error::Missing(format!("blob {digest}")))
    }

    fn reader(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let blob = self.blobs().get(&digest.to_string()).cloned().ok_or_else(|| Error::Missing(format!("blob {digest}")))?;
        Ok(Box::new(std::io::Cursor::new(blob.as_ref().clone())))
    }

    fn writer(&self, expected: Option<&Digest>, size: Option<u64>) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(MemoryWriter { blobs: self.blobs.clone(), bytes: Vec::new(), expected: expected.cloned(), size }))
    }

    fn delete(&self, digest: &Digest) -> Result<()> {
        self.blobs().remove(&digest.to_string());
        Ok(())
    }

    fn list(&self) -> Result<Vec<Digest>> {
        self.blobs().keys().map(|k| Digest::parse(k)).collect()
    }

    /// Uncommitted writes live only in their writers: nothing to clean.
    fn clean_ingest(&self) -> Result<()> {
        Ok(())
    }
}

struct MemoryWriter {
    blobs: Blobs,
    bytes: Vec<u8>,
    expected: Option<Digest>,
    size: Option<u64>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size.is_some_and(|size| (self.bytes.len() + buf.len()) as u64 > size) {
            return Err(std::io::Error::other("blob is longer than announced"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for MemoryWriter {
    fn commit(self: Box<Self>) -> Result<Digest> {
        let mut digester = Digester::default();
        digester.update(&self.bytes);
        let actual = digester.finish();
        if let Some(expected) = &self.expected {
            if &actual != expected || self.size.is_some_and(|size| size != self.bytes.len() as u64) {
                return Err(Error::Mismatch { expected: expected.clone(), actual: self.bytes.len() as u64, actual_digest: actual });
            }
        }
        self.blobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(actual.to_string(), Arc::new(self.bytes));
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance(&super::MemoryContent::default());
    }
}
