//! What the container sees is what config.json says: mounts, read-only and masked paths, hostname,
//! namespaces, users, capabilities, rlimits, seccomp, fds, sysctls.

use berth_testsupport::TestEnv;
use serde_json::json;

/// Runs the bundle's process to completion and returns (exit code, stdout, stderr).
fn run(env: &TestEnv, name: &str) -> (i32, String, String) {
    let id = env.id(name);
    let out = env.oci(&["run", &id]);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn run_ok(env: &TestEnv, name: &str) -> String {
    let (code, out, err) = run(env, name);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn mounts_readonly_root_and_masks() {
    let mut env = TestEnv::new("mounts");
    let shared = env.dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("file"), "host data").unwrap();
    let source = shared.to_str().unwrap().to_string();
    env.bundle.edit(|c| {
        c["root"]["readonly"] = json!(true);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/data", "type": "bind", "source": source, "options": ["rbind", "ro"]}));
        mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m", "mode=1777"]}));
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "cat /data/file; echo; touch /data/x 2>/dev/null && echo data-writable; touch /x 2>/dev/null && echo root-writable; \
             touch /scratch/ok && echo scratch-ok; grep ' /scratch ' /proc/self/mountinfo | grep -c nosuid; \
             cat /proc/kcore 2>/dev/null | head -c1 | wc -c; ls /proc/scsi 2>/dev/null | wc -l; \
             echo 1 > /proc/sys/kernel/shm_rmid_forced 2>/dev/null && echo procsys-writable; echo done"
        ]);
    });
    let out = run_ok(&env, "mounts");
    assert_eq!(out, "host data\nscratch-ok\n1\n0\n0\ndone\n", "masked/readonly paths and mounts");
    assert!(!shared.join("x").exists());
    env.leak_check();
}

#[test]
fn hostname_env_cwd_user() {
    let mut env = TestEnv::new("process");
    env.bundle.edit(|c| {
        c["hostname"] = json!("box-1");
        c["process"]["env"] = json!(["PATH=/bin", "GREETING=hi there"]);
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["user"] = json!({"uid": 65534, "gid": 65534, "additionalGids": [5, 6], "umask": 63});
        c["process"]["args"] = json!(["sh", "-c", "hostname; echo $GREETING; pwd; id -u; id -g; id -G; umask"]);
    });
    let out = run_ok(&env, "proc");
    assert_eq!(out, "box-1\nhi there\n/tmp\n65534\n65534\n65534 5 6\n0077\n");
    env.leak_check();
}

#[test]
fn capabilities_are_exactly_the_spec_sets() {
    let mut env = TestEnv::new("caps");
    env.bundle.edit(|c| {
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"],
        });
        c["process"]["args"] = json!(["sh", "-c", "grep ^Cap /proc/self/status"]);
    });
    let out = run_ok(&env, "caps");
    // CAP_CHOWN=0, CAP_KILL=5, CAP_NET_BIND_SERVICE=10
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000021"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000021"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000421"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    env.leak_check();
}

#[test]
fn default_spec_process_has_no_inheritable_or_ambient_caps() {
    let mut env = TestEnv::new("caps-default");
    env.bundle.set_args(&["sh", "-c", "grep -E '^Cap(Inh|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status"]);
    let out = run_ok(&env, "capsdef");
    assert_eq!(out, "CapInh:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n");
    env.leak_check();
}

#[test]
fn rlimits_and_only_stdio_fds() {
    let mut env = TestEnv::new("rlimits");
    env.bundle.edit(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}, {"type": "RLIMIT_NPROC", "soft": 100, "hard": 100}]);
        // ls opens the directory it lists: fd 3 is ls's own.
        c["process"]["args"] = json!(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u; ls /proc/self/fd | tr '\\n' ' '"]);
    });
    let out = run_ok(&env, "rl");
    assert_eq!(out, "512\n1000\n100\n0 1 2 3 ");
    env.leak_check();
}

