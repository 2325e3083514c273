//! Manifests, indexes and image configs as a registry or an archive sends them: parsing, choosing
//! a platform and the layers' chain ids never panic, whatever the JSON holds.
#![no_main]
use berth_image::manifest::{ImageConfig, ManifestDoc, Platform};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<ManifestDoc>(data) {
        if doc.manifests.is_some() {
            let _ = doc.select(&Platform::host(), "fuzz");
        }
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(data) {
        let chain = berth_image::snapshots::chain_ids(&config.rootfs.diff_ids);
        assert_eq!(chain.len(), config.rootfs.diff_ids.len());
    }
});
