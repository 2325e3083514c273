//! An image author against berthd (THREAT_MODEL.md, classes 2 and 3), end to end: tar header
//! bombs in a layer (gzip and zstd) and in the outer archive of `berth load`, and a FIFO where
//! berthd reads /etc/passwd. Each is a clear error; berthd's peak RSS grows by less than 64 MiB
//! and it answers after each.

use berth_testsupport::{busybox_rootfs, host_architecture, layout_archive, tar_of, write_layout, Berthd, LayoutImage, PeakRss, TestEnv};
use std::io::Write;
use std::path::Path;

/// A ustar header block for `name` of `kind` claiming `size` bytes.
fn header(name: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[..name.len()].copy_from_slice(name.as_bytes());
    block[100..108].copy_from_slice(b"0000644\0");
    block[108..116].copy_from_slice(b"0000000\0");
    block[116..124].copy_from_slice(b"0000000\0");
    block[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    block[136..148].copy_from_slice(b"00000000000\0");
    block[156] = kind;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| b as u32).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// A metadata entry of `kind` claiming 1 GiB, followed by 100 MB of its "data": a reader that
/// takes such headers whole grows by the 100 MB it finds.
fn bomb(kind: u8) -> Vec<u8> {
    let mut tar = header("bomb", kind, 1 << 30).to_vec();
    tar.resize(tar.len() + 100_000_000, b'a');
    tar
}

/// `berth load` of `archive`: (success, stderr, berthd's peak RSS growth in KiB).
fn load(env: &TestEnv, berthd: &Berthd, archive: &Path) -> (bool, String, u64) {
    let peak = PeakRss::start(berthd.child.id());
    let out = berthd.berth(env, &["load", archive.to_str().unwrap(), "hostile/image:v1"]);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), peak.grown_kib())
}

#[test]
fn tar_bombs_and_fifos_from_images_cost_berthd_nothing() {
    let env = TestEnv::new("hostile-images");
    let berthd = Berthd::start(&env, &[]);
    let cases =
        [(b'x', false, "PAX extended header"), (b'x', true, "PAX extended header"), (b'L', false, "GNU long name"), (b'K', true, "GNU long link")];
    for (i, (kind, zstd, expected)) in cases.into_iter().enumerate() {
        let layout = write_layout(
            &env.dir.join(format!("bomb{i}")),
            "v1",
            &[LayoutImage { architecture: host_architecture(), layers: vec![bomb(kind)], zstd }],
        );
        let archive = layout_archive(&layout);
        std::fs::remove_dir_all(&layout).unwrap();
        let (ok, stderr, grown) = load(&env, &berthd, &archive);
        std::fs::remove_file(&archive).unwrap();
        eprintln!("{expected} in a {} layer: peak RSS +{grown} KiB: {}", if zstd { "zstd" } else { "gzip" }, stderr.trim_end());
        assert!(!ok && stderr.contains(expected), "{expected}: {stderr}");
        assert!(grown < 64 << 10, "{expected}: berthd's peak RSS grew by {grown} KiB");
        assert!(!berthd.ok(&env, &["images"]).contains("hostile/image"));
    }

    // The outer archive itself: a PAX header of 1 GiB before anything else.
    let outer = env.dir.join("outer.tar");
    let mut file = std::fs::File::create(&outer).unwrap();
    file.write_all(&bomb(b'x')).unwrap();
    drop(file);
    let (ok, stderr, grown) = load(&env, &berthd, &outer);
    eprintln!("PAX bomb in the outer archive: peak RSS +{grown} KiB: {}", stderr.trim_end());
    assert!(!ok && stderr.contains("PAX extended header"), "{stderr}");
    assert!(grown < 64 << 10, "the outer archive: berthd's peak RSS grew by {grown} KiB");
    std::fs::remove_file(&outer).unwrap();

    // A FIFO where /etc/passwd should be: `run -u` is refused at once, nothing hangs.
    let rootfs = env.dir.join("fifo-rootfs");
    busybox_rootfs(&rootfs);
    let passwd = rootfs.join("etc/passwd");
    let _ = std::fs::remove_file(&passwd);
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let layout =
        write_layout(&env.dir.join("fifo"), "v1", &[LayoutImage { architecture: host_architecture(), layers: vec![tar_of(&rootfs)], zstd: false }]);
    let archive = layout_archive(&layout);
    berthd.ok(&env, &["load", archive.to_str().unwrap(), "hostile/fifo:v1"]);
    let started = std::time::Instant::now();
    let out = berthd.berth(&env, &["run", "--rm", "-u", "nobody", "hostile/fifo:v1", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("passwd"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "run -u took {:?}", started.elapsed());
    berthd.ok(&env, &["ps", "-a"]);
    berthd.stop();
    env.leak_check();
}
