//! Pushing an image from the [`Store`] to a registry (distribution-spec): the layers and the
//! config (each skipped when the registry has it already), then the manifest, byte for byte as
//! stored so its digest stays the image's. An image pulled through an index is pushed as its one
//! platform's manifest: the index's other manifests were never fetched.
//!
//! Blobs are streamed from the content store in chunks, never read whole into memory.

use crate::content::MAX_JSON;
use crate::distribution::{Access, Session, Timeouts};
use crate::manifest::{ManifestDoc, OCI_MANIFEST};
use crate::store::Store;
use crate::{Digest, Error, Reference, Result};
use std::io::Read;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Basic credentials for the target's registry.
    pub credentials: Option<(String, String)>,
    /// How long the registry may take to connect, to send the next bytes, or to answer.
    pub timeouts: Timeouts,
}

const CHUNK: usize = 1 << 20;

#[derive(serde::Deserialize)]
struct MediaType {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

/// Pushes the image named `name` (its normalized reference is also where it goes); returns the
/// manifest's digest.
pub async fn push(store: Arc<Store>, name: &Reference, options: &PushOptions) -> Result<Digest> {
    let shown = name.to_string();
    let record = store.images.get(&shown)?.ok_or_else(|| Error::NotFound(shown.clone()))?;
    let session = Session::new(
        name.registry(),
        name.repository(),
        &options.plain_http,
        options.credentials.clone(),
        Access::Push,
        shown.clone(),
        options.timeouts,
    )?;
    for blob in record.layers.iter().chain([&record.config]) {
        if session.blob_exists(&blob.to_string()).await? {
            continue;
        }
        let size = store.content.size(blob)?;
        let chunks = blob_chunks(store.content.reader(blob)?);
        session.push_blob(&blob.to_string(), size, reqwest::Body::wrap_stream(chunks)).await?;
    }
    let manifest = store.content.read_bounded(&record.manifest, MAX_JSON)?;
    // What the manifest says it is (docker's schema2 names itself; OCI may leave it out).
    let media: MediaType =
        serde_json::from_slice(&manifest).map_err(|e| Error::Invalid { what: format!("manifest of {shown}"), reason: e.to_string() })?;
    let _: ManifestDoc =
        serde_json::from_slice(&manifest).map_err(|e| Error::Invalid { what: format!("manifest of {shown}"), reason: e.to_string() })?;
    let content_type = media.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
    session.put_manifest(name.tag().unwrap_or("latest"), manifest.into(), &content_type).await?;
    Ok(record.manifest)
}

/// The blob file as a stream of chunks, each read on the blocking pool.
fn blob_chunks(file: Box<dyn Read + Send>) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match file.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            chunk.truncate(filled);
            Ok((chunk, file))
        })
        .await;
        match read {
            Ok(Ok((chunk, _))) if chunk.is_empty() => None,
            Ok(Ok((chunk, file))) => Some((Ok(bytes::Bytes::from(chunk)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    })
}
