//! The part of an image's config (OCI image-spec `config`, docker's `container_config` twin) that
//! says how to run it. Read from the content store with the store's JSON size cap.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfigFile {
    #[serde(default)]
    pub config: RunConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub healthcheck: Option<crate::health::ImageHealthcheck>,
    /// Paths the image wants on volumes (`VOLUME`): `{"/data": {}}`.
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    /// Ports the image says it listens on (`EXPOSE`): `{"80/tcp": {}}`; published by `-P`.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

impl RunConfig {
    pub fn load(store: &berth_image::Store, config: &berth_image::Digest) -> crate::Result<RunConfig> {
        let file: ImageConfigFile = store.content.read_json(config, berth_image::content::MAX_JSON)?;
        Ok(file.config)
    }
}
