//! Reading an archive into the store (see the module doc of `archive`).

use super::image::{commit_image, synthesize_manifest};
use crate::content::MAX_JSON;
use crate::manifest::{ManifestDoc, Platform, REF_NAME};
use crate::meta::{ImageRecord, Lease};
use crate::store::Store;
use crate::unpack::decompress;
use crate::unpack::tar_limits::MetadataLimit;
use crate::{Digest, Error, Reference, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

/// The JSON files that describe an archive; everything else is content.
const DESCRIPTIONS: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];

/// The most files an archive may hold (an image's layers, configs and manifests are far fewer),
/// and the longest path one may have: what is kept per file stays bounded.
const MAX_FILES: usize = 100_000;
const MAX_PATH: usize = 4096;

/// What the archive held, by normalized path.
struct Contents {
    descriptions: BTreeMap<String, Vec<u8>>,
    files: BTreeMap<String, Digest>,
}

fn read_contents(store: &Store, lease: &Lease, reader: impl Read) -> Result<Contents> {
    // The outer tar is as hostile as a layer: its metadata headers are bounded the same way.
    let mut archive = tar::Archive::new(MetadataLimit::new(decompress::decoder(reader)?));
    let mut contents = Contents { descriptions: BTreeMap::new(), files: BTreeMap::new() };
    for entry in archive.entries().map_err(|e| Error::io("read archive", "<archive>", e))? {
        let mut entry = entry.map_err(|e| Error::io("read archive entry", "<archive>", e))?;
        if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let raw = entry.path_bytes();
        if raw.len() > MAX_PATH {
            return Err(Error::TooLarge { what: "a path in the archive".into(), limit: MAX_PATH as u64 });
        }
        let path = String::from_utf8_lossy(&raw).trim_start_matches("./").to_string();
        drop(raw);
        if contents.files.len() + contents.descriptions.len() >= MAX_FILES {
            return Err(Error::TooLarge { what: "the archive's file count".into(), limit: MAX_FILES as u64 });
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        if DESCRIPTIONS.contains(&path.as_str()) {
            // Refused by the size the header claims, before reading it.
            if size > MAX_JSON {
                return Err(Error::TooLarge { what: format!("{path} in the archive ({size} bytes)"), limit: MAX_JSON });
            }
            let mut bytes = Vec::new();
            (&mut entry).take(MAX_JSON).read_to_end(&mut bytes).map_err(|e| Error::io("read archive", &path, e))?;
            contents.descriptions.insert(path, bytes);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest = Digest::parse(&format!("sha256:{hex}"))
                .map_err(|_| Error::Invalid { what: path.clone(), reason: "not a sha256 blob name".into() })?;
            lease.add(std::slice::from_ref(&digest))?;
            if !store.content.contains(&digest) {
                let mut writer = store.content.writer(Some(&digest), Some(size))?;
                std::io::copy(&mut entry, &mut writer).map_err(|e| Error::io("import blob", &path, e))?;
                writer.commit()?;
            }
            contents.files.insert(path, digest);
        } else {
            let (digest, _) = store.content.ingest(&mut entry)?;
            lease.add(std::slice::from_ref(&digest))?;
            contents.files.insert(path, digest);
        }
    }
    Ok(contents)
}

/// Imports an OCI image layout or a docker-archive tarball (plain or compressed). Images are named
/// by the archive (full references in `org.opencontainers.image.ref.name` or `RepoTags`) or, for
/// an archive with a single image, by `name`.
pub fn import_archive(store: &Store, reader: impl Read, name: Option<&Reference>) -> Result<Vec<ImageRecord>> {
    // Everything read is leased until the images are committed, so a concurrent GC keeps it.
    let lease = Lease::new(&store.images)?;
    let contents = read_contents(store, &lease, reader)?;
    if let Some(index) = contents.descriptions.get("index.json") {
        import_oci(store, index, name)
    } else if let Some(manifest) = contents.descriptions.get("manifest.json") {
        import_docker(store, &contents, manifest, name)
    } else {
        Err(Error::Invalid { what: "archive".into(), reason: "neither an OCI layout (index.json) nor a docker archive (manifest.json)".into() })
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid { what: what.into(), reason: e.to_string() })
}

fn names_for(archive_names: Vec<String>, name: Option<&Reference>, images: usize) -> Result<Vec<String>> {
    if let Some(name) = name {
        if images != 1 {
            return Err(Error::Invalid { what: "archive".into(), reason: format!("holds {images} images; a name fits only one") });
        }
        return Ok(vec![name.to_string()]);
    }
    let mut out = Vec::new();
    for archive_name in archive_names {
        // A bare tag ("v1") is no name: it would silently become docker.io/library/v1.
        if !archive_name.contains(['/', ':']) {
            return Err(Error::Invalid { what: "archive".into(), reason: format!("names an image only by the tag {archive_name:?}; give a name") });
        }
        out.push(Reference::parse(&archive_name)?.to_string());
    }
    if out.is_empty() {
        return Err(Error::Invalid { what: "archive".into(), reason: "names no image; give a name".into() });
    }
    Ok(out)
}

fn import_oci(store: &Store, index: &[u8], name: Option<&Reference>) -> Result<Vec<ImageRecord>> {
    let index: ManifestDoc = parse(index, "index.json")?;
    let descriptors = index.manifests.unwrap_or_default();
    let mut records = Vec::new();
    for descriptor in &descriptors {
        let archive_name = descriptor.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned();
        let names = names_for(archive_name.into_iter().collect(), name, descriptors.len())?;
        let mut doc: ManifestDoc = store.content.read_json(&descriptor.digest, MAX_JSON)?;
        let mut manifest = descriptor.digest.clone();
        let mut index = None;
        if doc.manifests.is_some() {
            let chosen = doc.select(&Platform::host(), &format!("index {}", descriptor.digest))?;
            index = Some(manifest);
            manifest = chosen.digest.clone();
            doc = store.content.read_json(&manifest, MAX_JSON)?;
        }
        let invalid = |reason: &str| Error::Invalid { what: format!("manifest {manifest}"), reason: reason.into() };
        let config = doc.config.ok_or_else(|| invalid("no config"))?.digest;
        let layers: Vec<Digest> = doc.layers.ok_or_else(|| invalid("no layers"))?.into_iter().map(|l| l.digest).collect();
        for blob in layers.iter().chain([&config]) {
            if !store.content.contains(blob) {
                return Err(invalid(&format!("blob {blob} is not in the archive")));
            }
        }
        records.extend(commit_image(store, &names, &manifest, &config, &layers, index.as_ref())?);
    }
    Ok(records)
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn import_docker(store: &Store, contents: &Contents, manifest: &[u8], name: Option<&Reference>) -> Result<Vec<ImageRecord>> {
    let entries: Vec<DockerEntry> = parse(manifest, "manifest.json")?;
    let file = |path: &str| {
        contents
            .files
            .get(path.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| Error::Invalid { what: "manifest.json".into(), reason: format!("{path} is not in the archive") })
    };
    let mut records = Vec::new();
    for entry in &entries {
        let names = names_for(entry.repo_tags.clone().unwrap_or_default(), name, entries.len())?;
        let config = file(&entry.config)?;
        let layers = entry.layers.iter().map(|l| file(l)).collect::<Result<Vec<_>>>()?;
        let manifest = synthesize_manifest(store, &config, &layers)?;
        records.extend(commit_image(store, &names, &manifest, &config, &layers, None)?);
    }
    Ok(records)
}

/// Imports a root filesystem tarball (plain or compressed) as a one-layer image named `name`.
pub fn import_rootfs(store: &Store, reader: impl Read, name: &Reference) -> Result<ImageRecord> {
    let lease = Lease::new(&store.images)?;
    let (layer, _) = store.content.ingest(reader)?;
    lease.add(std::slice::from_ref(&layer))?;
    // The diff_id is the digest of the uncompressed stream, which the config must name.
    let mut digester = crate::digest::Digester::default();
    let mut decoder = decompress::decoder(store.content.reader(&layer)?)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = decoder.read(&mut buf).map_err(|e| Error::io("read rootfs", layer.to_string(), e))?;
        if n == 0 {
            break;
        }
        digester.update(&buf[..n]);
    }
    let diff_id = digester.finish();
    let architecture = Platform::host().architecture;
    let config = serde_json::json!({"architecture": architecture, "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}});
    let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::Invalid { what: "config".into(), reason: e.to_string() })?;
    let config = Digest::of(&config_bytes);
    store.content.put(&config, &config_bytes)?;
    let manifest = synthesize_manifest(store, &config, std::slice::from_ref(&layer))?;
    let mut records = commit_image(store, &[name.to_string()], &manifest, &config, &[layer], None)?;
    Ok(records.remove(0))
}