#[test]
fn preserve_fds_passes_exactly_those() {
    let mut env = TestEnv::new("preserve");
    env.bundle.set_args(&["sh", "-c", "cat <&3; ls /proc/self/fd | tr '\\n' ' '"]);
    let file = env.dir.join("passed");
    std::fs::write(&file, "through fd 3\n").unwrap();
    let id = env.id("pfd");
    let script = format!("exec 3<{} && exec {} --root {} run --preserve-fds 1 {id}", file.display(), env.bin.display(), env.root.display());
    let out = std::process::Command::new("sh").arg("-c").arg(&script).current_dir(&env.bundle.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through fd 3\n0 1 2 3 4 ");
    env.leak_check();
}

#[test]
fn seccomp_errno_rule_denies_syscall() {
    let mut env = TestEnv::new("seccomp");
    env.bundle.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
                {"names": ["not_a_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"}
            ]
        });
        c["process"]["args"] = json!(["sh", "-c", "mkdir /tmp/d 2>&1; kill -USR1 $$ 2>/dev/null; echo usr1=$?; kill -0 $$; echo zero=$?"]);
    });
    let out = run_ok(&env, "sc");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("usr1=1") && out.contains("zero=0"), "kill is denied only for signal 10: {out}");
    assert!(!env.bundle.dir.join("rootfs/tmp/d").exists());
    env.leak_check();
}

#[test]
fn sysctls_namespaced_ones_apply() {
    let mut env = TestEnv::new("sysctl");
    env.bundle.edit(|c| {
        c["linux"]["sysctl"] = json!({"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"});
        c["process"]["args"] = json!(["sh", "-c", "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward"]);
    });
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    let out = run_ok(&env, "sysctl");
    assert_eq!(out, "1234\n1\n");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(), host_shmmni, "host untouched");
    env.leak_check();
}

#[test]
fn user_namespace_maps_root() {
    let mut env = TestEnv::new("userns");
    env.bundle.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        // mknod is impossible in a user namespace: the default devices are bind mounts then.
        c["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo devnull-ok"]);
    });
    let id = env.id("userns");
    let out = env.oci(&["run", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    assert_eq!(lines[2], "devnull-ok");
    env.leak_check();
}

#[test]
fn join_network_namespace_by_path() {
    let mut env = TestEnv::new("netns-join");
    env.bundle.set_args(&["sleep", "60"]);
    let first = env.id("netns-a");
    env.ok(&["run", "-d", &first]);
    env.wait_status(&first, "running");
    let pid = env.pid(&first);
    let ns_path = format!("/proc/{pid}/ns/net");
    let expected = std::fs::read_link(&ns_path).unwrap();
    env.bundle.edit(|c| {
        let namespaces = c["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|n| n["type"] != "network");
        namespaces.push(json!({"type": "network", "path": ns_path}));
        c["process"]["args"] = json!(["readlink", "/proc/self/ns/net"]);
    });
    let out = run_ok(&env, "netns-b");
    assert_eq!(out.trim(), expected.to_string_lossy());
    env.ok(&["delete", "--force", &first]);
    env.leak_check();
}

#[test]
fn devices_from_the_spec_are_created() {
    let mut env = TestEnv::new("devices");
    env.bundle.edit(|c| {
        c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 432, "uid": 0, "gid": 0}]);
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
        c["process"]["args"] = json!(["sh", "-c", "stat -c '%t:%T %a %F' /dev/fuse /dev/null; ls -l /dev/stdout | grep -c /proc/self/fd/1"]);
    });
    let out = run_ok(&env, "dev");
    assert_eq!(out, "a:e5 660 character special file\n1:3 666 character special file\n1\n");
    env.leak_check();
}

