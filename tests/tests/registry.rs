//! Pulls from Debian's docker-registry on 127.0.0.1 (a private instance per test) into a berth
//! image store: images built here as OCI layouts and pushed with skopeo, pulled back, and the
//! unpacked snapshots compared file by file with the trees that went in.

use berth_image::manifest::Platform;
use berth_image::pull::{pull, PullOptions, Pulled};
use berth_image::{Reference, Store};
use berth_testsupport::{
    assert_same_tree, busybox_registry, host_architecture, layer_dir, tar_of, wait_for_partial_blob, write_layout, Fault, FaultyProxy, LayoutImage,
    Registry, TestEnv,
};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

/// Pulls `reference` from the plain-HTTP registry at `address` into `store`.
fn pull_from(address: &str, store: &Arc<Store>, reference: &str, platform: Option<Platform>) -> berth_image::Result<Pulled> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reference = Reference::parse(reference).unwrap();
    let options = PullOptions { plain_http: vec![address.to_string()], platform: platform.unwrap_or_else(Platform::host), ..Default::default() };
    runtime.block_on(pull(store.clone(), &reference, &options))
}

#[test]
fn an_image_pushed_to_a_registry_pulls_back_file_for_file() {
    let env = TestEnv::new("pull");
    let registry = Registry::start(&env.dir);
    let rootfs = env.bundle.dir.join("rootfs");
    // A second layer that deletes a file (whiteout), hides a directory (opaque) and adds one.
    let top = env.dir.join("top");
    std::fs::create_dir_all(top.join("bin")).unwrap();
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("bin/.wh.vi"), "").unwrap();
    std::fs::write(top.join("etc/.wh..wh..opq"), "").unwrap();
    std::fs::write(top.join("etc/motd"), "pulled\n").unwrap();
    let layout = write_layout(
        &env.dir.join("layout"),
        "v1",
        &[LayoutImage { architecture: host_architecture(), layers: vec![tar_of(&rootfs), tar_of(&top)], zstd: false }],
    );
    registry.push(&layout, "v1", "test/busybox");

    let store_root = env.dir.join("store");

    let store = Arc::new(Store::open(&store_root).unwrap());
    let name = format!("{}/test/busybox:v1", registry.address);
    let pulled = pull_from(&registry.address, &store, &name, None).unwrap();
    assert_eq!(pulled.chain_ids.len(), 2);
    assert!(pulled.downloaded > 500_000, "busybox came over the wire: {}", pulled.downloaded);
    assert_same_tree(&rootfs, &layer_dir(&store_root, &pulled.chain_ids[0]));
    let upper = layer_dir(&store_root, &pulled.chain_ids[1]);
    assert_eq!(std::fs::read_to_string(upper.join("etc/motd")).unwrap(), "pulled\n");
    let whiteout = std::fs::symlink_metadata(upper.join("bin/vi")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&whiteout.file_type()) && whiteout.rdev() == 0);
    for blob in [&pulled.manifest, &pulled.config].into_iter().chain(&pulled.layers) {
        assert!(store.content.contains(blob), "{blob} is in the content store");
    }

    // Everything is there now: a second pull, by tag or by digest, downloads nothing.
    let again = pull_from(&registry.address, &store, &name, None).unwrap();
    assert_eq!((again.downloaded, &again.manifest), (0, &pulled.manifest));
    let by_digest = pull_from(&registry.address, &store, &format!("{}/test/busybox@{}", registry.address, pulled.manifest), None).unwrap();
    assert_eq!(by_digest.chain_ids, pulled.chain_ids);

    // Both names are recorded; GC keeps what either needs, and everything once both are gone.
    let names: Vec<String> = store.images.list().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let record = store.images.get(&name).unwrap().expect("recorded by its normalized name");
    assert_eq!((record.manifest, record.chain_ids.clone()), (pulled.manifest.clone(), pulled.chain_ids.clone()));
    assert_eq!(store.gc().unwrap(), berth_image::store::Collected::default(), "nothing unreferenced");
    assert!(store.images.remove(&name).unwrap());
    assert_eq!(store.gc().unwrap().blobs, 0, "the by-digest image still needs every blob");
    for other in names.iter().filter(|n| **n != name) {
        store.images.remove(other).unwrap();
    }
    let collected = store.gc().unwrap();
    assert_eq!((collected.blobs, collected.snapshots), (4, 2), "manifest, config, two layers; two snapshots");
    assert!(store.content.list().unwrap().is_empty() && store.snapshots.list().unwrap().is_empty());
    drop(store);
    env.leak_check();
}

