//! berth-oci takes other people's bundles and reports every failure: the bundles Debian's `runc
//! spec` and `crun spec` write run as they do under runc (exit status, output, the process's
//! capability sets, loopback up); what stops a process from running fails `create`, the error in
//! `--log` as runc writes it, nothing left behind.

use berth_testsupport::{busybox_rootfs, have, Bundle, TestEnv};
use std::path::Path;
use std::process::Command;

/// What the container reports: its capability sets and its loopback's state, then exit 3.
const PROBE: &str = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; cat /sys/class/net/lo/operstate; exit 3";

/// A bundle from `tool spec` (runc or crun), as it wrote it but for plain stdio and our probe.
fn foreign_bundle(env: &TestEnv, tool: &str) -> std::path::PathBuf {
    let dir = env.dir.join(format!("{tool}-bundle"));
    busybox_rootfs(&dir.join("rootfs"));
    let out = Command::new(tool).arg("spec").current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "{tool} spec: {}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["sh", "-c", PROBE]);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    dir
}

/// `runtime --root <root> run --bundle <bundle> <id>`: exit code and stdout.
fn run_with(env: &TestEnv, runtime: &Path, root: &Path, bundle: &Path, id: &str) -> (Option<i32>, String) {
    let mut command = Command::new(runtime);
    command.arg("--root").arg(root).args(["run", "--bundle"]).arg(bundle).arg(id).stdin(std::process::Stdio::null());
    let out = env.capture(&mut command);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bundles_from_runc_spec_and_crun_spec_run_as_under_runc() {
    let env = TestEnv::new("compat-spec");
    for tool in ["runc", "crun"] {
        if !have(tool) {
            panic!("{tool} is not installed (scripts/install-deps.sh installs it)");
        }
        let bundle = foreign_bundle(&env, tool);
        let runc = run_with(&env, Path::new("/usr/sbin/runc"), &env.dir.join("runc-root"), &bundle, &format!("compat-runc-{}", std::process::id()));
        let id = env.id("compat");
        let ours = run_with(&env, &env.bin, &env.root, &bundle, &id);
        assert_eq!(runc.0, Some(3), "runc on {tool}'s bundle: {runc:?}");
        assert!(runc.1.contains("CapAmb:\t0000000000000000") && runc.1.trim_end().ends_with("unknown"), "runc on {tool}'s bundle: {}", runc.1);
        assert_eq!(ours, runc, "berth-oci vs runc on the bundle of `{tool} spec`");
    }
    env.leak_check();
}

/// `berth-oci --log <file> --log-format json create`: fails, with the error as the log's last
/// `"level":"error"` line (where containerd looks); the container does not exist afterwards. The
/// runtime starts without CAP_SYS_RESOURCE in its bounding set (as root here has none, while the
/// cgroup v2 VM's root has it), so a spec that asks for it names a capability the caller lacks.
fn create_fails(env: &TestEnv, edit: impl FnOnce(&mut serde_json::Value), expected: &str) {
    let bundle = env.dir.join("failing-bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    let mut b = Bundle::new(&bundle);
    b.set_args(&["true"]).edit(edit);
    let log = env.dir.join("create.log");
    let _ = std::fs::remove_file(&log);
    let id = env.id("fails");
    let (log_arg, bundle_arg) = (log.display().to_string(), bundle.display().to_string());
    let mut command = env.command(&["--log", &log_arg, "--log-format", "json", "create", "--bundle", &bundle_arg, &id]);
    // SAFETY: between fork and exec only prctl, which is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            const CAP_SYS_RESOURCE: libc::c_ulong = 24;
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
            Ok(())
        })
    };
    let out = env.capture(&mut command);
    assert!(!out.status.success(), "create succeeded: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last_error = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|l| l["level"] == "error")
        .unwrap_or_else(|| panic!("no error line in the log: {text:?}"));
    let msg = last_error["msg"].as_str().unwrap();
    assert!(msg.contains(expected), "the log's error {msg:?} does not say {expected:?}");
    assert_eq!(env.status(&id), "absent", "a failed create leaves no container");
}

