//! The outer archive reader (`berth load`/`import`: OCI layouts and docker-archive tarballs) on
//! arbitrary bytes, into a store of memory blobs and snapshots: errors are fine; panics and hangs
//! are not, and neither is an image recorded without its blobs.
#![no_main]
use berth_image::content::MemoryContent;
use berth_image::snapshots::MemorySnapshots;
use std::sync::Arc;
use std::sync::OnceLock;

static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let root = ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("berth-fuzz-archive-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        root
    });
    // Fresh blobs and snapshots each run; a compressed layer may expand only so far.
    let store = berth_image::Store::open_with(root, Arc::new(MemoryContent::default()), Arc::new(MemorySnapshots::default()))
        .unwrap()
        .with_max_image_size(64 << 20);
    if let Ok(records) = berth_image::archive::import_archive(&store, data, None) {
        for record in records {
            assert!(store.content.contains(&record.manifest) && store.content.contains(&record.config), "{} recorded without its blobs", record.name);
            for chain_id in &record.chain_ids {
                assert!(store.snapshots.exists(chain_id), "{} recorded without its snapshot", record.name);
            }
            store.images.remove(&record.name).unwrap();
        }
    }
});