#[test]
fn a_multi_arch_index_gives_the_platform_asked_for() {
    let env = TestEnv::new("pull-index");
    let registry = Registry::start(&env.dir);
    let images: Vec<LayoutImage> = ["amd64", "arm64"]
        .into_iter()
        .map(|arch| {
            let dir = env.dir.join(arch);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("arch"), arch).unwrap();
            LayoutImage { architecture: arch, layers: vec![tar_of(&dir)], zstd: false }
        })
        .collect();
    let layout = write_layout(&env.dir.join("layout"), "multi", &images);
    registry.push(&layout, "multi", "test/multi");
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let name = format!("{}/test/multi:multi", registry.address);
    for arch in ["arm64", "amd64"] {
        let platform = Platform { os: "linux".into(), architecture: arch.into(), variant: None };
        let pulled = pull_from(&registry.address, &store, &name, Some(platform)).unwrap();
        assert_eq!(std::fs::read_to_string(layer_dir(&store_root, &pulled.chain_ids[0]).join("arch")).unwrap(), arch);
    }
    let s390x = Platform { os: "linux".into(), architecture: "s390x".into(), variant: None };
    let error = pull_from(&registry.address, &store, &name, Some(s390x)).unwrap_err().to_string();
    assert!(error.contains("no manifest for linux/s390x"), "{error}");
    drop(store);
    env.leak_check();
}

#[test]
fn unknown_images_and_absent_registries_are_clear_errors() {
    let env = TestEnv::new("pull-errors");
    let registry = Registry::start(&env.dir);
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let error = pull_from(&registry.address, &store, &format!("{}/no/such:image", registry.address), None).unwrap_err().to_string();
    assert!(error.contains("no/such") && error.contains("registry"), "{error}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = pull_from(&registry.address, &store, &format!("127.0.0.1:{closed}/x:y"), None).unwrap_err().to_string();
    assert!(error.contains("registry") && error.contains("Connection refused"), "the cause is named: {error}");
    assert!(store.content.list().unwrap().is_empty(), "nothing stored");
    drop(store);
    env.leak_check();
}

#[test]
fn a_loopback_registry_is_reached_over_plain_http_without_being_listed() {
    let env = TestEnv::new("pull-loopback");
    let registry = busybox_registry(&env);
    let store = Arc::new(Store::open(&env.dir.join("store")).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // No plain-HTTP list: HTTPS is tried first, then plain HTTP, as docker does for 127.0.0.0/8.
    let reference = Reference::parse(&format!("{}/test/busybox:v1", registry.address)).unwrap();
    let pulled = runtime.block_on(pull(store.clone(), &reference, &PullOptions::default())).unwrap();
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&env.dir.join("store"), &pulled.chain_ids[0]));
    drop(store);
    env.leak_check();
}

#[test]
fn a_corrupted_layer_is_never_committed() {
    let env = TestEnv::new("pull-corrupt");
    let registry = busybox_registry(&env);
    let proxy = FaultyProxy::start(&registry.address, Fault::CorruptByte);
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let error = pull_from(&proxy.address, &store, &format!("{}/test/busybox:v1", proxy.address), None).unwrap_err().to_string();
    assert!(proxy.damaged.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the proxy damaged the layer");
    assert!(!error.is_empty());
    // Manifest and config may be stored (they were intact); the layer and its snapshot are not.
    let big_blobs: Vec<_> = store.content.list().unwrap().into_iter().filter(|d| store.content.size(d).unwrap() > 100_000).collect();
    assert!(big_blobs.is_empty(), "a corrupt layer was committed: {big_blobs:?} ({error})");
    assert!(store.snapshots.list().unwrap().is_empty(), "a snapshot of a corrupt layer was committed ({error})");
    assert_eq!(std::fs::read_dir(env.dir.join("store/content/ingest")).unwrap().count(), 0, "ingest cleaned");
    // The same pull without the proxy completes into the same store.
    let pulled = pull_from(&registry.address, &store, &format!("{}/test/busybox:v1", registry.address), None).unwrap();
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_root, &pulled.chain_ids[0]));
    drop(store);
    env.leak_check();
}

#[test]
fn a_download_cut_half_way_resumes_and_completes() {
    let env = TestEnv::new("pull-cut");
    let registry = busybox_registry(&env);
    let proxy = FaultyProxy::start(&registry.address, Fault::CutOnce);
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let pulled = pull_from(&proxy.address, &store, &format!("{}/test/busybox:v1", proxy.address), None).unwrap();
    assert_eq!(proxy.damaged.load(std::sync::atomic::Ordering::SeqCst), 1, "the first layer download was cut");
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_root, &pulled.chain_ids[0]));
    drop(store);
    env.leak_check();
}

#[test]
fn a_basic_auth_registry_takes_the_right_credentials_only() {
    let env = TestEnv::new("pull-auth");
    let registry = Registry::start_with_auth(&env.dir, "berth", "s3cret");
    let layout = write_layout(
        &env.dir.join("layout"),
        "v1",
        &[LayoutImage { architecture: host_architecture(), layers: vec![tar_of(&env.bundle.dir.join("rootfs"))], zstd: false }],
    );
    registry.push(&layout, "v1", "private/busybox");
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let reference = Reference::parse(&format!("{}/private/busybox:v1", registry.address)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let attempt = |credentials: Option<(&str, &str)>| {
        let options = PullOptions {
            plain_http: vec![registry.address.clone()],
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            ..Default::default()
        };
        runtime.block_on(pull(store.clone(), &reference, &options))
    };
    for wrong in [None, Some(("berth", "wrong")), Some(("nobody", "s3cret"))] {
        let error = attempt(wrong).unwrap_err().to_string();
        assert!(
            error.contains("registry")
                && (error.contains("401") || error.to_lowercase().contains("unauthorized") || error.to_lowercase().contains("auth")),
            "{wrong:?}: {error}"
        );
    }
    assert!(store.content.list().unwrap().is_empty(), "nothing stored without the right credentials");
    let pulled = attempt(Some(("berth", "s3cret"))).unwrap();
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_root, &pulled.chain_ids[0]));
    drop(store);
    env.leak_check();
}