#[test]
fn what_stops_the_process_fails_create_with_the_reason_in_the_log() {
    let env = TestEnv::new("compat-create-fails");
    // A capability the caller lacks (see create_fails).
    create_fails(
        &env,
        |c| {
            for set in ["bounding", "permitted", "effective"] {
                c["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_RESOURCE".into());
            }
        },
        "capabilities",
    );
    // A user the container's user namespace does not map.
    create_fails(
        &env,
        |c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
            c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
            c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
            c["process"]["user"] = serde_json::json!({"uid": 5000, "gid": 0});
        },
        "setresuid 5000",
    );
    // A seccomp filter over the kernel's size limit (4,096 instructions).
    create_fails(
        &env,
        |c| {
            let rules: Vec<serde_json::Value> = (0..20000)
                .map(|i| serde_json::json!({"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": i, "op": "SCMP_CMP_EQ"}]}))
                .collect();
            c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
        },
        "seccomp",
    );
    env.leak_check();
}

#[test]
fn hooks_without_env_inherit_the_runtimes_environment() {
    let env = TestEnv::new("compat-hook-env");
    let (inherited, given) = (env.dir.join("inherited"), env.dir.join("given"));
    let hook = |out: &Path, hook_env: Option<Vec<&str>>| {
        let mut hook = serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"[$BERTH_HOOK_PROBE]\" > {}", out.display())]});
        if let Some(hook_env) = hook_env {
            hook["env"] = serde_json::json!(hook_env);
        }
        hook
    };
    let hooks = serde_json::json!({"createRuntime": [hook(&inherited, None), hook(&given, Some(vec!["OTHER=1"]))]});
    let mut bundle = Bundle::new(&env.dir.join("hooks-bundle"));
    bundle.set_args(&["true"]).edit(|c| c["hooks"] = hooks);
    let id = env.id("hooks");
    let mut command = env.command(&["run", "--bundle", &bundle.dir.display().to_string(), &id]);
    command.env("BERTH_HOOK_PROBE", "from-the-runtime");
    let out = env.capture(&mut command);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&inherited).unwrap().trim(), "[from-the-runtime]", "no env: the runtime's");
    assert_eq!(std::fs::read_to_string(&given).unwrap().trim(), "[]", "an env: exactly it");
    env.leak_check();
}

#[test]
fn exec_takes_the_containers_personality_and_waits_on_a_pause_only_when_told() {
    let env = TestEnv::new("compat-exec");
    let mut bundle = Bundle::new(&env.dir.join("exec-bundle"));
    bundle.set_args(&["sleep", "100"]).edit(|c| c["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"}));
    let id = env.id("exec");
    env.ok(&["run", "-d", "--bundle", &bundle.dir.display().to_string(), &id]);
    assert_eq!(env.ok(&["exec", &id, "uname", "-m"]).trim(), "i686", "an exec runs in the container's execution domain");

    env.ok(&["pause", &id]);
    let refused = env.fails(&["exec", &id, "true"]);
    assert!(refused.contains("--ignore-paused"), "{refused}");
    // With the flag the exec joins the frozen container and runs once it is resumed.
    let mut exec = env.command(&["exec", "--ignore-paused", &id, "sh", "-c", "exit 7"]);
    let mut exec = exec.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(exec.try_wait().unwrap().is_none(), "a frozen exec does not finish before resume");
    env.ok(&["resume", &id]);
    assert_eq!(exec.wait().unwrap().code(), Some(7), "the exec ran to its end after the resume");
    env.ok(&["delete", "-f", &id]);
    env.leak_check();
}

/// A device of `linux.devices` gets what the spec's cgroup rules give it and no more, as under
/// runc: `c 1:11 r` opens for reading only (berth-oci used to add `rwm` for every such device).
#[test]
fn a_spec_device_gets_only_the_access_its_rules_give() {
    let env = TestEnv::new("compat-device-access");
    let mut bundle = Bundle::new(&env.dir.join("device-bundle"));
    // (The node exists and reads: the container ran; only the write-open is refused.)
    bundle.set_args(&["sh", "-c", "test -c /dev/k && echo node; exec 3>/dev/k && echo opened"]).edit(|c| {
        c["linux"]["devices"] = serde_json::json!([{"path": "/dev/k", "type": "c", "major": 1, "minor": 11, "fileMode": 420, "uid": 0, "gid": 0}]);
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}));
    });
    let id = env.id("device-r");
    let out = env.capture(&mut env.command(&["run", "--bundle", &bundle.dir.display().to_string(), &id]));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "node", "the container ran, and a write-open of a read-only device failed: {stderr}");
    assert!(stderr.contains("can't create /dev/k: Operation not permitted"), "{stderr}");
    env.leak_check();
}

