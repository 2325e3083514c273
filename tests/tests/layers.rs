//! The layer applier on real files (root: owners, devices, trusted xattrs): every entry kind in
//! gzip (two members), zstd (two frames) and plain tar gives the same overlayfs lower dir, and a
//! corpus of hostile layers never touches anything outside the target.

use berth_image::snapshots::{Budget, Snapshotter};
use berth_image::unpack::apply_layer;
use berth_testsupport::TestEnv;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use tar::{EntryType, Header};

/// A tar stream built entry by entry; names are written raw, so hostile ones ('..') go in as is.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn entry(&mut self, name: &str, kind: EntryType, mode: u32, data: &[u8], f: impl FnOnce(&mut Header)) -> &mut Self {
        let mut header = Header::new_ustar();
        header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_600_000_000);
        f(&mut header);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(name, EntryType::Regular, mode, data, |_| {})
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, EntryType::Directory, 0o755, b"", |_| {})
    }

    fn link(&mut self, name: &str, kind: EntryType, target: &str) -> &mut Self {
        self.entry(name, kind, 0o777, b"", |h| {
            h.as_ustar_mut().unwrap().linkname[..target.len()].copy_from_slice(target.as_bytes());
        })
    }

    /// A PAX record for the next entry (`SCHILY.xattr.*` and the like).
    fn pax(&mut self, key: &str, value: &str) -> &mut Self {
        let body_len = key.len() + value.len() + 3;
        let mut len = body_len + 1;
        while format!("{len}").len() + body_len != len {
            len += 1;
        }
        let record = format!("{len} {key}={value}\n");
        self.entry("pax", EntryType::XHeader, 0o644, record.as_bytes(), |_| {})
    }

    fn bytes(&mut self) -> Vec<u8> {
        self.0.get_mut().clone().into_iter().chain(std::iter::repeat_n(0, 1024)).collect()
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is writable for its length.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn every_kind() -> Vec<u8> {
    let mut layer = Layer::new();
    layer
        .dir("bin/")
        .file("bin/busybox", 0o755, b"#!busybox")
        .entry("bin/su", EntryType::Regular, 0o4755, b"su", |_| {})
        .link("bin/sh", EntryType::Symlink, "busybox")
        .link("bin/ls", EntryType::Link, "bin/busybox")
        .pax("SCHILY.xattr.user.berth", "kept")
        .entry("etc/hosts", EntryType::Regular, 0o640, b"127.0.0.1 localhost\n", |h| {
            h.set_uid(1000);
            h.set_gid(1001);
        })
        .entry("dev/null", EntryType::Char, 0o666, b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .entry("run/fifo", EntryType::Fifo, 0o600, b"", |_| {})
        .file("usr/.wh.gone", 0o644, b"")
        .file("var/.wh..wh..opq", 0o644, b"")
        .file("var/new", 0o644, b"new");
    layer.bytes()
}

/// Compressed in two gzip members / two zstd frames, as concatenating writers produce.
fn compressed(tar: &[u8], kind: &str) -> Vec<u8> {
    let (first, second) = tar.split_at(tar.len() / 2);
    let mut out = Vec::new();
    for part in [first, second] {
        match kind {
            "gzip" => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(part).unwrap();
                out.extend(encoder.finish().unwrap());
            }
            "zstd" => out.extend(zstd::encode_all(part, 3).unwrap()),
            _ => out.extend_from_slice(part),
        }
    }
    out
}

#[test]
fn every_entry_kind_unpacks_the_same_from_each_compression() {
    let env = TestEnv::new("layer-kinds");
    let tar = every_kind();
    for kind in ["plain", "gzip", "zstd"] {
        let target = env.dir.join(kind);
        std::fs::create_dir(&target).unwrap();
        let applied = apply_layer(&compressed(&tar, kind)[..], &target, &Budget::unlimited()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!((applied.whiteouts, applied.bytes), (2, 9 + 2 + 20 + 3), "{kind}");
        assert_eq!(applied.diff_id, berth_image::Digest::of(&tar), "{kind}: diff_id is the digest of the uncompressed tar");

        let meta = |p: &str| std::fs::symlink_metadata(target.join(p)).unwrap();
        assert_eq!(std::fs::read(target.join("bin/busybox")).unwrap(), b"#!busybox");
        assert_eq!(meta("bin/su").permissions().mode() & 0o7777, 0o4755, "{kind}: setuid kept after chown");
        assert_eq!(std::fs::read_link(target.join("bin/sh")).unwrap(), Path::new("busybox"));
        assert_eq!(meta("bin/ls").ino(), meta("bin/busybox").ino(), "{kind}: hardlink");
        let hosts = meta("etc/hosts");
        assert_eq!((hosts.uid(), hosts.gid(), hosts.mode() & 0o7777, hosts.mtime()), (1000, 1001, 0o640, 1_600_000_000));
        assert_eq!(xattr(&target.join("etc/hosts"), "user.berth").as_deref(), Some(&b"kept"[..]), "{kind}");
        let null = meta("dev/null");
        assert!(null.file_type().is_char_device() && null.rdev() == libc::makedev(1, 3));
        assert!(meta("run/fifo").file_type().is_fifo());
        let whiteout = meta("usr/gone");
        assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0, "{kind}: whiteout as overlayfs wants it");
        assert_eq!(xattr(&target.join("var"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]), "{kind}: opaque dir");
        assert_eq!(meta("bin").mtime(), 1_600_000_000, "{kind}: directory times set last");
    }
    env.leak_check();
}

/// Everything under `dir` with its size, mode and link count: what "untouched" is compared by.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push(format!("{} {} {:o} {}", path.display(), meta.len(), meta.mode(), meta.nlink()));
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_layers_never_reach_outside_the_target() {
    let env = TestEnv::new("layer-hostile");
    let outside = env.dir.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), "host file").unwrap();
    let out = outside.display().to_string();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("traversal", Layer::new().file("../outside/pwned", 0o644, b"x").bytes(), false),
        ("deep traversal", Layer::new().file("a/../../outside/pwned", 0o644, b"x").bytes(), false),
        ("absolute name", Layer::new().file(&format!("{out}/pwned"), 0o644, b"x").bytes(), true),
        ("symlink then write", Layer::new().link("up", EntryType::Symlink, "../..").file("up/outside/pwned", 0o644, b"x").bytes(), true),
        ("absolute symlink then write", Layer::new().link("evil", EntryType::Symlink, &out).file("evil/pwned", 0o644, b"x").bytes(), false),
        ("hardlink out", Layer::new().link("h", EntryType::Link, "../outside/sentinel").bytes(), false),
        (
            "hardlink through symlink",
            Layer::new().link("s", EntryType::Symlink, &format!("{out}/sentinel")).link("h", EntryType::Link, &format!("{out}/sentinel")).bytes(),
            false,
        ),
        (
            "hardlink to a symlink",
            Layer::new()
                .link("s", EntryType::Symlink, &format!("{out}/sentinel"))
                .link("h", EntryType::Link, "s")
                .file("h", 0o644, b"overwrite")
                .bytes(),
            true,
        ),
        ("device node", Layer::new().entry("dev/sda", EntryType::Block, 0o660, b"", |h| h.set_device_major(8).unwrap()).bytes(), true),
        ("whiteout of ..", Layer::new().file("a/.wh...", 0o644, b"").bytes(), false),
        (
            "symlink replaced by a file",
            Layer::new().link("x", EntryType::Symlink, &format!("{out}/sentinel")).file("x", 0o644, b"overwrite").bytes(),
            true,
        ),
    ];
    for (name, tar, accepted) in cases {
        let target = env.dir.join("target");
        std::fs::create_dir(&target).unwrap();
        let before = snapshot(&outside);
        let result = apply_layer(&tar[..], &target, &Budget::unlimited());
        assert_eq!(result.is_ok(), accepted, "{name}: {result:?}");
        if let Err(e) = &result {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(snapshot(&outside), before, "{name}: the outside changed");
        assert_eq!(std::fs::read_to_string(outside.join("sentinel")).unwrap(), "host file", "{name}");
        std::fs::remove_dir_all(&target).unwrap();
    }
    env.leak_check();
}

