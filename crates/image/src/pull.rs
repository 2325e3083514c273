//! Pulling an image from a registry (distribution-spec) into the [`Store`]: the manifest (through
//! an index, for the wanted platform), the config, then every layer in parallel. Each layer streams
//! into the content store and, at the same time, into the applier on a blocking thread, so a layer
//! is unpacked while it downloads. Nothing is committed unverified: manifests and the config are
//! checked against their digests before they are stored or read, a layer blob against its digest
//! and size, a snapshot against the config's diff_id. No store lock exists to be held across I/O:
//! blobs and snapshots are committed by rename; only a blob two pulls both want is fetched by the
//! first while the second waits for it.
//!
//! The registry protocol, its authentication and the bounds on what a registry sends are in
//! [`crate::distribution`].

use crate::content::MAX_JSON;
use crate::distribution::{Access, Session, Timeouts};
use crate::manifest::{Descriptor, ImageConfig, ManifestDoc, Platform};
use crate::meta::{ImageRecord, Lease};
use crate::snapshots::{chain_ids, Budget};
use crate::store::Store;
use crate::{Digest, Error, Reference, Result};
use std::io::Write;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Basic credentials for the reference's registry.
    pub credentials: Option<(String, String)>,
    /// Layers downloaded at once.
    pub concurrency: usize,
    /// Where the bytes downloaded per blob are counted, for whoever shows progress.
    pub progress: Option<Arc<Progress>>,
    /// Mirrors (`host[:port]`) of the reference's registry, tried in order before it (without
    /// credentials); the image keeps the name it was asked by.
    pub mirrors: Vec<String>,
    /// How long a registry may take to connect, to send the next bytes, or to answer.
    pub timeouts: Timeouts,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: Platform::host(),
            plain_http: Vec::new(),
            credentials: None,
            concurrency: 4,
            mirrors: Vec::new(),
            progress: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// Bytes downloaded so far per blob (digest → (done, total)): the latest counts only, so
/// nothing queues up however slowly they are read.
#[derive(Debug, Default)]
pub struct Progress(std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>);

impl Progress {
    fn set(&self, digest: &str, done: u64, total: u64) {
        if let Ok(mut blobs) = self.0.lock() {
            blobs.insert(digest.to_string(), (done, total));
        }
    }

    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        self.0.lock().map(|blobs| blobs.iter().map(|(d, (done, total))| (d.clone(), *done, *total)).collect()).unwrap_or_default()
    }
}

/// What a pull left in the store.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<Digest>,
    /// One snapshot per layer, bottom first.
    pub chain_ids: Vec<Digest>,
    /// Bytes downloaded by this pull (0 when everything was there).
    pub downloaded: u64,
}

struct Remote {
    session: Session,
    shown: String,
    progress: Option<Arc<Progress>>,
}

pub async fn pull(store: Arc<Store>, reference: &Reference, options: &PullOptions) -> Result<Pulled> {
    use std::sync::atomic::Ordering::Relaxed;
    let pulled = pull_mirrors_first(store.clone(), reference, options).await;
    store.pulls.total.fetch_add(1, Relaxed);
    match &pulled {
        Ok(pulled) => store.pulls.bytes.fetch_add(pulled.downloaded, Relaxed),
        Err(_) => store.pulls.failed.fetch_add(1, Relaxed),
    };
    pulled
}

async fn pull_mirrors_first(store: Arc<Store>, reference: &Reference, options: &PullOptions) -> Result<Pulled> {
    for mirror in &options.mirrors {
        // A mirror that fails (down, or without the image) only costs the time it took to say so;
        // what it did commit is reused by the next attempt.
        if let Ok(pulled) = pull_from(store.clone(), reference, mirror, options).await {
            return Ok(pulled);
        }
    }
    pull_from(store, reference, reference.registry(), options).await
}

