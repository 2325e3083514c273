//! The content store: blobs by digest. The invariant every implementation keeps: a blob that is
//! listed, read or reported present is whole and has the digest it is stored under; a write
//! becomes visible only at [`BlobWriter::commit`], after its digest (and announced size) checked
//! out, and a writer dropped without committing leaves nothing. JSON blobs (index, manifest,
//! config) are read with a size cap (CVE-2023-25153 class: an unbounded read of a hostile blob).
//!
//! [`LocalContent`] keeps blobs on disk; [`MemoryContent`] is the fake for tests; both pass
//! [`conformance`].

mod local;
mod memory;

pub use local::LocalContent;
pub use memory::MemoryContent;

use crate::{Digest, Error, Result};
use std::io::{Read, Write};

/// Larger JSON documents than this are refused before they are read.
pub const MAX_JSON: u64 = 4 << 20;

pub trait ContentStore: Send + Sync {
    /// The blob's size, or `Error::Missing`.
    fn size(&self, digest: &Digest) -> Result<u64>;

    fn contains(&self, digest: &Digest) -> bool {
        self.size(digest).is_ok()
    }

    /// Reads the blob (`Error::Missing` when absent).
    fn reader(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;

    /// A writer for a blob that must have the digest `expected` (and `size` bytes, when known);
    /// with no `expected`, the blob is stored under whatever digest its content has.
    fn writer(&self, expected: Option<&Digest>, size: Option<u64>) -> Result<Box<dyn BlobWriter>>;

    /// Removes the blob; a blob that is not there is not an error.
    fn delete(&self, digest: &Digest) -> Result<()>;

    /// Every committed blob.
    fn list(&self) -> Result<Vec<Digest>>;

    /// Drops what interrupted writers left (only when no writer runs, e.g. at start-up).
    fn clean_ingest(&self) -> Result<()>;
}

/// A blob being written; see [`ContentStore::writer`].
pub trait BlobWriter: Write + Send {
    /// Verifies size and digest and makes the blob visible; returns its digest.
    fn commit(self: Box<Self>) -> Result<Digest>;
}

impl dyn ContentStore + '_ {
    /// Stores `bytes` as the blob with digest `expected`.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<()> {
        let mut writer = self.writer(Some(expected), Some(bytes.len() as u64))?;
        writer.write_all(bytes).map_err(|e| Error::io("write blob", expected.to_string(), e))?;
        writer.commit().map(|_| ())
    }

    /// Stores whatever `reader` yields under the digest it turns out to have (content from an
    /// archive names itself only by where it sits, so there is nothing to check it against).
    pub fn ingest(&self, mut reader: impl Read) -> Result<(Digest, u64)> {
        let mut writer = self.writer(None, None)?;
        let size = std::io::copy(&mut reader, &mut writer).map_err(|e| Error::io("ingest blob", "<stream>", e))?;
        Ok((writer.commit()?, size))
    }

    /// Reads a blob of at most `limit` bytes whole.
    pub fn read_bounded(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        read_bounded(self.reader(digest)?, &format!("blob {digest}"), limit)
    }

    /// Reads a JSON blob no larger than `limit` bytes.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest, limit: u64) -> Result<T> {
        read_json_bounded(self.reader(digest)?, &format!("blob {digest}"), limit)
    }
}

/// Reads at most `limit` bytes from `reader`; `what` names it in errors.
pub fn read_bounded(reader: impl Read, what: &str, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io("read", what, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge { what: what.into(), limit });
    }
    Ok(bytes)
}

/// Reads at most `limit` bytes of JSON from `reader`; `what` names it in errors.
pub fn read_json_bounded<T: serde::de::DeserializeOwned>(reader: impl Read, what: &str, limit: u64) -> Result<T> {
    let bytes = read_bounded(reader, what, limit)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid { what: what.into(), reason: e.to_string() })
}

/// The behaviour every [`ContentStore`] shares; each implementation's tests run it on an empty
/// store. Panics on the first difference.
pub fn conformance(store: &dyn ContentStore) {
    assert!(store.list().expect("list").is_empty(), "starts empty");
    let hello = Digest::of(b"hello");
    assert!(!store.contains(&hello));
    assert!(matches!(store.size(&hello), Err(Error::Missing(_))), "size of an absent blob");
    assert!(matches!(store.reader(&hello).err(), Some(Error::Missing(_))), "reader of an absent blob");

    store.put(&hello, b"hello").expect("put");
    assert!(store.contains(&hello));
    assert_eq!(store.size(&hello).expect("size"), 5);
    assert_eq!(store.read_bounded(&hello, 5).expect("read"), b"hello");
    assert!(matches!(store.read_bounded(&hello, 4), Err(Error::TooLarge { .. })), "reads are bounded");
    store.put(&hello, b"hello").expect("putting a blob again is fine");

    // Wrong content, more than announced, less than announced, or never committed: nothing.
    let other = Digest::of(b"other");
    assert!(matches!(store.put(&other, b"othe!"), Err(Error::Mismatch { .. })), "content not matching its digest");
    let mut writer = store.writer(Some(&other), Some(2)).expect("writer");
    assert!(writer.write_all(b"other").is_err(), "more than announced");
    drop(writer);
    let mut writer = store.writer(Some(&other), Some(6)).expect("writer");
    writer.write_all(b"other").expect("write");
    assert!(matches!(writer.commit(), Err(Error::Mismatch { .. })), "less than announced");
    let mut writer = store.writer(Some(&other), None).expect("writer");
    writer.write_all(b"other").expect("write");
    drop(writer);
    assert!(!store.contains(&other), "a writer dropped uncommitted leaves nothing");
    assert_eq!(store.list().expect("list"), vec![hello.clone()]);

    // Ingest names the blob by its content.
    let (digest, size) = store.ingest(&b"whatever it is"[..]).expect("ingest");
    assert_eq!((digest.clone(), size), (Digest::of(b"whatever it is"), 14));
    let mut listed = store.list().expect("list");
    listed.sort_by_key(|d| d.to_string());
    let mut expected = vec![hello.clone(), digest.clone()];
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(listed, expected);

    // JSON reads are bounded too.
    let json = format!("[{}0]", "0,".repeat(1000));
    let json_digest = Digest::of(json.as_bytes());
    store.put(&json_digest, json.as_bytes()).expect("put json");
    assert!(matches!(store.read_json::<serde_json::Value>(&json_digest, 100), Err(Error::TooLarge { .. })));
    assert_eq!(store.read_json::<Vec<u32>>(&json_digest, MAX_JSON).expect("read json").len(), 1001);

    // Deletes are idempotent; ingest leftovers go.
    for blob in [&hello, &digest, &json_digest] {
        store.delete(blob).expect("delete");
        store.delete(blob).expect("delete again");
    }
    store.clean_ingest().expect("clean ingest");
    assert!(store.list().expect("list").is_empty(), "ends empty");
}
