//! Snapshots: the image's layers unpacked, one committed snapshot per chain id, and the writable
//! (active) snapshots containers run on. As containerd's snapshotters do, a snapshotter never
//! mounts anything itself: [`Snapshotter::prepare`] returns the mounts that make an active
//! snapshot a root filesystem, as data, and the caller mounts them where it wants. The invariant
//! every implementation keeps: a committed snapshot that exists is whole (its layer's diff_id
//! checked out before it became visible), and an active snapshot names only committed ones.
//!
//! [`OverlaySnapshots`] keeps them on disk for overlayfs; [`MemorySnapshots`] is the fake for
//! tests; both pass [`conformance`].

mod memory;
mod overlay;

pub use memory::MemorySnapshots;
pub use overlay::OverlaySnapshots;

use crate::unpack::Applied;
use crate::{Digest, Error, Result};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one image may still unpack, in uncompressed layer bytes, shared by its layers: a layer
/// that expands past it (a small gzip of zeros claiming a huge file) fails with
/// `Error::TooLarge` instead of filling the disk.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget { limit, used: AtomicU64::new(0) }
    }

    pub fn unlimited() -> Budget {
        Budget::new(u64::MAX)
    }

    /// Counts `n` more bytes; false once past the limit.
    fn take(&self, n: u64) -> bool {
        self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n) <= self.limit
    }

    fn exceeded(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit
    }

    /// The error for an image past its budget, when it is; otherwise `error` itself.
    pub(crate) fn explain(&self, error: Error) -> Error {
        match self.exceeded() {
            true => Error::TooLarge { what: "the image unpacked (max_image_size)".into(), limit: self.limit },
            false => error,
        }
    }
}

/// A layer's uncompressed stream, counted against a [`Budget`].
pub(crate) struct Budgeted<'a, R> {
    pub inner: R,
    pub budget: &'a Budget,
}

impl<R: Read> Read for Budgeted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.budget.take(n as u64) {
            return Err(std::io::Error::other(format!("the image unpacks to more than {} bytes", self.budget.limit)));
        }
        Ok(n)
    }
}

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

/// One mount(2) to perform, as containerd describes it: a filesystem type (`overlay`, `bind`),
/// a source, and options (flags such as `ro` and `rbind`, and the filesystem's own data such as
/// `lowerdir=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

pub trait Snapshotter: Send + Sync {
    /// Whether the committed snapshot `chain_id` exists.
    fn exists(&self, chain_id: &Digest) -> bool;

    /// Unpacks `layer` (compressed or not) as the committed snapshot `chain_id`, whose
    /// uncompressed stream must have the digest `diff_id` and fit in what is left of `budget`.
    /// None when it already exists.
    fn unpack(&self, chain_id: &Digest, diff_id: &Digest, layer: &mut dyn Read, budget: &Budget) -> Result<Option<Applied>>;

    /// Bytes the committed snapshot takes (`Error::Missing` when absent).
    fn usage(&self, chain_id: &Digest) -> Result<u64>;

    /// Every committed snapshot.
    fn list(&self) -> Result<Vec<Digest>>;

    /// Removes a committed snapshot; one that is not there is not an error. What keeps snapshots
    /// an active one stands on is the caller's (leases), as for every other blob.
    fn remove(&self, chain_id: &Digest) -> Result<()>;

    /// A new active snapshot `key` (a container's writable layer) over the committed snapshots
    /// `chain`, bottom first (an empty chain: a writable layer on nothing). Returns its mounts.
    fn prepare(&self, key: &str, chain: &[Digest]) -> Result<Vec<Mount>>;

    /// The mounts of the active snapshot `key`, as `prepare` returned them.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Removes the active snapshot (unmounted first, by the caller); idempotent.
    fn remove_active(&self, key: &str) -> Result<()>;

    /// Every active snapshot's key.
    fn active(&self) -> Result<Vec<String>>;

    /// Drops what interrupted unpacks left (only when no unpack runs, e.g. at start-up).
    fn clean_temp(&self) -> Result<()>;
}

/// An active snapshot's key becomes a file name: short, plain, and never `.` or `..`.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let plain = key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if key.is_empty() || key.len() > 128 || !plain || key.starts_with('.') {
        return Err(Error::Invalid { what: format!("snapshot key {key:?}"), reason: "use 1 to 128 of [A-Za-z0-9_.-], not starting with '.'".into() });
    }
    Ok(())
}

