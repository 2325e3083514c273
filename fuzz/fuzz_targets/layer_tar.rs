//! The layer applier on arbitrary bytes (plain, gzip or zstd by their magic), into a scratch
//! directory: errors are fine; panics, hangs and anything written outside the scratch dir are not.
#![no_main]
use std::sync::atomic::{AtomicU64, Ordering};

static RUN: AtomicU64 = AtomicU64::new(0);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("berth-fuzz-layer-{}", std::process::id()));
    let target = base.join(RUN.fetch_add(1, Ordering::Relaxed).to_string()).join("layer");
    std::fs::create_dir_all(&target).unwrap();
    let _ = berth_image::unpack::apply_layer(data, &target, &berth_image::snapshots::Budget::unlimited());
    // Only the scratch directory may have changed.
    let entries: Vec<_> = std::fs::read_dir(target.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, ["layer"], "the layer wrote beside its directory");
    std::fs::remove_dir_all(&base).unwrap();
});
