//! A local user's clients against berthd (THREAT_MODEL.md, classes 4 and 7): calls abandoned by
//! their clients hold nothing afterwards, reading a large log costs bounded memory however many
//! read it at once, SIGHUP does not stop berthd, and label keys are names.

use berth_testsupport::{busybox_registry, proc_status as status, workspace_bin, Berthd, PeakRss, TestEnv};
use std::process::{Command, Stdio};
use std::time::Duration;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// read(2)-family calls berthd made, from /proc/<pid>/io.
fn read_calls(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix("syscr: ")).unwrap().trim().parse().unwrap()
}

fn read_calls_during(pid: u32, period: Duration) -> u64 {
    let before = read_calls(pid);
    std::thread::sleep(period);
    read_calls(pid) - before
}

fn berth(berthd: &Berthd, args: &[&str], stdout: Stdio) -> std::process::Child {
    Command::new(workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn abandoned_calls_hold_nothing_and_large_logs_cost_bounded_memory() {
    let env = TestEnv::new("hostile-clients");
    let registry = busybox_registry(&env);
    // 16 MiB logs (one old file kept): 30 MB written below fill one and rotate into another.
    let mut berthd = Berthd::start_with(&env, &[&registry.address], "log_max_size = 16777216\n", None);
    let pid = berthd.child.id();
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    let line = "y".repeat(99);
    let script = format!("yes {line} | head -n 300000; echo written; sleep 1000");
    berthd.ok(&env, &["run", "-d", "--name", "chatty", &image, "sh", "-c", &script]);
    let started = std::time::Instant::now();
    while !berthd.ok(&env, &["logs", "--tail", "1", "chatty"]).contains("written") {
        assert!(started.elapsed() < Duration::from_secs(120), "the container never finished writing");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Ten whole reads of the log at once: each streams it in batches.
    let peak = PeakRss::start(pid);
    let outputs: Vec<_> = (0..10).map(|i| env.dir.join(format!("logs-{i}.out"))).collect();
    let readers: Vec<_> = outputs.iter().map(|out| berth(&berthd, &["logs", "chatty"], std::fs::File::create(out).unwrap().into())).collect();
    for mut reader in readers {
        assert!(reader.wait().unwrap().success());
    }
    let grown = peak.grown_kib();
    for out in &outputs {
        // The rotation keeps the newest 16 to 32 MiB; each reader got all of what was kept.
        let len = std::fs::metadata(out).unwrap().len();
        assert!(len > 16 << 20 && std::fs::read(out).unwrap().ends_with(b"written\n"), "{} holds {len} bytes", out.display());
    }
    eprintln!("10 readers of a {} MiB log: berthd's peak RSS +{grown} KiB", std::fs::metadata(&outputs[0]).unwrap().len() >> 20);
    assert!(grown < 64 << 10, "berthd's peak RSS grew by {grown} KiB");

    // Waits and followers whose clients are killed: their connections, threads and polling end.
    let (fds_before, threads_before) = (fds(pid), status(pid, "Threads:"));
    let mut clients: Vec<_> = (0..200).map(|_| berth(&berthd, &["wait", "chatty"], Stdio::null())).collect();
    clients.extend((0..20).map(|_| berth(&berthd, &["logs", "-f", "--tail", "1", "chatty"], Stdio::null())));
    // Every client connected: berthd holds a socket for each.
    let started = std::time::Instant::now();
    while fds(pid) < fds_before + 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "only {} of berthd's fds after 60 s", fds(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let following = read_calls_during(pid, Duration::from_secs(2));
    for client in &mut clients {
        let _ = client.kill();
        let _ = client.wait();
    }
    let started = std::time::Instant::now();
    while fds(pid) > fds_before + 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "berthd still holds {} fds, {} before the clients", fds(pid), fds_before);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let abandoned = read_calls_during(pid, Duration::from_secs(2));
    eprintln!("read calls in 2 s: {following} with 20 followers, {abandoned} after they were killed");
    // One follower left polling would make 20 or more (a read at least every 100 ms).
    assert!(abandoned < 10, "followers of killed clients still poll: {abandoned} read calls in 2 s (with them alive: {following})");
    // The blocking pool's threads that served them go after tokio's 10 s of idleness.
    let started = std::time::Instant::now();
    while status(pid, "Threads:") > threads_before + 5 {
        assert!(started.elapsed() < Duration::from_secs(30), "berthd has {} threads ({threads_before} before the clients)", status(pid, "Threads:"));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(berthd.ok(&env, &["ps", "-q"]).lines().count(), 1, "berthd answers");

    // SIGHUP, as from a closing terminal: berthd goes on.
    // SAFETY: kill takes a pid and a signal; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(berthd.child.try_wait().is_ok_and(|s| s.is_none()), "berthd ended on SIGHUP");
    berthd.ok(&env, &["ps"]);

    // Label keys are names: a newline, a space or an '=' in one is refused (125, docker's engine error).
    for key in ["a\nb", "a b", "\u{1b}[31m", ""] {
        let label = format!("{key}=v");
        let out = berthd.berth(&env, &["run", "--rm", "--label", &label, &image, "true"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(125) && stderr.contains("label or annotation key"), "{key:?}: {:?} {stderr}", out.status);
    }
    berthd.ok(&env, &["rm", "-f", "chatty"]);
    berthd.stop();
    env.leak_check();
}
