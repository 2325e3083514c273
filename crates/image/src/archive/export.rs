//! Writing images from the store as an OCI image layout tarball, which skopeo, podman and
//! `berth import` read back.

use crate::content::MAX_JSON;
use crate::manifest::{ManifestDoc, REF_NAME};
use crate::store::Store;
use crate::{Digest, Error, Result};
use std::collections::BTreeSet;
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
        let record = store.images.get(name)?.ok_or_else(|| Error::Invalid { what: name.clone(), reason: "no such image".into() })?;
        let doc: ManifestDoc = store.content.read_json(&record.manifest, MAX_JSON)?;
        let media: MediaType = store.content.read_json(&record.manifest, MAX_JSON)?;
        let blobs = [record.manifest.clone(), doc.config.map(|c| c.digest).unwrap_or(record.config)].into_iter().chain(record.layers.iter().cloned());
        for blob in blobs {
            if written.insert(blob.clone()) {
                append_blob(store, &mut archive, &blob)?;
            }
        }
        let size = std::fs::metadata(store.content.path(&record.manifest)).map_err(|e| Error::io("stat blob", store.content.path(&record.manifest), e))?.len();
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

fn append_blob<W: Write>(store: &Store, archive: &mut tar::Builder<W>, blob: &Digest) -> Result<()> {
    let path = store.content.path(blob);
    let mut file = store.content.open_blob(blob)?;
    archive.append_file(format!("blobs/sha256/{}", blob.hex()), &mut file).map_err(|e| Error::io("write archive", path, e))
}

fn append_bytes<W: Write>(archive: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive.append_data(&mut header, name, bytes).map_err(|e| Error::io("write archive", name, e))
}
