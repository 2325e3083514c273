//! Resources on this host's cgroup v1 hierarchy: written values read back from the cgroup files,
//! limits enforced on real processes, and `update` changing a live container.

use berth_testsupport::TestEnv;
use serde_json::json;
use std::path::PathBuf;

fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    let path = PathBuf::from("/sys/fs/cgroup").join(controller).join(id).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

#[test]
fn resources_are_written_and_updated() {
    let mut env = TestEnv::new("cg-resources");
    env.bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"});
        c["linux"]["resources"]["pids"] = json!({"limit": 32});
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    let id = env.id("res");
    env.ok(&["create", &id]);
    assert_eq!(cgroup_file("memory", &id, "memory.limit_in_bytes"), "67108864");
    assert_eq!(cgroup_file("memory", &id, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(cgroup_file("memory", &id, "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(cgroup_file("memory", &id, "memory.swappiness"), "10");
    assert_eq!(cgroup_file("cpu", &id, "cpu.shares"), "512");
    assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_quota_us"), "20000");
    assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file("cpuset", &id, "cpuset.cpus"), "0");
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "32");
    let pid = env.pid(&id).to_string();
    assert!(cgroup_file("pids", &id, "cgroup.procs").lines().any(|p| p == pid), "the init is in its cgroup before it runs");

    env.ok(&["start", &id]);
    env.ok(&["update", "--memory", "96m", "--memory-swap", "192m", "--pids-limit", "64", "--cpu-share", "256", &id]);
    assert_eq!(cgroup_file("memory", &id, "memory.limit_in_bytes"), (96u64 << 20).to_string());
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "64");
    assert_eq!(cgroup_file("cpu", &id, "cpu.shares"), "256");
    let resources = env.dir.join("resources.json");
    std::fs::write(&resources, r#"{"pids": {"limit": 16}, "cpu": {"quota": 50000}}"#).unwrap();
    env.ok(&["update", "-r", resources.to_str().unwrap(), &id]);
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "16");
    assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_quota_us"), "50000");
    env.fails(&["update", "--memory", "lots", &id]);
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

#[test]
fn memory_limit_oom_kills_and_pids_limit_stops_forks() {
    let mut env = TestEnv::new("cg-enforce");
    env.bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
        // A shell variable of 64 MiB cannot fit in 32 MiB.
        c["process"]["args"] = json!(["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"]);
    });
    let id = env.id("oom");
    let out = env.oci(&["run", &id]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));
    assert_ne!(out.status.code(), Some(0), "the allocation must fail or be OOM-killed");

    env.bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = json!(null);
        c["linux"]["resources"]["pids"] = json!({"limit": 8});
        // The inner shell forks sleepers until a fork fails (busybox sh then exits); the outer one
        // then execs, which needs no fork, so the container stays up to be counted from the host.
        c["process"]["args"] = json!(["sh", "-c", "sh -c 'while true; do sleep 60 & done' 2>/tmp/fork-error; exec sleep 60"]);
        c["root"]["readonly"] = json!(false);
    });
    let id = env.id("pids");
    env.ok(&["run", "-d", &id]);
    let rootfs = env.bundle.dir.join("rootfs");
    let mut error = String::new();
    for _ in 0..300 {
        error = std::fs::read_to_string(rootfs.join("tmp/fork-error")).unwrap_or_default();
        if error.contains("fork") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(error.contains("can't fork"), "the fork loop hit the limit: {error:?}");
    let pids: Vec<i32> = serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!((2..=8).contains(&pids.len()), "at most 8 processes: {pids:?}");
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "8");
    env.ok(&["delete", "--force", &id]);
    std::fs::remove_file(rootfs.join("tmp/fork-error")).unwrap();
    env.leak_check();
}

#[test]
fn oom_kill_is_reported_as_an_event() {
    let mut env = TestEnv::new("cg-oom-event");
    env.bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
        c["root"]["readonly"] = json!(false);
        // The hog is a child shell, so the OOM killer takes it and the container lives on.
        c["process"]["args"] = json!(["sh", "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.05; done; sh -c 'x=$(head -c 67108864 /dev/zero | tr \"\\0\" a)'; sleep 60"]);
    });
    let id = env.id("oomevent");
    env.ok(&["run", "-d", &id]);
    let mut events = std::process::Command::new(&env.bin)
        .args(["--root", env.root.to_str().unwrap(), "events", "--interval", "100ms", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = events.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let first = received.recv_timeout(std::time::Duration::from_secs(10)).expect("a first stats event");
    assert!(first.contains(r#""type":"stats""#), "{first}");
    std::fs::write(env.bundle.dir.join("rootfs/tmp/go"), "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut oom = None;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match received.recv_timeout(left) {
            Ok(line) if line.contains(r#""type":"oom""#) => {
                oom = Some(line);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let oom: serde_json::Value = serde_json::from_str(&oom.expect("an oom event within 20 s")).unwrap();
    assert_eq!(oom["id"], id.as_str());
    assert_eq!(env.status(&id), "running", "only the hog was killed");
    env.ok(&["delete", "--force", &id]);
    // The stream ends by itself once the container is gone.
    let status = events.wait().unwrap();
    assert!(status.success(), "{status}");
    reader.join().unwrap();
    std::fs::remove_file(env.bundle.dir.join("rootfs/tmp/go")).unwrap();
    env.leak_check();
}