#[test]
fn a_zstd_layer_image_pulls_like_a_gzip_one() {
    let env = TestEnv::new("pull-zstd");
    let registry = Registry::start(&env.dir);
    let rootfs = env.bundle.dir.join("rootfs");
    let layout = write_layout(
        &env.dir.join("layout"),
        "zstd",
        &[LayoutImage { architecture: host_architecture(), layers: vec![tar_of(&rootfs)], zstd: true }],
    );
    registry.push(&layout, "zstd", "test/zstd");
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let pulled = pull_from(&registry.address, &store, &format!("{}/test/zstd:zstd", registry.address), None).unwrap();
    let layer = store.content.read_bounded(&pulled.layers[0], 1 << 30).unwrap();
    assert_eq!(&layer[..4], &[0x28, 0xb5, 0x2f, 0xfd], "the stored layer is zstd");
    assert_same_tree(&rootfs, &layer_dir(&store_root, &pulled.chain_ids[0]));
    drop(store);
    env.leak_check();
}

/// Set in the child process of the kill -9 test: `<plain-http address> <store> <reference>`.
const PULL_CHILD: &str = "BERTH_PULL_CHILD";

#[test]
fn a_pull_killed_half_way_finishes_on_retry_and_leaves_no_orphans() {
    if let Ok(job) = std::env::var(PULL_CHILD) {
        // The child: pull, and be killed while doing it.
        let parts: Vec<&str> = job.split(' ').collect();
        let store = Arc::new(Store::open(Path::new(parts[1])).unwrap());
        let _ = pull_from(parts[0], &store, parts[2], None);
        return;
    }
    let env = TestEnv::new("pull-kill");
    let registry = busybox_registry(&env);
    let proxy = FaultyProxy::start(&registry.address, Fault::Slow);
    let store_dir = env.dir.join("store");
    let job = format!("{} {} {}/test/busybox:v1", proxy.address, store_dir.display(), proxy.address);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_pull_killed_half_way_finishes_on_retry_and_leaves_no_orphans", "--quiet"])
        .env(PULL_CHILD, job)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once part of the layer is on disk.
    let ingest = store_dir.join("content/ingest");
    wait_for_partial_blob(&ingest);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(std::fs::read_dir(&ingest).unwrap().count() > 0, "killed half way: a partial blob is left");

    // The owner starts again: recover, pull, and the store is consistent with no orphans.
    let store = Arc::new(Store::open(&store_dir).unwrap());
    store.recover().unwrap();
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
    assert!(store.images.kept().unwrap().is_empty(), "the dead pull's lease is gone");
    let name = format!("{}/test/busybox:v1", registry.address);
    let pulled = pull_from(&registry.address, &store, &name, None).unwrap();
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_dir, &pulled.chain_ids[0]));
    assert_eq!(store.images.list().unwrap().len(), 1);
    // The killed pull's manifest and config (same digests) are the new image's; nothing else was left.
    assert_eq!(store.gc().unwrap(), berth_image::store::Collected::default(), "no orphan blobs or snapshots");
    store.images.remove(&name).unwrap();
    let collected = store.gc().unwrap();
    assert_eq!((collected.blobs, collected.snapshots), (3, 1));
    drop(store);
    env.leak_check();
}

#[test]
fn two_pulls_of_one_image_at_once_download_each_blob_once() {
    let env = TestEnv::new("pull-dedup");
    let registry = busybox_registry(&env);
    // Slowed, so the two pulls overlap; it counts the large bodies it serves (the layer).
    let proxy = FaultyProxy::start(&registry.address, Fault::Slow);
    let store_root = env.dir.join("store");
    let store = Arc::new(Store::open(&store_root).unwrap());
    let reference = Reference::parse(&format!("{}/test/busybox:v1", proxy.address)).unwrap();
    let options = PullOptions { plain_http: vec![proxy.address.clone()], ..Default::default() };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (first, second) =
        runtime.block_on(async { tokio::join!(pull(store.clone(), &reference, &options), pull(store.clone(), &reference, &options)) });
    let downloaded = [first.unwrap().downloaded, second.unwrap().downloaded];
    assert_eq!(proxy.damaged.load(std::sync::atomic::Ordering::SeqCst), 1, "the layer was downloaded once ({downloaded:?} bytes)");
    assert!(downloaded.contains(&0), "one pull found the other's layer: {downloaded:?}");
    drop((runtime, store));
    env.leak_check();
}
