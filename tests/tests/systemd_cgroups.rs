//! The systemd cgroup driver (`berth-oci --systemd-cgroup`), where systemd is PID 1: the test VM
//! booted with systemd (scripts/test-vm.sh's systemd passes, `BERTH_VM_INIT=systemd`), on cgroup
//! v2 and on systemd's v1 layout (`BERTH_VM_CGROUP=v1`), where the files differ. There
//! `BERTH_EXPECT_SYSTEMD` is set and a missing systemd fails each test; elsewhere (this host has
//! no systemd) each says so and returns.
//!
//! What is checked: the scope systemd makes at create holds the init before it runs, with the
//! spec's limits and device rules in systemd's view of the unit (`systemctl show`) and in the
//! cgroup files, kept through a daemon-reload; update,
//! pause and resume, exec; delete stops the unit and its directory goes; a create that fails
//! leaves no unit behind; containerd's runc shim and podman drive it as their systemd cgroup
//! options ask.

use berth_testsupport::{busybox_registry, cgroup_v2, Containerd, Peer, Podman, TestEnv, PODMAN_IMAGE};
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

/// The directory of a scope in `slice` (`berthtest-a.slice`): on v1, in `controller`'s hierarchy.
fn scope_dir(slice: &str, unit: &str, controller: &str) -> std::path::PathBuf {
    let root = if cgroup_v2() { Path::new("/sys/fs/cgroup").to_path_buf() } else { Path::new("/sys/fs/cgroup").join(controller) };
    root.join("berthtest.slice").join(slice).join(unit)
}