/// A `/dev` bound from elsewhere (the host's, as `docker run -v /dev:/dev` and privileged
/// setups give it) is used as it is, as runc uses it: the spec's devices are not made in it, nor
/// the default nodes and links, since they would land in that directory for everyone who sees it.
#[test]
fn a_bound_dev_gets_no_nodes_made_in_it() {
    let env = TestEnv::new("compat-bound-dev");
    let host_dev = env.dir.join("host-dev");
    std::fs::create_dir_all(&host_dev).unwrap();
    std::fs::write(host_dev.join("own"), "the bound directory\n").unwrap();
    // A null device, as a real /dev has (the masked paths are bound from it).
    assert!(Command::new("mknod").arg(host_dev.join("null")).args(["c", "1", "3"]).status().unwrap().success());
    let mut bundle = Bundle::new(&env.dir.join("bound-dev-bundle"));
    bundle.set_args(&["sh", "-c", "cat /dev/own; ls -A /dev | tr '\\n' ' '"]).edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        mounts.push(serde_json::json!({"destination": "/dev", "type": "bind", "source": host_dev, "options": ["rbind", "rw"]}));
        c["linux"]["devices"] = serde_json::json!([{"path": "/dev/k", "type": "c", "major": 1, "minor": 11, "fileMode": 420}]);
    });
    let id = env.id("bound-dev");
    let said = env.ok(&["run", "--bundle", &bundle.dir.display().to_string(), &id]);
    assert_eq!(said.trim_end(), "the bound directory\nnull own", "the container sees the bound directory, and only what it had");
    let mut left: Vec<_> = std::fs::read_dir(&host_dev).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["null", "own"], "nodes or links were made in the bound directory");
    env.leak_check();
}

/// runc's `exec --cgroup`: an exec'd process joins a sub-cgroup of the container's that exists,
/// in every controller or (v1) only the ones named; a path out of the container's cgroup, or one
/// that does not exist, is refused.
#[test]
fn exec_joins_a_sub_cgroup_when_told() {
    let env = TestEnv::new("compat-exec-cgroup");
    let mut bundle = Bundle::new(&env.dir.join("exec-cgroup-bundle"));
    bundle.set_args(&["sleep", "100"]);
    let id = env.id("exec-cgroup");
    env.ok(&["run", "-d", "--bundle", &bundle.dir.display().to_string(), &id]);
    let state: serde_json::Value = serde_json::from_str(&env.ok(&["state", &id])).unwrap();
    // (hierarchy line, controllers, path) of the init, as the host sees them.
    let cgroups = |pid: &str| -> Vec<(String, String)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        text.lines()
            .filter_map(|l| l.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
            .map(|(c, p)| (c.to_string(), p.to_string()))
            .collect()
    };
    let init = cgroups(&state["pid"].to_string());
    let v2 = init.len() == 1 && init[0].0.is_empty();
    let mount =
        |controllers: &str| if v2 { "/sys/fs/cgroup".to_string() } else { format!("/sys/fs/cgroup/{}", controllers.trim_start_matches("name=")) };
    let mut made = Vec::new();
    for (controllers, path) in init.iter().filter(|(c, _)| v2 || c == "memory" || c == "pids") {
        let sub = format!("{}{path}/sub", mount(controllers));
        std::fs::create_dir(&sub).unwrap();
        made.push(sub);
    }
    let pid_file = env.dir.join("exec.pid");
    let exec_cgroups = |flags: &[&str]| {
        let mut args = vec!["exec", "-d", "--pid-file", pid_file.to_str().unwrap()];
        args.extend(flags);
        args.extend([id.as_str(), "sleep", "100"]);
        env.ok(&args);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let seen = cgroups(pid.trim());
        // SAFETY: kill takes a pid and a signal; the pid is the process this test exec'd.
        unsafe { libc::kill(pid.trim().parse().unwrap(), libc::SIGKILL) };
        seen
    };
    let path_of = |seen: &[(String, String)], controller: &str| seen.iter().find(|(c, _)| v2 || c == controller).unwrap().1.clone();
    let base = |controller: &str| path_of(&init, controller);
    let refused_escape = env.fails(&["exec", "--cgroup", "../x", &id, "true"]);
    let refused_missing = env.fails(&["exec", "--cgroup", "nosuch", &id, "true"]);
    if v2 {
        let seen = exec_cgroups(&["--cgroup", "sub"]);
        assert_eq!(path_of(&seen, ""), format!("{}/sub", base("")));
        assert!(env.fails(&["exec", "--cgroup", "memory:sub", &id, "true"]).contains("one hierarchy"));
    } else {
        let seen = exec_cgroups(&["--cgroup", "memory:sub"]);
        assert_eq!((path_of(&seen, "memory"), path_of(&seen, "pids")), (format!("{}/sub", base("memory")), base("pids")), "only memory's");
        let seen = exec_cgroups(&["--cgroup", "memory,pids:sub"]);
        assert_eq!((path_of(&seen, "memory"), path_of(&seen, "pids")), (format!("{}/sub", base("memory")), format!("{}/sub", base("pids"))));
    }
    assert!(refused_escape.contains("without '..'"), "{refused_escape}");
    assert!(refused_missing.contains("no such sub-cgroup"), "{refused_missing}");
    for sub in made {
        // The killed execs may take a moment to leave.
        for _ in 0..100 {
            if std::fs::remove_dir(&sub).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!std::path::Path::new(&sub).exists(), "{sub} left");
    }
    env.ok(&["delete", "-f", &id]);
    env.leak_check();
}

