//! The parts of OCI / docker schema2 indexes, manifests and image configs that a pull needs,
//! read from verified blobs. Unknown fields are ignored; missing required ones are errors.

use crate::{Digest, Error, Result};
use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What a pull accepts when it asks for a manifest by tag.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// The annotation an OCI layout's index names an image by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, named as images name it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: None }
    }

    /// An index entry for this platform: os and architecture equal, variant equal when we ask for one.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os && self.architecture == candidate.architecture && (self.variant.is_none() || self.variant == candidate.variant)
    }
}

/// An index (OCI) or manifest list (docker), or a single image manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestDoc {
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

impl ManifestDoc {
    /// The index entry for `platform`.
    pub fn select(&self, platform: &Platform, what: &str) -> Result<Descriptor> {
        let manifests = self.manifests.as_deref().unwrap_or(&[]);
        manifests.iter().find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p))).cloned().ok_or_else(|| Error::Invalid {
            what: what.into(),
            reason: format!(
                "no manifest for {}/{}{}",
                platform.os,
                platform.architecture,
                platform.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default()
            ),
        })
    }
}
