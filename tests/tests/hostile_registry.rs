//! A registry that attacks: berthd's pulls read every body it sends with a bound, give up on it
//! when it stalls, and show its words safely; berthd's peak memory stays put and it answers after
//! each attack (THREAT_MODEL.md, class 1).

use berth_testsupport::{
    busybox_registry, host_architecture, tar_of, write_layout, Attack, Berthd, HostileRegistry, LayoutImage, PeakRss, Registry, TestEnv,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `berth pull` of `reference`, killed if it outlives `deadline`: (success, stderr, how long).
fn pull(env: &TestEnv, berthd: &Berthd, reference: &str, deadline: Duration) -> (bool, String, Duration) {
    let stderr_path = env.dir.join("pull.err");
    let mut child = Command::new(berth_testsupport::workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .args(["pull", reference])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let stderr = match status {
        Some(_) => stderr,
        None => format!("still pulling after {deadline:?}: {stderr}"),
    };
    (status.is_some_and(|s| s.success()), stderr, started.elapsed())
}

#[test]
fn a_hostile_registry_neither_grows_nor_hangs_berthd() {
    let env = TestEnv::new("hostile-registry");
    let registry = busybox_registry(&env);
    let hostile = HostileRegistry::start(&registry.address);
    // A 2 s registry timeout, so a stall costs seconds; the default is 60.
    let berthd = Berthd::start_with(&env, &[&hostile.address], "registry_timeout = 2\n", None);
    let pid = berthd.child.id();
    let reference = format!("{}/test/busybox:v1", hostile.address);
    let attacks = [
        (Attack::HugeManifest, "larger than"),
        (Attack::EndlessManifest, "larger than"),
        (Attack::EndlessToken, "larger than"),
        (Attack::EndlessError, "500"),
        (Attack::Stall, "registry timeout"),
        (Attack::StallBody, "registry timeout"),
        (Attack::ControlCharacters, "MANIFEST_UNKNOWN"),
    ];
    for (attack, expected) in attacks {
        hostile.set(attack);
        let peak = PeakRss::start(pid);
        let (ok, stderr, took) = pull(&env, &berthd, &reference, Duration::from_secs(60));
        let grown = peak.grown_kib();
        assert!(!ok && stderr.contains(expected), "{attack:?}: expected an error with {expected:?}, got {stderr:?}");
        assert!(grown < 64 << 10, "{attack:?}: berthd's peak RSS grew by {grown} KiB");
        // One line, without the registry's control characters, and short.
        assert!(stderr.trim_end().lines().count() == 1 && !stderr.contains('\u{1b}') && stderr.len() < 2048, "{attack:?}: {stderr:?}");
        berthd.ok(&env, &["images"]);
        eprintln!("{attack:?}: refused in {took:?}, peak RSS +{grown} KiB: {}", stderr.trim_end());
    }
    // The same registry without an attack: the token it hands out is taken, and the pull completes.
    hostile.set(Attack::None);
    let tokens = hostile.tokens.load(std::sync::atomic::Ordering::SeqCst);
    let (ok, stderr, _) = pull(&env, &berthd, &reference, Duration::from_secs(120));
    assert!(ok, "pull through the token-guarded registry: {stderr}");
    assert!(hostile.tokens.load(std::sync::atomic::Ordering::SeqCst) > tokens, "a Bearer token was fetched");
    assert!(berthd.ok(&env, &["images"]).contains("test/busybox"));
    berthd.stop();

    // A pull whose client is killed while the registry stalls lets go of the registry at once,
    // not at the registry timeout (a minute here).
    let berthd = Berthd::start_with(&env, &[&hostile.address], "registry_timeout = 60\n", None);
    hostile.set(Attack::Stall);
    let mut client = Command::new(berth_testsupport::workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .args(["pull", &format!("{}/test/other:v1", hostile.address)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stalled = || hostile.stalled.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    while stalled() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the pull never reached the registry");
        std::thread::sleep(Duration::from_millis(20));
    }
    client.kill().unwrap();
    client.wait().unwrap();
    let killed = Instant::now();
    while stalled() > 0 {
        assert!(killed.elapsed() < Duration::from_secs(20), "berthd still holds the stalled registry connection 20 s after its client died");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("abandoned pull: the registry connection closed {:?} after the client died", killed.elapsed());
    berthd.ok(&env, &["images"]);
    berthd.stop();
    drop(hostile);
    env.leak_check();
}

#[test]
fn an_image_that_expands_past_max_image_size_is_refused_and_leaves_nothing() {
    let env = TestEnv::new("image-expands");
    let registry = Registry::start(&env.dir);
    // Two layers of 12 MB of zeros each: a few KiB compressed, 24 MB unpacked, under a 20 MiB
    // limit. Each layer alone fits: the budget is the image's.
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let dir = env.dir.join(format!("layer{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("zeros{i}")), vec![0u8; 12_000_000]).unwrap();
            tar_of(&dir)
        })
        .collect();
    let layout = write_layout(&env.dir.join("layout"), "v1", &[LayoutImage { architecture: host_architecture(), layers, zstd: false }]);
    registry.push(&layout, "v1", "test/expands");
    let berthd = Berthd::start_with(&env, &[&registry.address], "max_image_size = 20971520\n", None);
    let (ok, stderr, _) = pull(&env, &berthd, &format!("{}/test/expands:v1", registry.address), Duration::from_secs(120));
    assert!(!ok && stderr.contains("max_image_size") && stderr.contains("20971520"), "{stderr}");
    // No temporary unpack is left: the layer that failed removes its own at once, the other
    // (stopped by the failure: its download is dropped) as soon as its input ends.
    let snapshots = berthd.root.join("snapshots");
    let temporary = || -> Vec<_> {
        std::fs::read_dir(&snapshots).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with(".tmp")).collect()
    };
    let started = Instant::now();
    while !temporary().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "left in {}: {:?}", snapshots.display(), temporary());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!berthd.ok(&env, &["images"]).contains("test/expands"));
    berthd.stop();
    env.leak_check();
}
