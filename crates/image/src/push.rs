//! Pushing an image from the [`Store`] to a registry (distribution-spec): the layers and the
//! config (each skipped when the registry has it already), then the manifest, byte for byte as
//! stored so its digest stays the image's. An image pulled through an index is pushed as its one
//! platform's manifest: the index's other manifests were never fetched.
//!
//! Blobs are streamed from the content store in chunks, never read whole into memory.

use crate::content::MAX_JSON;
use crate::manifest::{ManifestDoc, OCI_MANIFEST};
use crate::store::Store;
use crate::{Digest, Error, Reference, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use std::io::Read;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Basic credentials for the target's registry.
    pub credentials: Option<(String, String)>,
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
    let registry_error = |e: oci_client::errors::OciDistributionError| Error::Registry { reference: shown.clone(), reason: e.to_string() };
    let client = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(options.plain_http.clone()), ..Default::default() });
    let target = match name.tag() {
        Some(tag) => oci_client::Reference::with_tag(name.registry().to_string(), name.repository().to_string(), tag.to_string()),
        None => oci_client::Reference::with_tag(name.registry().to_string(), name.repository().to_string(), "latest".to_string()),
    };
    let auth = match &options.credentials {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => RegistryAuth::Anonymous,
    };
    client.auth(&target, &auth, RegistryOperation::Push).await.map_err(registry_error)?;
    for blob in record.layers.iter().chain([&record.config]) {
        if client.blob_exists(&target, &blob.to_string()).await.map_err(registry_error)? {
            continue;
        }
        let size = store.content.size(blob)?;
        let chunks = blob_chunks(store.content.reader(blob)?);
        client.push_blob_stream(&target, chunks, &blob.to_string(), Some(size)).await.map_err(registry_error)?;
    }
    let manifest = store.content.read_bounded(&record.manifest, MAX_JSON)?;
    // What the manifest says it is (docker's schema2 names itself; OCI may leave it out).
    let media: MediaType =
        serde_json::from_slice(&manifest).map_err(|e| Error::Invalid { what: format!("manifest of {shown}"), reason: e.to_string() })?;
    let _: ManifestDoc =
        serde_json::from_slice(&manifest).map_err(|e| Error::Invalid { what: format!("manifest of {shown}"), reason: e.to_string() })?;
    let content_type = media.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
    let header =
        content_type.parse().map_err(|_| Error::Invalid { what: format!("manifest of {shown}"), reason: format!("media type {content_type:?}") })?;
    client.push_manifest_raw(&target, manifest, header).await.map_err(registry_error)?;
    Ok(record.manifest)
}

/// The blob file as a stream of chunks, each read on the blocking pool.
fn blob_chunks(file: Box<dyn Read + Send>) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
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
            Ok(Err(e)) => Some((Err(oci_client::errors::OciDistributionError::IoError(e)), None)),
            Err(e) => Some((Err(oci_client::errors::OciDistributionError::GenericError(Some(e.to_string()))), None)),
        }
    })
}
