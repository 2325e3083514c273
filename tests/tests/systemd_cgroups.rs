//! The systemd cgroup driver (`berth-oci --systemd-cgroup`), where systemd is PID 1: the cgroup
//! v2 VM booted with systemd (scripts/test-vm.sh's systemd pass, `BERTH_VM_INIT=systemd`). There
//! `BERTH_EXPECT_SYSTEMD` is set and a missing systemd fails each test; elsewhere (this host has
//! no systemd) each says so and returns.
//!
//! What is checked: the scope systemd makes at create holds the init before it runs, with the
//! spec's limits in systemd's view of the unit (`systemctl show`) and in the cgroup files; update,
//! pause and resume, exec; delete stops the unit and its directory goes; a create that fails
//! leaves no unit behind.

use berth_testsupport::TestEnv;
use serde_json::json;
use std::path::Path;

fn systemd_runs() -> bool {
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default().trim() == "systemd" && Path::new("/run/systemd/private").exists();
    if !pid1 {
        assert!(std::env::var_os("BERTH_EXPECT_SYSTEMD").is_none(), "BERTH_EXPECT_SYSTEMD is set, but systemd is not PID 1 here");
        eprintln!("skipped: systemd is not PID 1 here (scripts/test-vm.sh runs this under systemd)");
    }
    pid1
}

/// A property of a unit as systemd shows it.
fn show(unit: &str, property: &str) -> String {
    let out = std::process::Command::new("systemctl").args(["show", "--value", "-p", property, unit]).output().expect("systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

#[test]
fn a_container_lives_in_a_systemd_scope_from_create_to_delete() {
    if !systemd_runs() {
        return;
    }
    let mut env = TestEnv::new("systemd-scope");
    let id = env.id("sd");
    env.bundle.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("berthtest-a.slice:berth:{id}"));
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 20000, "period": 100000});
        c["linux"]["resources"]["pids"] = json!({"limit": 32});
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    env.ok(&["--systemd-cgroup", "create", &id]);
    let unit = format!("berth-{id}.scope");
    let dir = Path::new("/sys/fs/cgroup/berthtest.slice/berthtest-a.slice").join(&unit);
    let pid = env.pid(&id).to_string();

    // Before the process runs: in its scope, systemd's limits and the files agree.
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "Slice"), "berthtest-a.slice");
    assert_eq!(show(&unit, "Delegate"), "yes");
    assert_eq!((show(&unit, "MemoryMax"), read(&dir.join("memory.max"))), ("67108864".into(), "67108864".into()));
    assert_eq!((show(&unit, "TasksMax"), read(&dir.join("pids.max"))), ("32".into(), "32".into()));
    assert_eq!((show(&unit, "CPUWeight"), read(&dir.join("cpu.weight"))), ("20".into(), "20".into()));
    assert_eq!(read(&dir.join("cpu.max")), "20000 100000");
    assert!(read(&dir.join("cgroup.procs")).lines().any(|p| p == pid), "the init is in the scope before it runs");

    env.ok(&["start", &id]);
    let exec = env.ok(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert!(exec.starts_with("0::"), "{exec}");
    env.ok(&["update", "--memory", "96m", "--pids-limit", "64", &id]);
    assert_eq!((show(&unit, "MemoryMax"), read(&dir.join("memory.max"))), ("100663296".into(), "100663296".into()));
    assert_eq!((show(&unit, "TasksMax"), read(&dir.join("pids.max"))), ("64".into(), "64".into()));
    env.ok(&["pause", &id]);
    assert_eq!((env.status(&id), read(&dir.join("cgroup.freeze"))), ("paused".into(), "1".into()));
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");

    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    assert!(!dir.exists(), "the scope's directory went with it");
    assert_ne!(show(&unit, "ActiveState"), "active", "the unit is gone");
    env.leak_check();
}

#[test]
fn a_create_that_fails_leaves_no_unit() {
    if !systemd_runs() {
        return;
    }
    let mut env = TestEnv::new("systemd-fail");
    let id = env.id("sdf");
    env.bundle.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(format!("berthtest-b.slice:berth:{id}"));
        c["process"]["args"] = json!(["/no/such/program"]);
    });
    let error = env.fails(&["--systemd-cgroup", "create", &id]);
    assert!(error.contains("/no/such/program"), "{error}");
    let unit = format!("berth-{id}.scope");
    assert_ne!(show(&unit, "ActiveState"), "active");
    assert!(!Path::new("/sys/fs/cgroup/berthtest.slice/berthtest-b.slice").join(&unit).exists());
    // A plain path is the cgroupfs driver's: refused with the flag, as runc refuses it.
    env.bundle.edit(|c| c["linux"]["cgroupsPath"] = json!("/berth/plain"));
    let plain = env.fails(&["--systemd-cgroup", "create", &env.id("sdp")]);
    assert!(plain.contains("slice:prefix:name"), "{plain}");
    env.leak_check();
}