/// runtime-spec 1.3's memoryPolicy: the init and its execs run under it (numa_maps shows the
/// process's policy on every mapping without one of its own); a node this machine lacks fails
/// create with the kernel's reason, leaving nothing.
#[test]
fn memory_policy_reaches_the_init_and_its_execs() {
    let env = TestEnv::new("compat-mempolicy");
    let mut bundle = Bundle::new(&env.dir.join("mempolicy-bundle"));
    bundle.set_args(&["sleep", "100"]).edit(|c| c["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}));
    let id = env.id("mempolicy");
    env.ok(&["run", "-d", "--bundle", &bundle.dir.display().to_string(), &id]);
    let state: serde_json::Value = serde_json::from_str(&env.ok(&["state", &id])).unwrap();
    let init_maps = std::fs::read_to_string(format!("/proc/{}/numa_maps", state["pid"])).unwrap();
    let exec_maps = env.ok(&["exec", &id, "cat", "/proc/self/numa_maps"]);
    env.ok(&["delete", "-f", &id]);
    for (who, maps) in [("init", &init_maps), ("exec", &exec_maps)] {
        assert!(maps.lines().any(|l| l.split_whitespace().nth(1) == Some("interleave:0")), "{who}: no interleave:0 in\n{maps}");
    }

    bundle.edit(|c| c["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_BIND", "nodes": "1000"}));
    let id = env.id("mempolicy-bad");
    let refused = env.fails(&["run", "-d", "--bundle", &bundle.dir.display().to_string(), &id]);
    assert!(refused.contains("memoryPolicy MPOL_BIND nodes \"1000\""), "{refused}");
    env.leak_check();
}

#[test]
fn time_offsets_in_the_specs_object_form_reach_the_time_namespace() {
    let env = TestEnv::new("compat-timens");
    let mut bundle = Bundle::new(&env.dir.join("timens-bundle"));
    bundle.set_args(&["cat", "/proc/uptime"]).edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time"}));
        c["linux"]["timeOffsets"] = serde_json::json!({"boottime": {"secs": 31_536_000, "nanosecs": 0}, "monotonic": {"secs": 7881, "nanosecs": 0}});
    });
    let id = env.id("timens");
    let out = env.ok(&["run", "--bundle", &bundle.dir.display().to_string(), &id]);
    let uptime: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(uptime >= 31_536_000.0, "uptime {uptime}: the boottime offset (a year) is not applied");
    env.leak_check();
}

