//! Writing images from the store as an OCI image layout tarball or as a docker archive (`docker
//! save`'s format: `manifest.json`, the config, each layer as an uncompressed `<diff id>/layer.tar`),
//! which docker, skopeo, podman and `berth import` read back.

use crate::content::MAX_JSON;
use crate::digest::Digester;
use crate::manifest::{ImageConfig, ManifestDoc, REF_NAME};
use crate::store::Store;
use crate::unpack::decompress::decoder;
use crate::{Digest, Error, Result};
use std::collections::BTreeSet;
use std::io::Seek;
use std::io::Write;

#[derive(serde::Deserialize)]
struct MediaType {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

/// Writes the images `names` (with every blob they need, each once) as an OCI layout to `writer`.
pub fn export_oci_layout(store: &Store, names: &[String], writer: impl Write) -> Result<()> {
    let mut archive = tar::Builder::new(writer);
    let mut written = BTreeSet::new();
    let mut index = Vec::new();
    for name in names {
        let record = store.images.get(name)?.ok_or_else(|| Error::NotFound(name.clone()))?;
        let doc: ManifestDoc = store.content.read_json(&record.manifest, MAX_JSON)?;
        let media: MediaType = store.content.read_json(&record.manifest, MAX_JSON)?;
        let blobs = [record.manifest.clone(), doc.config.map(|c| c.digest).unwrap_or(record.config)].into_iter().chain(record.layers.iter().cloned());
        for blob in blobs {
            if written.insert(blob.clone()) {
                append_blob(store, &mut archive, &blob)?;
            }
        }
        let size = store.content.size(&record.manifest)?;
        index.push(serde_json::json!({
            "mediaType": media.media_type.unwrap_or_else(|| crate::manifest::OCI_MANIFEST.into()),
            "digest": record.manifest.to_string(),
            "size": size,
            "annotations": {REF_NAME: record.name},
        }));
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": index});
    append_bytes(&mut archive, "index.json", index.to_string().as_bytes())?;
    append_bytes(&mut archive, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    archive.into_inner().and_then(|mut w| w.flush()).map_err(|e| Error::io("write archive", "<output>", e))
}

/// Writes the images `names` as a docker archive to `writer`; layers shared by several images
/// are written once.
pub fn export_docker_archive(store: &Store, names: &[String], writer: impl Write) -> Result<()> {
    let mut archive = tar::Builder::new(writer);
    let mut written = BTreeSet::new();
    let mut manifest = Vec::new();
    for name in names {
        let record = store.images.get(name)?.ok_or_else(|| Error::NotFound(name.clone()))?;
        let config: ImageConfig = store.content.read_json(&record.config, MAX_JSON)?;
        if config.rootfs.diff_ids.len() != record.layers.len() {
            return Err(Error::Invalid { what: name.clone(), reason: "its config's diff_ids do not match its layers".into() });
        }
        let config_entry = format!("{}.json", record.config.hex());
        if written.insert(config_entry.clone()) {
            append_blob_as(store, &mut archive, &record.config, &config_entry)?;
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in record.layers.iter().zip(&config.rootfs.diff_ids) {
            let entry = format!("{}/layer.tar", diff_id.hex());
            if written.insert(entry.clone()) {
                append_uncompressed(store, &mut archive, layer, diff_id, &entry)?;
            }
            layers.push(entry);
        }
        manifest.push(serde_json::json!({"Config": config_entry, "RepoTags": [record.name], "Layers": layers}));
    }
    append_bytes(&mut archive, "manifest.json", serde_json::Value::Array(manifest).to_string().as_bytes())?;
    archive.into_inner().and_then(|mut w| w.flush()).map_err(|e| Error::io("write archive", "<output>", e))
}

/// A layer decompressed into scratch space (a tar entry needs its size first), checked against
/// its diff id on the way, then appended.
fn append_uncompressed<W: Write>(store: &Store, archive: &mut tar::Builder<W>, layer: &Digest, diff_id: &Digest, entry: &str) -> Result<()> {
    let (mut scratch, path) = store.scratch()?;
    let appended = (|| {
        let mut decoder = decoder(store.content.reader(layer)?)?;
        let mut hashing = HashingWriter { inner: &mut scratch, digester: Digester::default() };
        std::io::copy(&mut decoder, &mut hashing).map_err(|e| Error::io("decompress layer", layer.to_string(), e))?;
        let actual = hashing.digester.finish();
        if &actual != diff_id {
            return Err(Error::Invalid { what: format!("layer {layer}"), reason: format!("uncompresses to {actual}, not its diff id {diff_id}") });
        }
        scratch.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io("rewind", &path, e))?;
        archive.append_file(entry, &mut scratch).map_err(|e| Error::io("write archive", &path, e))
    })();
    let _ = std::fs::remove_file(&path);
    appended
}

struct HashingWriter<'a> {
    inner: &'a mut std::fs::File,
    digester: Digester,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn append_blob<W: Write>(store: &Store, archive: &mut tar::Builder<W>, blob: &Digest) -> Result<()> {
    append_blob_as(store, archive, blob, &format!("blobs/sha256/{}", blob.hex()))
}

fn append_blob_as<W: Write>(store: &Store, archive: &mut tar::Builder<W>, blob: &Digest, name: &str) -> Result<()> {
    append_reader(archive, name, store.content.size(blob)?, store.content.reader(blob)?)
}

fn append_bytes<W: Write>(archive: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    append_reader(archive, name, bytes.len() as u64, bytes)
}

fn append_reader<W: Write>(archive: &mut tar::Builder<W>, name: &str, size: u64, reader: impl std::io::Read) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    archive.append_data(&mut header, name, reader).map_err(|e| Error::io("write archive", name, e))
}