#[test]
fn no_pivot_keeps_init_and_exec_in_the_rootfs() {
    let mut env = TestEnv::new("nopivot");
    std::fs::write(env.bundle.dir.join("rootfs/marker"), "inside\n").unwrap();
    let check = "cat /marker; [ -e /usr ] && echo host-root-visible; true";
    env.bundle.set_args(&["sh", "-c", check]);
    let id = env.id("np");
    let out = env.oci(&["run", "--no-pivot", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n");

    // An exec'd process joins the mount namespace, whose root is the host's here: it must still
    // land in the container's root.
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("npexec");
    env.ok(&["run", "-d", "--no-pivot", &id]);
    assert_eq!(env.ok(&["exec", &id, "sh", "-c", check]), "inside\n");
    env.ok(&["delete", "--force", &id]);
    std::fs::remove_file(env.bundle.dir.join("rootfs/marker")).unwrap();
    env.leak_check();
}

#[test]
fn cgroup_namespace_uts_domain_and_scheduling() {
    let mut env = TestEnv::new("sched");
    env.bundle.edit(|c| {
        c["domainname"] = json!("example.test");
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["process"]["oomScoreAdj"] = json!(300);
        c["process"]["args"] = json!(["sh", "-c", "grep -vc ':/$' /proc/self/cgroup; cat /proc/sys/kernel/domainname; grep ^policy /proc/self/sched; cut -d' ' -f19 /proc/self/stat; ionice -p $$; uname -m; cat /proc/self/oom_score_adj"]);
    });
    let out = run_ok(&env, "sched");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "every hierarchy shows the container's own cgroup as its root: {out}");
    assert_eq!(lines[1], "example.test");
    assert!(lines[2].ends_with(" 3"), "SCHED_BATCH is policy 3: {out}");
    assert_eq!(lines[3], "5");
    assert!(lines[4].contains("best-effort") && lines[4].contains('6'), "{out}");
    assert_eq!(lines[5], "i686");
    assert_eq!(lines[6], "300");
    env.leak_check();
}

#[test]
fn mount_propagation_from_host_reaches_rslave_container_mounts() {
    let mut env = TestEnv::new("propagation");
    let shared = env.dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    // A shared mount point on the host; the container's rslave bind must see later host mounts.
    let run = |args: &[&str]| assert!(std::process::Command::new(args[0]).args(&args[1..]).status().unwrap().success(), "{args:?}");
    let shared_str = shared.to_str().unwrap().to_string();
    run(&["mount", "--bind", &shared_str, &shared_str]);
    run(&["mount", "--make-shared", &shared_str]);
    env.bundle.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/shared", "type": "bind", "source": shared_str, "options": ["rbind", "rslave"]}));
        c["process"]["args"] =
            json!(["sh", "-c", "for i in $(seq 100); do [ -e /shared/late/marker ] && echo propagated && exit 0; sleep 0.05; done; echo missing"]);
    });
    let id = env.id("prop");
    let child = env.command(&["run", &id]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let late_src = env.dir.join("late-src");
    std::fs::create_dir_all(&late_src).unwrap();
    std::fs::write(late_src.join("marker"), "x").unwrap();
    std::fs::create_dir_all(shared.join("late")).unwrap();
    run(&["mount", "--bind", late_src.to_str().unwrap(), shared.join("late").to_str().unwrap()]);
    let out = child.wait_with_output().unwrap();
    run(&["umount", shared.join("late").to_str().unwrap()]);
    run(&["umount", &shared_str]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "propagated");
    env.leak_check();
}

#[test]
fn rshared_root_propagation_lets_container_mounts_reach_the_host() {
    let mut env = TestEnv::new("propagation-rshared");
    let shared = env.dir.join("shared");
    std::fs::create_dir_all(shared.join("inner")).unwrap();
    let sh = |args: &[&str]| assert!(std::process::Command::new(args[0]).args(&args[1..]).status().unwrap().success(), "{args:?}");
    let shared_str = shared.to_str().unwrap().to_string();
    sh(&["mount", "--bind", &shared_str, &shared_str]);
    sh(&["mount", "--make-shared", &shared_str]);
    // What the CRI asks for a Bidirectional mount (containerd's spec too): an rshared root and an
    // rshared bind. With the runtime's rslave root made first, the bind falls out of the host's
    // peer group and the container's mount never reaches the host.
    env.bundle.edit(|c| {
        c["linux"]["rootfsPropagation"] = json!("rshared");
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/shared", "type": "bind", "source": shared_str, "options": ["rbind", "rshared"]}));
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
        }
        // berth-oci spec's profile refuses mount(2) to a container without CAP_SYS_ADMIN.
        c["linux"].as_object_mut().unwrap().remove("seccomp");
        c["process"]["args"] = json!(["sh", "-c", "mount -t tmpfs from-container /shared/inner && touch /shared/inner/marker && echo mounted"]);
    });
    let (code, out, err) = run(&env, "rshared");
    let reached = shared.join("inner/marker").exists();
    if reached {
        sh(&["umount", shared.join("inner").to_str().unwrap()]);
    }
    sh(&["umount", &shared_str]);
    assert_eq!((code, out.trim()), (0, "mounted"), "{err}");
    assert!(reached, "the container's tmpfs on its rshared bind is seen on the host");
    env.leak_check();
}