/// One attempt, from `endpoint` (the reference's registry or a mirror of it).
async fn pull_from(store: Arc<Store>, reference: &Reference, endpoint: &str, options: &PullOptions) -> Result<Pulled> {
    let origin = endpoint == reference.registry();
    // Credentials go to the reference's own registry only, never to a mirror.
    let credentials = if origin { options.credentials.clone() } else { None };
    let shown = if origin { reference.to_string() } else { format!("{reference} (from mirror {endpoint})") };
    let session = Session::new(endpoint, reference.repository(), &options.plain_http, credentials, Access::Pull, shown.clone(), options.timeouts)?;
    let remote = Arc::new(Remote { session, shown, progress: options.progress.clone() });

    // Everything this pull stores is leased before it is committed, so a concurrent GC keeps it.
    let lease = Lease::new(&store.images)?;
    let (mut manifest_digest, bytes) = fetch_manifest(&remote, reference, reference.digest()).await?;
    lease.add(std::slice::from_ref(&manifest_digest))?;
    store.content.put(&manifest_digest, &bytes)?;
    let mut index = None;
    let mut doc: ManifestDoc = parse(&bytes, &remote.shown)?;
    if doc.manifests.is_some() {
        let chosen = doc.select(&options.platform, &remote.shown)?;
        let (digest, bytes) = fetch_manifest(&remote, reference, Some(&chosen.digest)).await?;
        lease.add(std::slice::from_ref(&digest))?;
        store.content.put(&digest, &bytes)?;
        doc = parse(&bytes, &remote.shown)?;
        index = Some(std::mem::replace(&mut manifest_digest, digest));
    }
    let invalid = |reason: &str| Error::Invalid { what: format!("manifest of {}", remote.shown), reason: reason.into() };
    let config_descriptor = doc.config.ok_or_else(|| invalid("no config"))?;
    let layers = doc.layers.ok_or_else(|| invalid("no layers"))?;
    if config_descriptor.size > MAX_JSON {
        return Err(Error::TooLarge { what: format!("config {}", config_descriptor.digest), limit: MAX_JSON });
    }
    let mut downloaded = 0;
    lease.add(std::slice::from_ref(&config_descriptor.digest))?;
    {
        let _claim = store.in_flight.claim(&config_descriptor.digest).await;
        if !store.content.contains(&config_descriptor.digest) {
            downloaded += download(&remote, &store, &config_descriptor, None).await?;
        }
    }
    let config: ImageConfig = store.content.read_json(&config_descriptor.digest, MAX_JSON)?;
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(invalid("the config's diff_ids do not match the layers"));
    }
    let chain = chain_ids(&config.rootfs.diff_ids);
    lease.add(&layers.iter().map(|l| l.digest.clone()).chain(chain.iter().cloned()).collect::<Vec<_>>())?;

    let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    // Shared by the layers: the image as a whole may unpack to at most the store's limit.
    let budget = Arc::new(store.image_budget());
    let mut tasks = tokio::task::JoinSet::new();
    for ((layer, chain_id), diff_id) in layers.iter().cloned().zip(chain.iter().cloned()).zip(config.rootfs.diff_ids.iter().cloned()) {
        let (remote, store, permits, budget) = (remote.clone(), store.clone(), permits.clone(), budget.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire().await;
            pull_layer(&remote, store, &layer, chain_id, diff_id, budget).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        // The first failure ends the pull; dropping the set aborts the other layers.
        downloaded += joined.map_err(|e| Error::Internal { what: remote.shown.clone(), reason: format!("layer task: {e}") })??;
    }
    let layer_digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    store.images.put(&ImageRecord {
        name: reference.to_string(),
        manifest: manifest_digest.clone(),
        config: config_descriptor.digest.clone(),
        layers: layer_digests.clone(),
        chain_ids: chain.clone(),
        index,
        size: layers.iter().map(|l| l.size).sum(),
        created,
    })?;
    Ok(Pulled { manifest: manifest_digest, config: config_descriptor.digest, layers: layer_digests, chain_ids: chain, downloaded })
}

fn registry_error(remote: &Remote, e: impl std::fmt::Display) -> Error {
    remote.session.error(e.to_string())
}