#[test]
fn a_snapshot_exists_only_once_its_diff_id_checked_out() {
    let env = TestEnv::new("layer-snapshots");
    let snapshots = berth_image::snapshots::OverlaySnapshots::open(&env.dir.join("snapshots")).unwrap();
    let tar = every_kind();
    let diff_id = berth_image::Digest::of(&tar);
    let chain = berth_image::snapshots::chain_ids(std::slice::from_ref(&diff_id));

    // A layer whose content is not what the config promised: refused, nothing committed or left.
    let wrong = berth_image::Digest::of(b"something else");
    let error = snapshots.unpack(&chain[0], &wrong, &mut &compressed(&tar, "gzip")[..], &Budget::unlimited()).unwrap_err();
    assert!(error.to_string().contains("is not the diff_id"), "{error}");
    assert!(!snapshots.exists(&chain[0]));
    let left =
        std::fs::read_dir(env.dir.join("snapshots")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-")).count();
    assert_eq!(left, 0, "no temporary directory left");

    let applied = snapshots.unpack(&chain[0], &diff_id, &mut &compressed(&tar, "zstd")[..], &Budget::unlimited()).unwrap().expect("unpacked");
    assert_eq!(applied.diff_id, diff_id);
    assert!(snapshots.layer_dir(&chain[0]).join("bin/busybox").is_file());
    assert!(snapshots.unpack(&chain[0], &diff_id, &mut &tar[..], &Budget::unlimited()).unwrap().is_none(), "an existing snapshot is kept");
    assert_eq!(snapshots.list().unwrap(), chain);
    snapshots.remove(&chain[0]).unwrap();
    assert!(snapshots.list().unwrap().is_empty());
    env.leak_check();
}
