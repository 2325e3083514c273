//! Rootless: an unprivileged user (created here) runs `berth-oci spec --rootless` bundles. State
//! lives under its XDG_RUNTIME_DIR, it gets no cgroup (nobody delegated one: a warning), its own id
//! is mapped by berth-oci itself and subordinate ids through newuidmap/newgidmap.

use berth_testsupport::TestEnv;
use serde_json::json;
use std::process::{Command, Output};

const USER: &str = "berth-rootless";
/// Subordinate ids given to the user for the newuidmap test (far above any real account here).
const SUBORDINATE: (u32, u32) = (3_000_000, 65536);

/// The test user's uid, creating the account (and its /etc/subuid, /etc/subgid ranges) once.
fn test_user() -> u32 {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !Command::new("id").arg(USER).output().unwrap().status.success() {
            let out = Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER]).output().unwrap();
            assert!(out.status.success(), "useradd: {}", String::from_utf8_lossy(&out.stderr));
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let line = format!("{USER}:{}:{}", SUBORDINATE.0, SUBORDINATE.1);
            if !text.lines().any(|l| l == line) {
                let separator = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
                std::fs::write(file, format!("{text}{separator}{line}\n")).unwrap();
            }
        }
    });
    id_of("-u")
}

/// The test user's primary gid: not always its uid (useradd --system takes the next free group).
fn test_gid() -> u32 {
    test_user();
    id_of("-g")
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, USER]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A test environment whose bundle and runtime dir belong to the test user, with a rootless spec
/// that the user wrote with `berth-oci spec --rootless`.
fn rootless_env(name: &str) -> (TestEnv, u32) {
    let uid = test_user();
    let mut env = TestEnv::new(name);
    let xdg = env.dir.join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::remove_file(env.bundle.dir.join("config.json")).unwrap();
    chown_tree(&env.dir, uid);
    // (For cleanup and the leak check: where the user's state lands without --root.)
    env.root = xdg.join("berth-oci");
    let out = env.capture(&mut as_user(&env, uid, &["spec", "--rootless"]));
    assert!(out.status.success(), "spec --rootless: {}", String::from_utf8_lossy(&out.stderr));
    env.bundle.config = serde_json::from_slice(&std::fs::read(env.bundle.dir.join("config.json")).unwrap()).unwrap();
    env.bundle.edit(|c| c["process"]["terminal"] = json!(false));
    (env, uid)
}

fn chown_tree(dir: &std::path::Path, uid: u32) {
    let out = Command::new("chown").args(["-R", "-h", &format!("{uid}:{}", test_gid())]).arg(dir).output().unwrap();
    assert!(out.status.success());
}

/// `berth-oci <args>` as the test user, without --root, with its XDG_RUNTIME_DIR.
fn as_user(env: &TestEnv, uid: u32, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command.args([format!("--reuid={uid}"), format!("--regid={}", test_gid()), "--clear-groups".into()]);
    command.arg("env").arg(format!("XDG_RUNTIME_DIR={}", env.dir.join("xdg").display())).arg(&env.bin).args(args);
    command.current_dir(&env.bundle.dir).stdin(std::process::Stdio::null());
    command
}