/// Whether the scope is frozen: cgroup.freeze on v2, the freezer's state on v1.
fn frozen(slice: &str, unit: &str) -> bool {
    match cgroup_v2() {
        true => read(&scope_dir(slice, unit, "").join("cgroup.freeze")) == "1",
        false => read(&scope_dir(slice, unit, "freezer").join("freezer.state")) == "FROZEN",
    }
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
        // A rule systemd has no name for: it hears of every char device instead.
        let rules = &mut c["linux"]["resources"]["devices"];
        if !rules.is_array() {
            *rules = json!([]);
        }
        rules.as_array_mut().unwrap().push(json!({"allow": true, "type": "c", "minor": 229, "access": "rw"}));
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    env.ok(&["--systemd-cgroup", "create", &id]);
    let unit = format!("berth-{id}.scope");
    let dir = |controller: &str| scope_dir("berthtest-a.slice", &unit, controller);
    let pid = env.pid(&id).to_string();
    let v2 = cgroup_v2();

    // Before the process runs: in its scope, systemd's limits and the files agree.
    assert_eq!(show(&unit, "ActiveState"), "active");
    assert_eq!(show(&unit, "Slice"), "berthtest-a.slice");
    assert_eq!(show(&unit, "Delegate"), "yes");
    assert_eq!((show(&unit, "TasksMax"), read(&dir("pids").join("pids.max"))), ("32".into(), "32".into()));
    if v2 {
        assert_eq!((show(&unit, "MemoryMax"), read(&dir("").join("memory.max"))), ("67108864".into(), "67108864".into()));
        assert_eq!((show(&unit, "CPUWeight"), read(&dir("").join("cpu.weight"))), ("20".into(), "20".into()));
        assert_eq!(read(&dir("").join("cpu.max")), "20000 100000");
    } else {
        assert_eq!((show(&unit, "MemoryLimit"), read(&dir("memory").join("memory.limit_in_bytes"))), ("67108864".into(), "67108864".into()));
        assert_eq!((show(&unit, "CPUShares"), read(&dir("cpu").join("cpu.shares"))), ("512".into(), "512".into()));
        assert_eq!(read(&dir("cpu").join("cpu.cfs_quota_us")), "20000");
        // A hierarchy systemd does not manage is made and joined by berth-oci itself.
        assert!(read(&dir("freezer").join("cgroup.procs")).lines().any(|p| p == pid), "the init is in its freezer cgroup");
    }
    for controller in ["memory", "pids"] {
        assert!(read(&dir(controller).join("cgroup.procs")).lines().any(|p| p == pid), "the init is in the scope ({controller}) before it runs");
    }

    // systemd is told the device rules too, as runc tells it: its view of the unit tells the
    // truth, and what it writes to the scope's cgroup when a property changes (update's, or
    // `systemctl set-property`) or at a daemon-reload keeps the container's rules.
    assert_eq!(show(&unit, "DevicePolicy"), "strict");
    assert!(show(&unit, "DeviceAllow").contains("/dev/char/1:3 rwm"), "{}", show(&unit, "DeviceAllow"));

    env.ok(&["start", &id]);
    let exec = env.ok(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert!(if v2 { exec.starts_with("0::") } else { exec.contains(":memory:") }, "{exec}");
    // The kernel lists entries in the order they came.
    let devices_list = dir("devices").join("devices.list");
    let sorted = |list: String| -> Vec<String> {
        let mut lines: Vec<String> = list.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let devices_before = (!v2).then(|| read(&devices_list));
    if let Some(before) = &devices_before {
        assert!(before.contains("c *:229 rw"), "berth's exact rules at create: {before}");
    }
    env.ok(&["update", "--memory", "96m", "--pids-limit", "64", &id]);
    if let Some(before) = devices_before {
        assert_eq!(
            sorted(read(&devices_list)),
            sorted(before),
            "an update without device rules leaves the container's as they were, not systemd's wider view"
        );
    }
    let (memory_property, memory_file) =
        if v2 { ("MemoryMax", dir("").join("memory.max")) } else { ("MemoryLimit", dir("memory").join("memory.limit_in_bytes")) };
    assert_eq!((show(&unit, memory_property), read(&memory_file)), ("100663296".into(), "100663296".into()));
    assert_eq!((show(&unit, "TasksMax"), read(&dir("pids").join("pids.max"))), ("64".into(), "64".into()));
    for systemctl in [&["set-property", "--runtime", &unit, "CPUShares=256"][..], &["daemon-reload"]] {
        let status = std::process::Command::new("systemctl").args(systemctl).status().expect("systemctl");
        assert!(status.success(), "systemctl {systemctl:?}");
        if !v2 {
            let list = read(&dir("devices").join("devices.list"));
            assert!(!list.contains("a *:*") && list.contains("c 1:3 rwm"), "devices after systemctl {systemctl:?}: {list}");
        }
    }
    // Both device programs (systemd's, berth-oci's) still let the container use its devices.
    assert_eq!(env.ok(&["exec", &id, "sh", "-c", "echo x > /dev/null && head -c 3 /dev/zero | wc -c"]).trim(), "3");
    env.ok(&["pause", &id]);
    assert_eq!((env.status(&id), frozen("berthtest-a.slice", &unit)), ("paused".into(), true));
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");

    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    for controller in ["memory", "pids", "freezer"] {
        assert!(!dir(controller).exists(), "the scope's directory went with it ({controller})");
    }
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
    assert!(!scope_dir("berthtest-b.slice", &unit, "memory").exists());
    // A plain path is the cgroupfs driver's: refused with the flag, as runc refuses it.
    env.bundle.edit(|c| c["linux"]["cgroupsPath"] = json!("/berth/plain"));
    let plain = env.fails(&["--systemd-cgroup", "create", &env.id("sdp")]);
    assert!(plain.contains("slice:prefix:name"), "{plain}");
    env.leak_check();
}

/// containerd's runc shim with `SystemdCgroup` (what `ctr run --runc-systemd-cgroup` and the CRI
/// plugin's `SystemdCgroup = true` set) passes `--systemd-cgroup` and a `slice:prefix:name` path
/// to berth-oci: the task runs in its scope; exec, pause and resume work through the shim; after
/// the task and container are removed, neither unit nor directory is left.
#[test]
fn containerd_drives_the_systemd_driver_through_its_runc_shim() {
    if !systemd_runs() {
        return;
    }
    let env = TestEnv::new("systemd-ctr");
    let registry = busybox_registry(&env);
    let image = format!("{}/test/busybox:v1", registry.address);
    let containerd = Containerd::start(&env);
    containerd.ok(&["images", "pull", "--plain-http", &image]);
    let id = format!("sdc-{}", std::process::id());
    let cgroup = format!("berthtest-c.slice:berth:{id}");
    let bin = env.bin.to_str().unwrap();
    containerd.ok(&["run", "-d", "--runc-binary", bin, "--runc-systemd-cgroup", "--cgroup", &cgroup, &image, &id, "sleep", "1000"]);
    containerd.wait_task(&id, "RUNNING");
    let unit = format!("berth-{id}.scope");
    let dir = scope_dir("berthtest-c.slice", &unit, "memory");
    let tasks = containerd.ok(&["task", "ls"]);
    let pid = tasks.lines().find(|l| l.starts_with(&id)).and_then(|l| l.split_whitespace().nth(1)).unwrap_or_default().to_string();
    assert_eq!((show(&unit, "ActiveState"), show(&unit, "Delegate")), ("active".into(), "yes".into()));
    assert!(read(&dir.join("cgroup.procs")).lines().any(|p| p == pid), "the task ({pid}) is in {}", dir.display());
    let state = std::fs::read_to_string(containerd.runtime_root().join(&id).join("state.json")).unwrap_or_default();
    assert!(state.contains("\"systemd_cgroup\":true"), "the shim ran berth-oci with --systemd-cgroup: {state:.300}");

    let exec = containerd.run(&["task", "exec", "--exec-id", "probe", &id, "sh", "-c", "exit 6"]);
    assert_eq!(exec.status.code(), Some(6), "{exec:?}");
    containerd.ok(&["task", "pause", &id]);
    containerd.wait_task(&id, "PAUSED");
    assert!(frozen("berthtest-c.slice", &unit));
    containerd.ok(&["task", "resume", &id]);
    containerd.wait_task(&id, "RUNNING");
    containerd.ok(&["task", "kill", "--signal", "KILL", &id]);
    containerd.wait_task(&id, "STOPPED");
    containerd.ok(&["task", "delete", &id]);
    containerd.ok(&["container", "delete", &id]);
    assert!(!dir.exists(), "the scope's directory went with the task");
    assert_ne!(show(&unit, "ActiveState"), "active", "the unit is gone");
    assert!(!containerd.runtime_root().join(&id).exists(), "berth-oci's state went with the task");
    containerd.teardown();
    drop(registry);
    env.leak_check();
}

/// podman with `--cgroup-manager systemd` (its default where systemd runs) passes
/// `--systemd-cgroup` and `<slice>:libpod:<id>` to berth-oci: the container runs in its scope
/// (conmon in the one podman asks systemd for over the system bus); exec and stop work; after
/// `rm`, neither unit nor directory nor state is left.
#[test]
fn podman_drives_the_systemd_driver() {
    if !systemd_runs() {
        return;
    }
    let env = TestEnv::new("systemd-podman");
    let podman = Podman::with_systemd(&env, "berthtest-p.slice");
    podman.import_busybox();
    let args = podman.with_options(&["run", "-d", "--name", "berth-sd", PODMAN_IMAGE, "sleep", "1000"]);
    let id = podman.ok(&args.iter().map(String::as_str).collect::<Vec<_>>()).trim().to_string();
    let unit = format!("libpod-{id}.scope");
    let dir = scope_dir("berthtest-p.slice", &unit, "memory");
    let state = std::fs::read_to_string(Path::new("/run/berth-oci").join(&id).join("state.json")).unwrap_or_default();
    assert!(state.contains("\"systemd_cgroup\":true"), "podman ran berth-oci with --systemd-cgroup: {state:.300}");
    assert_eq!((show(&unit, "ActiveState"), show(&unit, "Delegate")), ("active".into(), "yes".into()));
    let pid = podman.ok(&["inspect", "--format", "{{.State.Pid}}", "berth-sd"]).trim().to_string();
    assert!(read(&dir.join("cgroup.procs")).lines().any(|p| p == pid), "the container ({pid}) is in {}", dir.display());

    let exec = podman.run(&["exec", "berth-sd", "sh", "-c", "exit 5"]);
    assert_eq!(exec.status.code(), Some(5), "{exec:?}");
    podman.ok(&["stop", "--time", "0", "berth-sd"]);
    podman.ok(&["rm", "berth-sd"]);
    assert!(!dir.exists(), "the scope's directory went with the container");
    assert_ne!(show(&unit, "ActiveState"), "active", "the unit is gone");
    assert!(!Path::new("/run/berth-oci").join(&id).exists(), "berth-oci's state went with the container");
    podman.teardown();
    env.leak_check();
}