/// The behaviour every [`Snapshotter`] shares; each implementation's tests run it on an empty
/// one. Panics on the first difference.
pub fn conformance(snapshots: &dyn Snapshotter) {
    use std::collections::BTreeSet;
    assert!(snapshots.list().expect("list").is_empty() && snapshots.active().expect("active").is_empty(), "starts empty");
    let (lower, lower_diff) = layer(&[("etc/", b""), ("etc/hostname", b"lower\n"), ("bin/", b"")], true);
    let (upper, upper_diff) = layer(&[("etc/hostname", b"upper\n"), ("etc/.wh.gone", b"")], false);
    let chain = chain_ids(&[lower_diff.clone(), upper_diff.clone()]);

    // A layer whose content is not its diff_id leaves nothing.
    let wrong = snapshots.unpack(&chain[0], &upper_diff, &mut &lower[..], &Budget::unlimited());
    assert!(matches!(wrong, Err(Error::Invalid { .. })), "diff_id mismatch: {wrong:?}");
    assert!(!snapshots.exists(&chain[0]) && snapshots.list().expect("list").is_empty(), "nothing committed");

    // A layer past what the image may still unpack leaves nothing either.
    let small = Budget::new(1024);
    let over = snapshots.unpack(&chain[0], &lower_diff, &mut &lower[..], &small);
    assert!(matches!(over, Err(Error::TooLarge { limit: 1024, .. })), "over the budget: {over:?}");
    assert!(!snapshots.exists(&chain[0]) && snapshots.list().expect("list").is_empty(), "nothing committed");

    let applied = snapshots.unpack(&chain[0], &lower_diff, &mut &lower[..], &Budget::unlimited()).expect("unpack").expect("unpacked");
    assert_eq!((applied.diff_id, applied.entries, applied.bytes, applied.whiteouts), (lower_diff.clone(), 3, 6, 0));
    assert!(snapshots.exists(&chain[0]));
    assert!(snapshots.unpack(&chain[0], &lower_diff, &mut &lower[..], &Budget::unlimited()).expect("unpack again").is_none(), "already there");
    let applied = snapshots.unpack(&chain[1], &upper_diff, &mut &upper[..], &Budget::unlimited()).expect("unpack").expect("unpacked");
    assert_eq!(applied.whiteouts, 1);
    assert_eq!(snapshots.list().expect("list").into_iter().collect::<BTreeSet<_>>(), chain.iter().cloned().collect());
    assert!(snapshots.usage(&chain[0]).expect("usage") >= 6);
    assert!(matches!(snapshots.usage(&Digest::of(b"none")), Err(Error::Missing(_))));

    // Active snapshots: named once, only over committed snapshots, with stable mounts.
    let mounts = snapshots.prepare("ctr-1", &chain).expect("prepare");
    assert!(!mounts.is_empty());
    assert_eq!(snapshots.mounts("ctr-1").expect("mounts"), mounts);
    assert!(matches!(snapshots.prepare("ctr-1", &chain), Err(Error::Exists(_))), "a key is used once");
    let missing = snapshots.prepare("ctr-2", &[chain[0].clone(), Digest::of(b"none")]);
    assert!(matches!(missing, Err(Error::Missing(_))), "over a snapshot that does not exist: {missing:?}");
    for key in ["", "..", "../escape", "a/b", ".hidden"] {
        assert!(matches!(snapshots.prepare(key, &chain), Err(Error::Invalid { .. })), "key {key:?}");
    }
    let scratch = snapshots.prepare("ctr-3", &[]).expect("prepare on nothing");
    assert_ne!(scratch, mounts);
    assert_eq!(snapshots.active().expect("active").into_iter().collect::<BTreeSet<_>>(), ["ctr-1", "ctr-3"].map(String::from).into());
    for _ in 0..2 {
        snapshots.remove_active("ctr-1").expect("remove active");
    }
    assert!(matches!(snapshots.mounts("ctr-1"), Err(Error::Missing(_))));
    snapshots.remove_active("ctr-3").expect("remove active");

    for chain_id in chain.iter().chain(&chain) {
        snapshots.remove(chain_id).expect("remove (twice)");
    }
    snapshots.clean_temp().expect("clean temp");
    assert!(snapshots.list().expect("list").is_empty() && snapshots.active().expect("active").is_empty(), "ends empty");
}

/// A tar layer (gzipped when asked) of directories (names ending in `/`) and files; its diff_id.
fn layer(entries: &[(&str, &[u8])], gzip: bool) -> (Vec<u8>, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(if name.ends_with('/') { tar::EntryType::Directory } else { tar::EntryType::Regular });
        header.set_mode(if name.ends_with('/') { 0o755 } else { 0o644 });
        header.set_size(content.len() as u64);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, name, *content).expect("tar entry");
    }
    let tar = builder.into_inner().expect("tar");
    let diff_id = Digest::of(&tar);
    if !gzip {
        return (tar, diff_id);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &tar).expect("gzip");
    (encoder.finish().expect("gzip"), diff_id)
}