fn user_ok(env: &TestEnv, uid: u32, args: &[&str]) -> Output {
    let out = env.capture(&mut as_user(env, uid, args));
    assert!(out.status.success(), "berth-oci {args:?} as {USER}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_user_runs_a_rootless_container_with_state_in_its_runtime_dir() {
    let (mut env, uid) = rootless_env("rootless-run");
    env.bundle.set_args(&["sh", "-c", "id -u; cat /proc/self/uid_map; echo hi > /tmp/x && cat /tmp/x"]);
    env.bundle.edit(|c| c["root"]["readonly"] = json!(false));
    let id = env.id("run");
    let out = user_ok(&env, uid, &["run", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", &uid.to_string(), "1"]);
    assert_eq!(lines[2], "hi");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: no cgroup"), "{stderr}");
    assert!(!env.root.join(&id).exists(), "run removes the container it ran");

    // Detached: state, ps and kill work without a cgroup; the state is the user's own.
    env.bundle.set_args(&["sh", "-c", "sleep 60 & wait"]);
    let id = env.id("detached");
    user_ok(&env, uid, &["run", "--detach", &id]);
    let state_dir = env.root.join(&id);
    assert!(state_dir.is_dir());
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&state_dir).unwrap()), uid);
    let state: serde_json::Value = serde_json::from_slice(&user_ok(&env, uid, &["state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    let ps = String::from_utf8_lossy(&user_ok(&env, uid, &["ps", "--format", "json", &id]).stdout).into_owned();
    let pids: Vec<i64> = serde_json::from_str(&ps).unwrap();
    assert_eq!(pids.len(), 2, "sh and sleep: {pids:?}");
    user_ok(&env, uid, &["kill", "--all", &id, "KILL"]);
    for _ in 0..500 {
        if serde_json::from_slice::<serde_json::Value>(&user_ok(&env, uid, &["state", &id]).stdout).unwrap()["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    user_ok(&env, uid, &["delete", &id]);
    assert!(!state_dir.exists());
    env.leak_check();
}

#[test]
fn the_init_is_not_dumpable_until_it_executes_the_container_process() {
    // The attack: another process of the same user (as a container process of a rootless
    // container is) reads the runtime's environment, fds or exe while it sets the container up.
    let (mut env, uid) = rootless_env("rootless-dumpable");
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("dumpable");
    user_ok(&env, uid, &["create", &id]);
    let state: serde_json::Value = serde_json::from_slice(&user_ok(&env, uid, &["state", &id]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let peek = |env: &TestEnv| {
        let mut command = Command::new("setpriv");
        command.args([
            format!("--reuid={uid}"),
            format!("--regid={}", test_gid()),
            "--clear-groups".into(),
            "cat".into(),
            format!("/proc/{pid}/environ"),
        ]);
        env.capture(&mut command)
    };
    let before = peek(&env);
    assert!(!before.status.success(), "the runtime's environ was readable before execve");
    assert!(String::from_utf8_lossy(&before.stderr).contains("Permission denied"), "{}", String::from_utf8_lossy(&before.stderr));
    user_ok(&env, uid, &["start", &id]);
    // After execve of a readable binary the process is the container's, and dumpable again: the
    // same read now works, so the refusal above was the runtime's doing.
    let mut after = peek(&env);
    for _ in 0..200 {
        if after.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        after = peek(&env);
    }
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    user_ok(&env, uid, &["delete", "--force", &id]);
    env.leak_check();
}

#[test]
fn subordinate_ids_are_mapped_through_newuidmap() {
    let (mut env, uid) = rootless_env("rootless-subids");
    env.bundle.edit(|c| {
        c["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": uid, "size": 1}, {"containerID": 1, "hostID": SUBORDINATE.0, "size": SUBORDINATE.1}]);
        c["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": test_gid(), "size": 1}, {"containerID": 1, "hostID": SUBORDINATE.0, "size": SUBORDINATE.1}]);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1001]});
        c["process"]["args"] = json!(["sh", "-c", "id; cat /proc/self/uid_map"]);
    });
    let id = env.id("subids");
    let out = user_ok(&env, uid, &["run", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("uid=1000 gid=1000 groups=1001\n"), "{stdout}");
    let maps: Vec<Vec<&str>> = stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(maps, [vec!["0", &uid.to_string(), "1"], vec!["1", &SUBORDINATE.0.to_string(), &SUBORDINATE.1.to_string()]]);

    // Ids the user was not given: newuidmap refuses, and nothing is left behind.
    env.bundle.edit(|c| c["linux"]["uidMappings"][1]["hostID"] = json!(1));
    let id = env.id("stolen");
    let out = env.capture(&mut as_user(&env, uid, &["run", &id]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newuidmap"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!env.root.join(&id).exists());
    env.leak_check();
}

#[test]
fn limits_without_a_delegated_cgroup_are_a_clear_error() {
    let (mut env, uid) = rootless_env("rootless-limits");
    env.bundle.edit(|c| c["linux"]["resources"] = json!({"pids": {"limit": 10}}));
    let id = env.id("limits");
    let out = env.capture(&mut as_user(&env, uid, &["run", &id]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("need a cgroup") && stderr.contains("delegated"), "{stderr}");
    assert!(!env.root.join(&id).exists());
    env.leak_check();
}

#[test]
fn idmapped_mounts_need_host_root_and_say_so() {
    let (mut env, uid) = rootless_env("rootless-idmap");
    let shared = env.dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    env.bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/mnt", "type": "bind", "source": shared, "options": ["bind", "idmap"]}))
    });
    env.bundle.set_args(&["true"]);
    let id = env.id("idmap");
    let out = env.capture(&mut as_user(&env, uid, &["run", &id]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("idmapped mounts need root in the host's user namespace"), "{stderr}");
    assert!(!env.root.join(&id).exists());
    env.leak_check();
}