/// A config without a mount namespace, and without what needs one (masked and read-only paths, a
/// read-only root), as runtime-tools' linux_ns_itype writes it.
fn without_mount_namespace(c: &mut serde_json::Value) {
    c["linux"]["namespaces"].as_array_mut().unwrap().retain(|ns| ns["type"] != "mount");
    c["linux"]["maskedPaths"] = serde_json::json!([]);
    c["linux"]["readonlyPaths"] = serde_json::json!([]);
    c["root"]["readonly"] = false.into();
}

/// Mount points beneath `dir` in this (the runtime's) mount namespace.
fn mounts_beneath(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&dir)).map(str::to_string).collect()
}

#[test]
fn a_container_without_a_mount_namespace_shares_the_runtimes() {
    let env = TestEnv::new("compat-no-mntns");
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap().display().to_string();
    let mut bundle = Bundle::new(&env.dir.join("no-mntns-bundle"));
    std::fs::write(bundle.dir.join("rootfs/marker"), "the rootfs\n").unwrap();
    // The spec's default mounts stay (as in runtime-tools' linux_ns_itype): made in the runtime's
    // namespace beneath the rootfs, into which the process is chrooted.
    bundle
        .set_args(&[
            "sh",
            "-c",
            "readlink /proc/self/ns/mnt; cat /marker; test -c /dev/null && echo devices; grep -q ' /proc proc ' /proc/mounts && echo proc",
        ])
        .edit(|c| {
            without_mount_namespace(c);
        });
    let id = env.id("no-mntns");
    let bundle_arg = bundle.dir.display().to_string();
    let said = env.ok(&["run", "--bundle", &bundle_arg, &id]);
    assert_eq!(said, format!("{ours}\nthe rootfs\ndevices\nproc\n"), "the runtime's mount namespace, the bundle's root, the spec's mounts");
    assert_eq!(mounts_beneath(&bundle.dir), Vec::<String>::new(), "run's delete took the mounts down");

    // Created: the mounts are in the runtime's namespace, and delete takes them down, with a
    // mount the container made on one of them (one it made on the rootfs itself would be left,
    // as runc leaves them all: nothing tells it from a mount that came from elsewhere).
    bundle.set_args(&["sh", "-c", "mkdir -p /dev/own && mount -t tmpfs own /dev/own && touch /dev/own/ready && sleep 100"]).edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
        }
        c["linux"].as_object_mut().unwrap().remove("seccomp");
    });
    let id = env.id("no-mntns");
    env.ok(&["run", "-d", "--bundle", &bundle_arg, &id]);
    berth_testsupport::wait_for_file(&bundle.dir.join("rootfs/dev/own/ready"));
    let made = mounts_beneath(&bundle.dir);
    assert!(made.iter().any(|m| m.ends_with("/rootfs/proc")) && made.iter().any(|m| m.ends_with("/rootfs/dev/own")), "{made:?}");
    env.ok(&["delete", "--force", &id]);
    assert_eq!(mounts_beneath(&bundle.dir), Vec::<String>::new(), "delete took the mounts down");

    // A create that fails after the first mounts leaves none of them.
    bundle.edit(|c| c["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/late", "type": "nosuchfs", "source": "x"})));
    let failed = env.fails(&["create", "--bundle", &bundle_arg, &env.id("no-mntns")]);
    assert!(failed.contains("nosuchfs") || failed.contains("/late"), "{failed}");
    assert_eq!(mounts_beneath(&bundle.dir), Vec::<String>::new(), "a failed create left mounts");
    bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().pop();
    });

    // What would change the runtime's own mounts is refused, not ignored.
    for (edit, field) in [("maskedPaths", serde_json::json!(["/proc/kcore"])), ("rootfsPropagation", serde_json::json!("rshared"))] {
        let mut refused_bundle = bundle.config.clone();
        refused_bundle["linux"][edit] = field;
        std::fs::write(bundle.dir.join("config.json"), serde_json::to_vec(&refused_bundle).unwrap()).unwrap();
        let refused = env.fails(&["run", "--bundle", &bundle_arg, &env.id("no-mntns")]);
        assert!(refused.contains("need a mount namespace") || refused.contains("needs a mount namespace"), "{edit}: {refused}");
    }
    // A bind would join its host source's peer group: what is mounted on it would land on the host.
    let mut bind = bundle.config.clone();
    bind["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/h", "type": "bind", "source": "/tmp", "options": ["rbind"]}));
    std::fs::write(bundle.dir.join("config.json"), serde_json::to_vec(&bind).unwrap()).unwrap();
    let refused = env.fails(&["run", "--bundle", &bundle_arg, &env.id("no-mntns")]);
    assert!(refused.contains("bind mounts need a mount namespace"), "{refused}");
    bundle.save();
    // The runtime's own root as the rootfs, with mounts: refused (they would land on the host's paths).
    let mut slash = bundle.config.clone();
    slash["root"]["path"] = "/".into();
    std::fs::write(bundle.dir.join("config.json"), serde_json::to_vec(&slash).unwrap()).unwrap();
    let refused = env.fails(&["run", "--bundle", &bundle_arg, &env.id("no-mntns")]);
    assert!(refused.contains("rootfs other than /"), "{refused}");
    bundle.save();
    env.leak_check();
}

