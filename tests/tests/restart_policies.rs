//! Restart policies (`--restart`) end to end, as docker has them: on-failure counts and stops at
//! its limit, a clean exit is not a failure, always restarts until a hand stops it, a hand's start
//! resets the count, `--rm` with a policy is refused, `berth restart`; and at berthd's start, what
//! exited while it was down (its processes killed by PID, as a host reboot would end them) is
//! started again by always and unless-stopped, where a hand's earlier stop holds for
//! unless-stopped only.

use berth_testsupport::{busybox_registry, Berthd, TestEnv};
use std::time::{Duration, Instant};

fn inspect(berthd: &Berthd, env: &TestEnv, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&berthd.ok(env, &["inspect", name])).unwrap()[0].clone()
}

/// (state, restart count) of a container.
fn status(berthd: &Berthd, env: &TestEnv, name: &str) -> (String, u64) {
    let c = inspect(berthd, env, name);
    (c["state"].as_str().unwrap_or_default().to_string(), c["restart_policy"]["restart_count"].as_u64().unwrap_or(u64::MAX))
}

/// Polls `check` for up to 20 s.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn restart_policies_restart_what_they_say_and_a_stop_holds() {
    let env = TestEnv::new("restart-policies");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);

    // on-failure:2 on a command that fails: two restarts, then it stays exited.
    berthd.ok(&env, &["run", "-d", "--name", "failing", "--restart", "on-failure:2", &image, "sh", "-c", "exit 3"]);
    berthd.ok(&env, &["run", "-d", "--name", "clean", "--restart", "on-failure", &image, "true"]);
    let failed_twice = eventually(|| status(&berthd, &env, "failing") == ("exited".into(), 2));
    std::thread::sleep(Duration::from_millis(1500));
    let (failing_after, clean_after) = (status(&berthd, &env, "failing"), status(&berthd, &env, "clean"));
    let policy = inspect(&berthd, &env, "failing")["restart_policy"]["name"].clone();

    // always, on a command that ends: restarted over and over, until a hand stops it.
    berthd.ok(&env, &["run", "-d", "--name", "looping", "--restart", "always", &image, "sh", "-c", "sleep 0.2"]);
    let looped = eventually(|| status(&berthd, &env, "looping").1 >= 2);
    berthd.ok(&env, &["stop", "-t", "1", "looping"]);
    let stopped = status(&berthd, &env, "looping");
    std::thread::sleep(Duration::from_millis(1500));
    let still_stopped = status(&berthd, &env, "looping");
    // A hand's start: the count starts over.
    berthd.ok(&env, &["start", "looping"]);
    let started_by_hand = status(&berthd, &env, "looping").1;
    berthd.ok(&env, &["kill", "looping"]);

    let with_rm = berthd.berth(&env, &["run", "--rm", "--restart", "always", &image, "true"]);
    let bad_policy = berthd.berth(&env, &["run", "--restart", "sometimes", &image, "true"]);

    // always: kill -9 of its process (ours, by PID) brings it back.
    berthd.ok(&env, &["run", "-d", "--name", "killed", "--restart", "always", &image, "sleep", "1000"]);
    let first_pid = inspect(&berthd, &env, "killed")["pid"].as_i64().unwrap_or(0) as i32;
    assert!(first_pid > 0);
    // SAFETY: kill takes a pid and a signal; the container's init, which this test started.
    unsafe { libc::kill(first_pid, libc::SIGKILL) };
    let came_back = eventually(|| {
        let c = inspect(&berthd, &env, "killed");
        c["state"] == "running" && c["pid"].as_i64().is_some_and(|p| p as i32 != first_pid)
    });

    // berth restart: the same container, a new process.
    berthd.ok(&env, &["run", "-d", "--name", "server", &image, "sleep", "1000"]);
    let before = inspect(&berthd, &env, "server")["pid"].as_i64().unwrap_or(0);
    berthd.ok(&env, &["restart", "-t", "0", "server"]);
    let after = inspect(&berthd, &env, "server");

    berthd.ok(&env, &["rm", "-f", "failing", "clean", "looping", "server", "killed"]);
    drop(berthd);

    assert!(came_back, "always: back after kill -9 of its process");
    assert!(failed_twice, "on-failure:2 restarted a failing command twice");
    assert_eq!(failing_after, ("exited".to_string(), 2), "and no more");
    assert_eq!(policy, "on-failure:2");
    assert_eq!(clean_after, ("exited".to_string(), 0), "on-failure leaves a clean exit be");
    assert!(looped, "always restarts a command that ends");
    assert_eq!(stopped.0, "exited");
    assert_eq!(still_stopped, stopped, "a stopped container stays stopped");
    assert_eq!(started_by_hand, 0, "a hand's start resets the count");
    assert!(!with_rm.status.success() && String::from_utf8_lossy(&with_rm.stderr).contains("--rm"), "{with_rm:?}");
    assert!(!bad_policy.status.success() && String::from_utf8_lossy(&bad_policy.stderr).contains("unless-stopped"), "{bad_policy:?}");
    assert_eq!(after["state"], "running");
    assert!(before > 0 && after["pid"].as_i64() != Some(before), "restart ran a new process: {before} → {}", after["pid"]);
    env.leak_check();
}