/// A manifest by tag (its digest is then what we compute) or by digest (which must match), capped.
async fn fetch_manifest(remote: &Remote, reference: &Reference, digest: Option<&Digest>) -> Result<(Digest, bytes::Bytes)> {
    let name = match (digest, reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, tag) => tag.unwrap_or("latest").to_string(),
    };
    let bytes = remote.session.manifest(&name).await?;
    let actual = Digest::of(&bytes);
    if let Some(expected) = digest {
        if &actual != expected {
            return Err(Error::Mismatch { expected: expected.clone(), actual: bytes.len() as u64, actual_digest: actual });
        }
    }
    Ok((actual, bytes))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid { what: format!("manifest of {what}"), reason: e.to_string() })
}

/// One layer: skipped when blob and snapshot exist; unpacked from the local blob when only the
/// snapshot is missing; otherwise downloaded into the content store and the applier at once.
async fn pull_layer(remote: &Remote, store: Arc<Store>, layer: &Descriptor, chain_id: Digest, diff_id: Digest, budget: Arc<Budget>) -> Result<u64> {
    // Another pull fetching this blob: wait for it, then use what it stored.
    let _claim = store.in_flight.claim(&layer.digest).await;
    let have_blob = store.content.contains(&layer.digest);
    let have_snapshot = store.snapshots.exists(&chain_id);
    if have_blob && have_snapshot {
        return Ok(0);
    }
    if have_blob {
        let digest = layer.digest.clone();
        return blocking(move || store.snapshots.unpack(&chain_id, &diff_id, &mut store.content.reader(&digest)?, &budget).map(|_| 0)).await;
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(32);
    let unpacker = (!have_snapshot).then(|| {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            store.snapshots.unpack(&chain_id, &diff_id, &mut ChannelReader { receiver, current: bytes::Bytes::new() }, &budget)
        })
    });
    let downloaded = download(remote, &store, layer, unpacker.is_some().then_some(sender)).await;
    if let Some(unpacker) = unpacker {
        // An unpack error (a hostile layer) explains a download that stopped early: report it first.
        unpacker.await.map_err(|e| registry_error(remote, format!("unpack task: {e}")))??;
    }
    downloaded
}

/// How often a blob download that broke off is resumed (HTTP Range) before the pull gives up.
const RESUMES: u32 = 3;

/// Streams the blob into the content store (verified, then committed), copying each chunk to
/// `tee` when given. A connection that breaks off is resumed from the byte where it stopped. Returns
/// the bytes downloaded.
async fn download(remote: &Remote, store: &Store, blob: &Descriptor, tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>) -> Result<u64> {
    let digest = blob.digest.to_string();
    let mut writer = store.content.writer(Some(&blob.digest), Some(blob.size))?;
    let mut written = 0u64;
    let mut resumes = 0;
    let mut body = remote.session.blob(&digest, 0).await?;
    loop {
        match body.chunk().await {
            Ok(Some(chunk)) => {
                writer.write_all(&chunk).map_err(|e| Error::io("write blob", &digest, e))?;
                written += chunk.len() as u64;
                if let Some(progress) = &remote.progress {
                    progress.set(&digest, written, blob.size);
                }
                if let Some(tee) = &tee {
                    if tee.send(chunk).await.is_err() {
                        return Err(registry_error(remote, format!("layer {digest} stopped unpacking")));
                    }
                }
            }
            Ok(None) if written >= blob.size => break,
            // Cut short (an error, or an early end): ask for the rest.
            broken => {
                resumes += 1;
                if resumes > RESUMES {
                    let why = match broken {
                        Err(e) => e,
                        _ => format!("ended after {written} of {} bytes", blob.size),
                    };
                    return Err(registry_error(remote, format!("blob {digest}: {why} (after {RESUMES} resumes)")));
                }
                body = remote.session.blob(&digest, written).await?;
            }
        }
    }
    drop(tee);
    writer.commit()?;
    Ok(blob.size)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Internal { what: "blocking task".into(), reason: e.to_string() })?
}

/// The applier's side of a download: a blocking `Read` over the chunks as they arrive.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