/// The init's mounts are taken down wherever they ended up: covered by a later mount at a parent
/// destination, stacked at one destination, moved by the container's rename of a directory above
/// them (each used to leak, found by path), with a mount the container made below one.
#[test]
fn a_container_without_a_mount_namespace_leaves_no_mount_however_they_are_covered() {
    let env = TestEnv::new("compat-no-mntns-covered");
    let mut bundle = Bundle::new(&env.dir.join("covered-bundle"));
    let tmpfs = |destination: &str| serde_json::json!({"destination": destination, "type": "tmpfs", "source": "tmpfs"});
    bundle
        .set_args(&["sh", "-c", "mv /deep/x /deep/y && mkdir /stack/sub && mount -t tmpfs sub /stack/sub && touch /stack/sub/ready && sleep 100"])
        .edit(|c| {
            without_mount_namespace(c);
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
            }
            c["linux"].as_object_mut().unwrap().remove("seccomp");
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.extend([tmpfs("/late/b"), tmpfs("/late"), tmpfs("/stack"), tmpfs("/stack"), tmpfs("/deep/x/m")]);
        });
    let id = env.id("covered");
    env.ok(&["run", "-d", "--bundle", &bundle.dir.display().to_string(), &id]);
    berth_testsupport::wait_for_file(&bundle.dir.join("rootfs/stack/sub/ready"));
    let made = mounts_beneath(&bundle.dir);
    assert!(made.iter().any(|m| m.ends_with("/rootfs/deep/y/m")), "the container moved a mount: {made:?}");
    assert_eq!(made.iter().filter(|m| m.ends_with("/rootfs/stack")).count(), 2, "two stacked by the spec: {made:?}");
    assert!(made.iter().any(|m| m.ends_with("/rootfs/stack/sub")), "the container's own: {made:?}");
    env.ok(&["delete", "--force", &id]);
    assert_eq!(mounts_beneath(&bundle.dir), Vec::<String>::new(), "delete took every mount down");
    env.leak_check();
}

/// A terminal without a mount namespace: the pty is not bound over the rootfs's own
/// /dev/console, where the bind would be made in the runtime's namespace and outlive the
/// container (only onto a /dev the spec mounts, which delete takes down).
#[test]
fn a_terminal_without_a_mount_namespace_binds_nothing_onto_the_rootfs() {
    let env = TestEnv::new("compat-no-mntns-tty");
    let mut bundle = Bundle::new(&env.dir.join("tty-bundle"));
    bundle.set_args(&["sh", "-c", "tty; sleep 100"]).edit(|c| {
        without_mount_namespace(c);
        c["process"]["terminal"] = true.into();
        // The spec's devpts stays, with the image's /dev under it: its ptmx a link into it.
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
    });
    std::fs::create_dir_all(bundle.dir.join("rootfs/dev")).unwrap();
    std::os::unix::fs::symlink("pts/ptmx", bundle.dir.join("rootfs/dev/ptmx")).unwrap();
    let socket_path = env.dir.join("console.sock");
    let socket = berth_testsupport::ConsoleSocket::bind(&socket_path);
    let receiver = std::thread::spawn(move || socket.accept_master());
    let id = env.id("no-mntns-tty");
    env.ok(&["create", "--console-socket", socket_path.to_str().unwrap(), "--bundle", &bundle.dir.display().to_string(), &id]);
    let _master = receiver.join().unwrap();
    let made = mounts_beneath(&bundle.dir);
    assert!(!made.iter().any(|m| m.ends_with("/dev/console")), "a console bind in the runtime's namespace: {made:?}");
    env.ok(&["delete", "--force", &id]);
    assert_eq!(mounts_beneath(&bundle.dir), Vec::<String>::new());
    env.leak_check();
}

