//! Image archives: OCI layouts and docker-archives in (as skopeo writes them), OCI layouts out (as
//! skopeo reads them), rootfs tarballs as one-layer images, and hostile archives refused with the
//! store and the host untouched.

use berth_image::archive::{export_oci_layout, import_archive, import_rootfs};
use berth_image::{Reference, Store};
use berth_testsupport::{assert_same_tree, busybox_layout, layer_dir, tar_of, TestEnv};
use std::path::Path;

const NAME: &str = "localhost/test/busybox:v1";

#[test]
fn an_oci_layout_imports_exports_and_imports_again() {
    let env = TestEnv::new("archive-oci");
    let layout = busybox_layout(&env, NAME);
    let store_root = env.dir.join("store");
    let store = Store::open(&store_root).unwrap();
    let records = import_archive(&store, &tar_of(&layout)[..], None).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, NAME);
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_root, &records[0].chain_ids[0]));

    // Out again as an OCI layout that skopeo reads, and into a second store unchanged.
    let exported = env.dir.join("exported.tar");
    export_oci_layout(&store, &[NAME.to_string()], std::fs::File::create(&exported).unwrap()).unwrap();
    let out = std::process::Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", exported.display())).output().unwrap();
    assert!(out.status.success(), "skopeo reads our layout: {}", String::from_utf8_lossy(&out.stderr));
    let second = Store::open(&env.dir.join("second")).unwrap();
    let again = import_archive(&second, std::fs::File::open(&exported).unwrap(), None).unwrap();
    assert_eq!((again[0].manifest.clone(), again[0].chain_ids.clone()), (records[0].manifest.clone(), records[0].chain_ids.clone()));
    drop((store, second));
    env.leak_check();
}

#[test]
fn a_docker_archive_from_skopeo_imports_by_its_repo_tag() {
    let env = TestEnv::new("archive-docker");
    let layout = busybox_layout(&env, "v1");
    let archive = env.dir.join("docker.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-archive:{}:{NAME}", archive.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let store_root = env.dir.join("store");
    let store = Store::open(&store_root).unwrap();
    let records = import_archive(&store, std::fs::File::open(&archive).unwrap(), None).unwrap();
    assert_eq!(records[0].name, NAME);
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_root, &records[0].chain_ids[0]));
    drop(store);
    env.leak_check();
}

#[test]
fn a_rootfs_tarball_becomes_a_one_layer_image() {
    let env = TestEnv::new("archive-rootfs");
    let store_root = env.dir.join("store");
    let store = Store::open(&store_root).unwrap();
    let tar = tar_of(&env.bundle.dir.join("rootfs"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let record = import_rootfs(&store, &gz.finish().unwrap()[..], &Reference::parse("localhost/rootfs:1").unwrap()).unwrap();
    assert_eq!(record.name, "localhost/rootfs:1");
    assert_eq!(record.chain_ids, vec![berth_image::Digest::of(&tar)], "the one chain id is the uncompressed digest");
    assert_same_tree(&env.bundle.dir.join("rootfs"), &layer_dir(&store_root, &record.chain_ids[0]));
    drop(store);
    env.leak_check();
}

/// A tar with one entry whose header says `size` but whose data is `data` (shorter for a lie).
fn archive_with(name: &str, size: u64, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

fn honest(name: &str, data: &[u8]) -> Vec<u8> {
    archive_with(name, data.len() as u64, data)
}

#[test]
fn hostile_archives_are_refused_and_nothing_is_kept() {
    let env = TestEnv::new("archive-hostile");
    let store_root = env.dir.join("store");
    let store = Store::open(&store_root).unwrap();
    let fake = format!("blobs/sha256/{}", berth_image::Digest::of(b"what the name promises").hex());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("10 GiB index.json", archive_with("index.json", 10 << 30, b"{"), "larger than"),
        ("blob unlike its name", honest(&fake, b"other"), "does not match"),
        ("no description", honest("../../escape", b"abc"), "neither an OCI layout"),
        ("docker manifest naming a missing layer", honest("manifest.json", br#"[{"Config":"c.json","RepoTags":["a/b:c"],"Layers":["x.tar"]}]"#), "not in the archive"),
        ("index naming a missing manifest", honest("index.json", br#"{"manifests":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"annotations":{"org.opencontainers.image.ref.name":"a/b:c"}}]}"#), "not found"),
    ];
    for (what, tar, expected) in cases {
        let error = import_archive(&store, &tar[..], None).unwrap_err().to_string();
        assert!(error.contains(expected), "{what}: {error}");
        assert!(store.images.list().unwrap().is_empty(), "{what}");
        assert_eq!(std::fs::read_dir(env.dir.join("store/content/ingest")).unwrap().count(), 0, "{what}: ingest left");
    }
    assert!(!env.dir.join("escape").exists() && !Path::new("/tmp/escape").exists(), "nothing written by its name");
    // A blob named by what its content is not was never committed; only the content-named one is.
    assert!(!store.content.contains(&berth_image::Digest::of(b"what the name promises")));
    // A layout that names its image only by a tag needs a name.
    let layout = busybox_layout(&env, "v1");
    let error = import_archive(&store, &tar_of(&layout)[..], None).unwrap_err().to_string();
    assert!(error.contains("give a name"), "{error}");
    let named = import_archive(&store, &tar_of(&layout)[..], Some(&Reference::parse("localhost/named:1").unwrap())).unwrap();
    assert_eq!(named[0].name, "localhost/named:1");
    drop(store);
    env.leak_check();
}
