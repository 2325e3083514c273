//! Turning a config and its layer blobs (already in the content store) into snapshots and an image
//! record: what every import ends with.

use crate::content::MAX_JSON;
use crate::manifest::ImageConfig;
use crate::meta::{ImageRecord, Lease};
use crate::snapshots::chain_ids;
use crate::store::Store;
use crate::{Digest, Error, Result};

/// Unpacks `layers` (blob digests, bottom first) as the snapshots `config` names by diff_id and
/// records the image as each of `names` (`index`: the index the manifest was chosen from).
pub(super) fn commit_image(
    store: &Store,
    names: &[String],
    manifest: &Digest,
    config: &Digest,
    layers: &[Digest],
    index: Option<&Digest>,
) -> Result<Vec<ImageRecord>> {
    let parsed: ImageConfig = store.content.read_json(config, MAX_JSON)?;
    if parsed.rootfs.diff_ids.len() != layers.len() {
        return Err(Error::Invalid {
            what: format!("image config {config}"),
            reason: format!("{} diff_ids for {} layers", parsed.rootfs.diff_ids.len(), layers.len()),
        });
    }
    let chain = chain_ids(&parsed.rootfs.diff_ids);
    // Leased before the snapshots exist: a GC between an unpack and the record would take them.
    let lease = Lease::new(&store.images)?;
    lease.add(&[manifest, config].into_iter().chain(layers).chain(&chain).cloned().collect::<Vec<_>>())?;
    let mut size = 0;
    let budget = store.image_budget();
    for ((layer, chain_id), diff_id) in layers.iter().zip(&chain).zip(&parsed.rootfs.diff_ids) {
        size += store.content.size(layer)?;
        store.snapshots.unpack(chain_id, diff_id, &mut store.content.reader(layer)?, &budget)?;
    }
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut records = Vec::new();
    for name in names {
        let record = ImageRecord {
            name: name.clone(),
            manifest: manifest.clone(),
            config: config.clone(),
            layers: layers.to_vec(),
            chain_ids: chain.clone(),
            index: index.cloned(),
            size,
            created,
        };
        store.images.put(&record)?;
        records.push(record);
    }
    Ok(records)
}

/// An OCI image manifest for a config and layers that came without one (docker-archive, rootfs).
pub(super) fn synthesize_manifest(store: &Store, config: &Digest, layers: &[Digest]) -> Result<Digest> {
    let descriptor = |digest: &Digest, media_type: &str| -> Result<serde_json::Value> {
        let size = store.content.size(digest)?;
        Ok(serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}))
    };
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let mut head = [0u8; 4];
        let n = store.content.reader(layer)?.read(&mut head).unwrap_or(0);
        let media_type = match &head[..n] {
            [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        layer_descriptors.push(descriptor(layer, media_type)?);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json")?,
        "layers": layer_descriptors,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid { what: "manifest".into(), reason: e.to_string() })?;
    let digest = Digest::of(&bytes);
    store.content.put(&digest, &bytes)?;
    Ok(digest)
}