/// `process.apparmorProfile` (config or `exec --apparmor`): applied where the kernel enforces
/// AppArmor (a profile it does not have then fails create, naming it); refused where it does not
/// (this host), as runc refuses it, rather than the process running unconfined.
#[test]
fn an_apparmor_profile_is_applied_or_refused_never_ignored() {
    let env = TestEnv::new("compat-apparmor");
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y");
    let expected = if enabled { "berth-no-such-profile" } else { "AppArmor is not enabled" };
    let mut bundle = Bundle::new(&env.dir.join("apparmor-bundle"));
    let bundle_arg = bundle.dir.display().to_string();
    bundle.set_args(&["sleep", "100"]).edit(|c| c["process"]["apparmorProfile"] = "berth-no-such-profile".into());
    let refused = env.fails(&["create", "--bundle", &bundle_arg, &env.id("apparmor")]);
    assert!(refused.contains(expected), "{refused}");
    bundle.edit(|c| {
        c["process"].as_object_mut().unwrap().remove("apparmorProfile");
    });
    let id = env.id("apparmor");
    env.ok(&["run", "-d", "--bundle", &bundle_arg, &id]);
    let refused = env.fails(&["exec", "--apparmor", "berth-no-such-profile", &id, "true"]);
    assert!(refused.contains(expected), "{refused}");
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

/// SELinux labels (`process.selinuxLabel`, `linux.mountLabel`, `exec --process-label`): applied
/// where the host enforces SELinux (a label its policy lacks then fails create, naming it); where
/// it does not (this host), left out, as crun leaves them: the container runs, and so does exec.
#[test]
fn selinux_labels_are_applied_where_selinux_is_enabled() {
    let env = TestEnv::new("compat-selinux");
    let enabled = Path::new("/sys/fs/selinux/enforce").exists();
    let label = "system_u:system_r:berth_no_such_t:s0";
    let mut bundle = Bundle::new(&env.dir.join("selinux-bundle"));
    let bundle_arg = bundle.dir.display().to_string();
    bundle.set_args(&["sleep", "100"]).edit(|c| {
        c["process"]["selinuxLabel"] = label.into();
        c["linux"]["mountLabel"] = "system_u:object_r:berth_no_such_file_t:s0".into();
    });
    let id = env.id("selinux");
    let mut create = env.command(&["create", "--bundle", &bundle_arg, &id]);
    let out = env.capture(&mut create);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if enabled {
        assert!(!out.status.success() && stderr.contains("berth_no_such"), "{stderr}");
        env.leak_check();
        return;
    }
    assert!(out.status.success(), "{stderr}");
    env.ok(&["start", &id]);
    env.ok(&["exec", "--process-label", label, &id, "true"]);
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

#[test]
fn rootfs_propagation_unbindable_is_the_roots_inside() {
    let env = TestEnv::new("compat-unbindable");
    let mut bundle = Bundle::new(&env.dir.join("unbindable-bundle"));
    bundle.set_args(&["awk", "$5 == \"/\"", "/proc/self/mountinfo"]).edit(|c| c["linux"]["rootfsPropagation"] = "unbindable".into());
    let id = env.id("unbindable");
    let root_line = env.ok(&["run", "--bundle", &bundle.dir.display().to_string(), &id]);
    assert!(root_line.contains(" unbindable "), "{root_line}");
    env.leak_check();
}

#[test]
fn a_config_without_a_process_is_created_and_start_refuses_it() {
    let env = TestEnv::new("compat-no-process");
    let mut bundle = Bundle::new(&env.dir.join("no-process-bundle"));
    bundle.edit(|c| {
        c.as_object_mut().unwrap().remove("process");
    });
    let id = env.id("no-process");
    env.ok(&["create", "--bundle", &bundle.dir.display().to_string(), &id]);
    assert_eq!(env.status(&id), "created");
    let refused = env.fails(&["start", &id]);
    assert!(refused.contains("no process"), "{refused}");
    assert_eq!(env.status(&id), "created", "a refused start changes nothing");
    env.ok(&["delete", &id]);
    env.leak_check();
}

/// A runtime command started as a careless parent would leave it: SIGCHLD blocked, SIGPIPE and
/// SIGQUIT ignored (a shim's signalfd mask, a daemon started from a shell that ignores them).
fn with_dirty_signals(mut command: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls: sigprocmask and signal.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            Ok(())
        })
    };
    command
}