#[test]
fn at_berthd_start_always_and_unless_stopped_restart_what_exited_meanwhile() {
    let env = TestEnv::new("restart-at-start");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    let run = |name: &str, policy: &str| berthd.ok(&env, &["run", "-d", "--name", name, "--restart", policy, &image, "sleep", "1000"]);
    run("always", "always");
    run("unless", "unless-stopped");
    run("none", "no");
    run("always-stopped", "always");
    run("unless-stopped", "unless-stopped");
    berthd.ok(&env, &["stop", "-t", "0", "always-stopped", "unless-stopped"]);
    let pids: Vec<i32> = ["always", "unless", "none"].iter().map(|n| inspect(&berthd, &env, n)["pid"].as_i64().unwrap_or(0) as i32).collect();
    berthd.stop();

    // Their processes end while berthd is down (as a reboot ends them): by PID, ours.
    for pid in &pids {
        assert!(*pid > 0);
        // SAFETY: kill takes a pid and a signal; each is a container init this test started.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let gone = eventually(|| pids.iter().all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()));

    let berthd = Berthd::start(&env, &[&registry.address]);
    let restarted = eventually(|| ["always", "unless", "always-stopped"].iter().all(|n| status(&berthd, &env, n).0 == "running"));
    std::thread::sleep(Duration::from_millis(500));
    let states: Vec<(String, u64)> =
        ["always", "unless", "always-stopped", "none", "unless-stopped"].iter().map(|n| status(&berthd, &env, n)).collect();
    berthd.ok(&env, &["rm", "-f", "always", "unless", "none", "always-stopped", "unless-stopped"]);
    drop(berthd);

    assert!(gone, "the inits were killed");
    assert!(restarted, "always, unless-stopped and a stopped always container run again: {states:?}");
    assert_eq!(states[0], ("running".to_string(), 1));
    assert_eq!(states[1], ("running".to_string(), 1));
    assert_eq!(states[2], ("running".to_string(), 1), "always: a stop does not outlive berthd");
    assert_eq!(states[3].0, "exited", "no policy, no restart");
    assert_eq!(states[4], ("exited".to_string(), 0), "unless-stopped: a stop does");
    env.leak_check();
}

/// A reboot, as far as a test can make one: berthd stopped, every container process and shim
/// killed (by PID, ours), the state directory (a tmpfs on a real host) unmounted and emptied.
/// berthd's next start makes the bundles again from their kept copies: an always container runs
/// again, a container without a policy stays exited and starts by hand.
#[test]
fn after_a_reboot_bundles_are_made_again_and_always_containers_run() {
    let env = TestEnv::new("restart-reboot");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    berthd.ok(&env, &["run", "-d", "--name", "boot", "--hostname", "kept", "--restart", "always", &image, "sleep", "1000"]);
    berthd.ok(&env, &["run", "-d", "--name", "plain", &image, "sleep", "1000"]);
    let state = berthd.state.clone();
    berthd.stop();

    // The processes a reboot ends: shims (their pid files) and the containers' inits.
    let mut pids = Vec::new();
    for entry in walk(&state) {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name == "shim.pid" || name == "init.pid" {
            if let Some(pid) = std::fs::read_to_string(&entry).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                pids.push(pid);
            }
        }
    }
    for pid in &pids {
        // SAFETY: kill takes a pid and a signal; each is a shim or container init of this test's berthd.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let gone = eventually(|| pids.iter().all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(*pid)));
    let state_text = state.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&state_text))
        .collect();
    mounts.sort_by(|a, b| b.cmp(a));
    for mount in &mounts {
        let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    std::fs::remove_dir_all(&state).unwrap();

    let berthd = Berthd::start(&env, &[&registry.address]);
    let back = eventually(|| status(&berthd, &env, "boot").0 == "running");
    let hostname = berthd.berth(&env, &["exec", "boot", "cat", "/etc/hostname"]);
    let plain = status(&berthd, &env, "plain");
    berthd.ok(&env, &["start", "plain"]);
    let plain_started = status(&berthd, &env, "plain").0;
    berthd.ok(&env, &["rm", "-f", "boot", "plain"]);
    let kept_left = std::fs::read_dir(berthd.root.join("containers")).map(|d| d.flatten().filter(|e| e.path().is_dir()).count()).unwrap_or(0);
    drop(berthd);

    assert!(!pids.is_empty() && gone, "the shims and inits were killed: {pids:?}");
    assert!(back, "the always container runs again");
    assert_eq!(String::from_utf8_lossy(&hostname.stdout), "kept\n", "its /etc files came back: {hostname:?}");
    assert_eq!(plain.0, "exited", "no policy: it stays exited");
    assert_eq!(plain_started, "running", "and a hand starts it");
    assert_eq!(kept_left, 0, "removal takes the kept bundles too");
    env.leak_check();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(walk(&path)),
            _ => found.push(path),
        }
    }
    found
}

/// Dead but not yet reaped by whoever adopted it.
fn zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'))
}
