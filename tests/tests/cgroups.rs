//! Resources on the machine's cgroup hierarchy: v1 on this host, v2 in the test VM
//! (vm/run-in-vm.sh), with the same tests. Written values are read back from the cgroup files,
//! limits are enforced on real processes, and `update` changes a live container.

use berth_testsupport::{cgroup_dir, cgroup_file, cgroup_v2, TestEnv};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn resources_are_written_and_updated() {
    let v2 = cgroup_v2();
    let mut env = TestEnv::new("cg-resources");
    env.bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432, "swap": 134217728});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"});
        c["linux"]["resources"]["pids"] = json!({"limit": 32});
        if v2 {
            c["linux"]["resources"]["unified"] = json!({"memory.high": "50331648"});
        } else {
            c["linux"]["resources"]["memory"]["swappiness"] = json!(10);
            c["linux"]["resources"]["memory"]["kernelTCP"] = json!(50593792);
        }
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    let id = env.id("res");
    env.ok(&["create", &id]);
    let file = |controller: &str, name: &str| cgroup_file(controller, &id, name);
    if v2 {
        assert_eq!(file("memory", "memory.max"), "67108864");
        assert_eq!(file("memory", "memory.low"), "33554432");
        assert_eq!(file("memory", "memory.swap.max"), "67108864", "v2 swap excludes memory");
        assert_eq!(file("memory", "memory.high"), "50331648");
        // runc's and crun's conversion of shares 512.
        assert_eq!(file("cpu", "cpu.weight"), "20");
        assert_eq!(file("cpu", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(file("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(file("memory", "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(file("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(file("memory", "memory.swappiness"), "10");
        assert_eq!(file("memory", "memory.kmem.tcp.limit_in_bytes"), "50593792");
        assert_eq!(file("cpu", "cpu.shares"), "512");
        assert_eq!(file("cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(file("cpu", "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(file("cpuset", "cpuset.cpus"), "0");
    assert_eq!(file("pids", "pids.max"), "32");
    let pid = env.pid(&id).to_string();
    let controllers: &[&str] = if v2 { &["pids"] } else { &["pids", "memory", "cpu", "cpuset", "freezer", "devices"] };
    for controller in controllers {
        assert!(file(controller, "cgroup.procs").lines().any(|p| p == pid), "the init is in its {controller} cgroup before it runs");
    }

    env.ok(&["start", &id]);
    // An exec'd process is in every hierarchy of the container's cgroup too (on v1 it moves itself).
    let pid_file = env.dir.join("exec.pid");
    env.ok(&["exec", "--detach", "--pid-file", pid_file.to_str().unwrap(), &id, "sleep", "60"]);
    let exec_pid = std::fs::read_to_string(&pid_file).unwrap();
    for controller in controllers {
        assert!(file(controller, "cgroup.procs").lines().any(|p| p == exec_pid), "the exec'd process is in the {controller} cgroup");
    }
    env.ok(&["update", "--memory", "96m", "--memory-swap", "192m", "--pids-limit", "64", "--cpu-share", "256", &id]);
    assert_eq!(file("pids", "pids.max"), "64");
    if v2 {
        assert_eq!(file("memory", "memory.max"), (96u64 << 20).to_string());
        assert_eq!(file("memory", "memory.swap.max"), (96u64 << 20).to_string());
        assert_eq!(file("cpu", "cpu.weight"), "10");
    } else {
        assert_eq!(file("memory", "memory.limit_in_bytes"), (96u64 << 20).to_string());
        assert_eq!(file("memory", "memory.memsw.limit_in_bytes"), (192u64 << 20).to_string());
        assert_eq!(file("cpu", "cpu.shares"), "256");
    }
    let resources = env.dir.join("resources.json");
    std::fs::write(&resources, r#"{"pids": {"limit": 16}, "cpu": {"quota": 50000}}"#).unwrap();
    env.ok(&["update", "-r", resources.to_str().unwrap(), &id]);
    assert_eq!(file("pids", "pids.max"), "16");
    if v2 {
        assert_eq!(file("cpu", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(file("cpu", "cpu.cfs_quota_us"), "50000");
    }
    env.fails(&["update", "--memory", "lots", &id]);
    // A limit below what the container already uses, with checkBeforeUpdate: refused, nothing written.
    std::fs::write(&resources, r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#).unwrap();
    let stderr = env.fails(&["update", "-r", resources.to_str().unwrap(), &id]);
    assert!(stderr.contains("below the current usage"), "{stderr}");
    let limit_file = if v2 { "memory.max" } else { "memory.limit_in_bytes" };
    assert_eq!(file("memory", limit_file), (96u64 << 20).to_string());
    assert_eq!(env.status(&id), "running");
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

/// Total CPU time of the container's cgroup in nanoseconds, as `events --stats` reports it.
fn cpu_usage(env: &TestEnv, id: &str) -> u64 {
    let event: Value = serde_json::from_str(&env.ok(&["events", "--stats", id])).unwrap();
    event["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or_else(|| panic!("no cpu usage in {event}"))
}

/// CPU time the container used over `window`, as a fraction of one CPU.
fn cpu_share_over(env: &TestEnv, id: &str, window: Duration) -> f64 {
    let (before, started) = (cpu_usage(env, id), Instant::now());
    std::thread::sleep(window);
    let used = cpu_usage(env, id) - before;
    used as f64 / started.elapsed().as_nanos() as f64
}

#[test]
fn cpu_quota_throttles_and_freeze_stops_a_busy_loop() {
    let mut env = TestEnv::new("cg-cpu");
    env.bundle.edit(|c| {
        c["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000});
        c["process"]["args"] = json!(["sh", "-c", "while :; do :; done"]);
    });
    let id = env.id("busy");
    env.ok(&["run", "-d", &id]);
    let throttled = cpu_share_over(&env, &id, Duration::from_millis(1500));
    println!("busy loop under a 0.2 CPU quota used {throttled:.3} CPU");
    assert!(throttled < 0.5, "the quota throttles the loop: {throttled:.3} CPU");

    env.ok(&["update", "--cpu-quota", "-1", &id]);
    let free = cpu_share_over(&env, &id, Duration::from_millis(1000));
    println!("without the quota it used {free:.3} CPU (ratio {:.2})", throttled / free);
    assert!(free > throttled, "lifting the quota lets it run: {free:.3} vs {throttled:.3}");

    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    let frozen = cpu_share_over(&env, &id, Duration::from_millis(500));
    assert!(frozen < 0.01, "a frozen loop uses no CPU: {frozen:.3}");
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");
    let thawed = cpu_share_over(&env, &id, Duration::from_millis(500));
    assert!(thawed > 0.05, "a thawed loop runs again: {thawed:.3}");
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

#[test]
fn denied_devices_can_be_neither_created_nor_opened() {
    let mut env = TestEnv::new("cg-devices");
    env.bundle.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
        }
        // /dev/kmsg (1:11) reaches the container only as a bind mount; no rule allows it.
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]}));
        // The nodes go on the container's /dev tmpfs: /tmp may be a nodev mount (it is in the VM).
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "
            mknod /dev/test-null c 1 3 && echo allowed > /dev/test-null && echo created-allowed
            mknod /dev/test-mem c 1 1 2>/dev/null && echo created-denied
            true 2>/dev/null < /kmsg && echo opened-denied
            true < /dev/null && echo opened-allowed
            true"
        ]);
    });
    let id = env.id("dev");
    let out = env.oci(&["run", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "created-allowed\nopened-allowed\n");
    env.leak_check();
}

/// `update` leaves the device rules it is not given as they are (as runc's update does): a
/// privileged container, allowed every device, keeps /dev/kmsg after a change of its CPU shares
/// (opened for writing, which needs no privilege of its own; any device the defaults lack would
/// do). Other rules it is given are applied, and the container, opening /dev/null all along,
/// never finds it denied: a v1 rewrite starts with a deny of all, so the container is frozen
/// meanwhile. (On v2 a new eBPF program is attached before the old one goes: a few rounds there,
/// where the VM's emulated CPUs make each slow.)
#[test]
fn update_keeps_device_rules_it_is_not_given_and_applies_new_ones_without_a_gap() {
    let mut env = TestEnv::new("cg-update-devices");
    // `true`, not `:`: a failed redirection of a special built-in ends the shell.
    env.bundle.edit(|c| {
        c["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        c["linux"]["devices"] = json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 420}]);
        c["process"]["args"] = json!(["sh", "-c", "while :; do true > /dev/null || echo denied >> /dev/shm/denied; done"]);
    });
    let id = env.id("upd");
    env.ok(&["run", "-d", &id]);
    let kmsg = || env.ok(&["exec", &id, "sh", "-c", "if [ -c /dev/kmsg ] && true >> /dev/kmsg; then echo opened; else echo denied; fi 2>/dev/null"]);
    assert_eq!(kmsg(), "opened\n");
    let resources = env.dir.join("resources.json");
    let update = |doc: Value| {
        std::fs::write(&resources, doc.to_string()).unwrap();
        env.ok(&["update", "-r", resources.to_str().unwrap(), &id]);
    };
    update(json!({"cpu": {"shares": 256}}));
    assert_eq!(kmsg(), "opened\n", "an update without device rules keeps the container's");
    if !cgroup_v2() {
        assert_eq!(cgroup_file("devices", &id, "devices.list"), "a *:* rwm");
    }
    env.ok(&["update", "--pids-limit", "100", &id]);
    assert_eq!(kmsg(), "opened\n", "so does one from flags");

    let (deny_all, allow_all) = (json!({"devices": [{"allow": false, "access": "rwm"}]}), json!({"devices": [{"allow": true, "access": "rwm"}]}));
    update(deny_all.clone());
    assert_eq!(kmsg(), "denied\n", "new rules are applied");
    for _ in 0..if cgroup_v2() { 2 } else { 20 } {
        update(allow_all.clone());
        update(deny_all.clone());
    }
    assert_eq!(kmsg(), "denied\n");
    let denied = env.ok(&["exec", &id, "sh", "-c", "cat /dev/shm/denied 2>/dev/null | wc -l"]);
    assert_eq!(denied.trim(), "0", "times the container's opens of /dev/null were denied while its rules were rewritten");
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

#[test]
fn memory_limit_oom_kills_and_pids_limit_stops_forks() {
    let mut env = TestEnv::new("cg-enforce");
    env.bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
        // A 64 MiB buffer cannot fit in 32 MiB.
        c["process"]["args"] = json!(["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1 && echo survived"]);
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
        // The hog is a child shell that volunteers to be the OOM killer's victim, so the container
        // lives on.
        c["process"]["args"] = json!(["sh", "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.05; done; sh -c 'echo 1000 > /proc/self/oom_score_adj; exec dd if=/dev/zero of=/dev/null bs=64M count=1'; sleep 60"]);
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
    // Generous: under the VM's emulated CPU everything is several times slower.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut oom, mut others) = (None, 0);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match received.recv_timeout(left) {
            Ok(line) if line.contains(r#""type":"oom""#) => {
                oom = Some(line);
                break;
            }
            Ok(_) => others += 1,
            Err(_) => break,
        }
    }
    let status = env.status(&id);
    let oom = oom.unwrap_or_else(|| panic!("no oom event within 60 s ({others} other events; container {status})"));
    let oom: serde_json::Value = serde_json::from_str(&oom).unwrap();
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

#[test]
fn hostile_resources_are_refused_and_nothing_is_created() {
    let mut env = TestEnv::new("cg-hostile");
    let cases = [
        json!({"unified": {"../memory.max": "1"}}),
        json!({"unified": {"memory.max/../../../cgroup.procs": "1"}}),
        json!({"unified": {"no.such_key": "1"}}),
        json!({"unified": {"memory.max": "1\n2"}}),
        json!({"memory": {"limit": -5}}),
        json!({"memory": {"swappiness": 1000}}),
        json!({"cpu": {"quota": 9223372036854775808u64}}),
        json!({"cpu": {"shares": 0, "cpus": "0-"}}),
        json!({"hugepageLimits": [{"pageSize": "3KB", "limit": 1}]}),
        json!({"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}),
        json!({"blockIO": {"weight": 5000}}),
        json!({"rdma": {"mlx5_0 hca_handle": {"hcaHandles": 1}}}),
        // No RDMA device here: the kernel (v2) or the missing controller (this v1 host) refuses.
        json!({"rdma": {"no-such-hca": {"hcaHandles": 2, "hcaObjects": 100}}}),
    ];
    for resources in cases {
        env.bundle.edit(|c| c["linux"]["resources"] = resources.clone());
        let id = env.id("bad");
        let out = env.oci(&["create", &id]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{resources} was accepted");
        assert!(!stderr.trim().is_empty() && !stderr.contains("panicked"), "{resources}: {stderr}");
        for controller in ["memory", "cpu", "pids"] {
            assert!(!cgroup_dir(controller, &id).exists(), "{resources} left a cgroup behind");
        }
        assert_eq!(env.status(&id), "absent", "{resources}");
    }
    env.leak_check();
}