#[test]
fn processes_start_with_no_signal_blocked_or_ignored_as_under_runc() {
    let env = TestEnv::new("compat-signals");
    let mut bundle = Bundle::new(&env.dir.join("signals-bundle"));
    bundle.set_args(&["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    let bundle_arg = bundle.dir.display().to_string();
    let mut outputs = Vec::new();
    for (runtime, root) in [(Path::new("/usr/sbin/runc"), env.dir.join("runc-root")), (env.bin.as_path(), env.root.clone())] {
        let mut command = Command::new(runtime);
        command.arg("--root").arg(&root).args(["run", "--bundle", &bundle_arg, &env.id("signals")]).stdin(std::process::Stdio::null());
        let out = env.capture(&mut with_dirty_signals(command));
        assert!(out.status.success(), "{runtime:?}: {}", String::from_utf8_lossy(&out.stderr));
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // Of the standard signals (1-31) neither blocks nor ignores any. (Signals 32 and 33 are
    // glibc's own; whatever this test inherited there, runc passes on too.)
    let standard = |text: &str| -> Vec<u64> {
        text.lines().map(|l| u64::from_str_radix(l.split('\t').nth(1).unwrap_or("0"), 16).unwrap() & 0x7fff_ffff).collect()
    };
    assert_eq!(standard(&outputs[0]), [0, 0], "runc's: {}", outputs[0]);
    assert_eq!(outputs[1], outputs[0], "berth-oci's init vs runc's");

    // An exec'd process, from a runtime started the same way.
    bundle.set_args(&["sleep", "100"]);
    let id = env.id("signals");
    env.ok(&["run", "-d", "--bundle", &bundle_arg, &id]);
    let mut command = Command::new(&env.bin);
    command.arg("--root").arg(&env.root).args(["exec", &id, "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]).stdin(std::process::Stdio::null());
    let out = env.capture(&mut with_dirty_signals(command));
    assert_eq!(String::from_utf8_lossy(&out.stdout), outputs[0], "berth-oci exec vs runc's init: {}", String::from_utf8_lossy(&out.stderr));
    env.ok(&["delete", "-f", &id]);
    env.leak_check();
}

#[test]
fn recursive_mount_options_reach_every_mount_below() {
    let env = TestEnv::new("compat-rro");
    // A host tree with a mount inside it: rbind takes both, rro must make both read-only.
    let source = env.dir.join("rro-src");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    let tmpfs = Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(source.join("sub")).status().unwrap();
    assert!(tmpfs.success());
    let mut bundle = Bundle::new(&env.dir.join("rro-bundle"));
    let probe = "touch /mnt/top 2>/dev/null && echo top-writable; touch /mnt/sub/below 2>/dev/null && echo below-writable; echo done";
    bundle.set_args(&["sh", "-c", probe]).edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/mnt", "type": "bind", "source": source, "options": ["rbind", "rro", "rnosuid"]
        }));
    });
    let id = env.id("rro");
    let out = env.ok(&["run", "--bundle", &bundle.dir.display().to_string(), &id]);
    let _ = Command::new("umount").arg(source.join("sub")).status();
    assert_eq!(out.trim(), "done", "under rro nothing is writable, the mount below included");
    env.leak_check();
}
