//! Hostile or broken input gets a clear error, a non-zero exit, and leaves nothing behind.

use berth_testsupport::TestEnv;
use serde_json::json;

/// Asserts the failed create left no state dir and no cgroup for `id` (the leak check covers both).
fn assert_nothing_left(env: &TestEnv, id: &str) {
    assert!(!env.root.join(id).exists(), "state dir for {id} left behind");
    env.leak_check();
}

#[test]
fn broken_config_json() {
    let env = TestEnv::new("bad-json");
    std::fs::write(env.bundle.dir.join("config.json"), "{ this is not json").unwrap();
    let id = env.id("badjson");
    let stderr = env.fails(&["create", &id]);
    assert!(stderr.contains("invalid config") && stderr.contains("config.json"), "{stderr}");
    assert_nothing_left(&env, &id);
}

#[test]
fn wrong_oci_version() {
    let mut env = TestEnv::new("bad-version");
    env.bundle.edit(|c| c["ociVersion"] = json!("2.0.0"));
    let id = env.id("badver");
    let stderr = env.fails(&["create", &id]);
    assert!(stderr.contains("unsupported ociVersion \"2.0.0\""), "{stderr}");
    assert_nothing_left(&env, &id);
}

#[test]
fn missing_rootfs() {
    let mut env = TestEnv::new("no-rootfs");
    env.bundle.edit(|c| c["root"]["path"] = json!("does-not-exist"));
    let id = env.id("norootfs");
    let stderr = env.fails(&["create", &id]);
    assert!(stderr.contains("rootfs") && stderr.contains("does-not-exist"), "{stderr}");
    assert_nothing_left(&env, &id);
}

#[test]
fn ids_that_are_paths() {
    let env = TestEnv::new("bad-ids");
    for id in ["a/b", "..", ".", "../escape", ""] {
        let stderr = env.fails(&["create", id]);
        assert!(stderr.contains("invalid container id"), "{id:?}: {stderr}");
    }
    assert!(!env.dir.join("escape").exists());
    assert!(!env.root.exists() || std::fs::read_dir(&env.root).unwrap().next().is_none());
    env.leak_check();
}

#[test]
fn duplicate_id() {
    let mut env = TestEnv::new("dup-id");
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("dup");
    env.ok(&["create", &id]);
    let stderr = env.fails(&["create", &id]);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(env.status(&id), "created", "the first container is untouched");
    env.ok(&["delete", &id]);
    env.leak_check();
}

#[test]
fn signal_to_stopped_and_unknown_containers() {
    let mut env = TestEnv::new("kill-stopped");
    env.bundle.set_args(&["true"]);
    let id = env.id("stopped");
    env.ok(&["run", "--keep", &id]);
    assert_eq!(env.status(&id), "stopped");
    let stderr = env.fails(&["kill", &id, "KILL"]);
    assert!(stderr.contains("not running"), "{stderr}");
    env.ok(&["delete", &id]);
    let stderr = env.fails(&["kill", "no-such-container", "KILL"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let stderr = env.fails(&["delete", "no-such-container"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    env.ok(&["delete", "--force", "no-such-container"]);
    env.leak_check();
}

#[test]
fn console_socket_not_listening() {
    let mut env = TestEnv::new("console-dead");
    env.bundle.edit(|c| c["process"]["terminal"] = json!(true));
    let id = env.id("deadsock");
    let socket = env.dir.join("nobody-listens.sock");
    let stderr = env.fails(&["create", "--console-socket", socket.to_str().unwrap(), &id]);
    assert!(stderr.contains("console socket") && stderr.contains("nobody-listens.sock"), "{stderr}");
    assert_nothing_left(&env, &id);
    let stderr = env.fails(&["create", &id]);
    assert!(stderr.contains("--console-socket"), "terminal without a console socket: {stderr}");
    assert_nothing_left(&env, &id);
}

#[test]
fn failures_inside_the_init_undo_everything() {
    let mut env = TestEnv::new("init-fails");
    // Each of these fails inside the container init, after the cgroup and namespaces exist.
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"process": {"args": ["no-such-program"]}}), "executable file not found"),
        (json!({"process": {"cwd": "/no/such/dir"}}), "chdir to cwd"),
        (json!({"process": {"oomScoreAdj": -500}}), "oomScoreAdj"),
        (json!({"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 100000000}]}}), "setrlimit"),
        (json!({"mounts": [{"destination": "/x", "type": "bind", "source": "/no/such/source", "options": ["bind"]}]}), "/no/such/source"),
    ];
    for (patch, expected) in cases {
        let original = env.bundle.config.clone();
        env.bundle.edit(|c| merge(c, &patch));
        let id = env.id("initfail");
        let stderr = env.fails(&["create", &id]);
        assert!(stderr.contains(expected), "{patch}: {stderr}");
        assert!(!env.root.join(&id).exists(), "{patch}: state left");
        env.bundle.edit(|c| *c = original);
    }
    env.leak_check();
}

#[test]
fn hostile_sysctls_and_cgroup_paths_are_refused() {
    let mut env = TestEnv::new("hostile-config");
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"linux": {"sysctl": {"kernel.core_pattern": "|/tmp/evil"}}}), "not namespaced"),
        (json!({"linux": {"sysctl": {"kernel.shm_rmid_forced": "1+kernel.core_pattern=|/tmp/evil"}}}), "separator"),
        (json!({"linux": {"cgroupsPath": "/../../escape"}}), "'..'"),
        (json!({"linux": {"resources": {"memory": {"limit": -5}}}}), "memory.limit"),
        (json!({"linux": {"resources": {"unified": {"memory.max": "1"}}}}), "unified"),
    ];
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    for (patch, expected) in cases {
        let original = env.bundle.config.clone();
        env.bundle.edit(|c| merge(c, &patch));
        let id = env.id("hostile");
        let stderr = env.fails(&["create", &id]);
        assert!(stderr.contains(expected), "{patch}: {stderr}");
        assert!(!env.root.join(&id).exists());
        env.bundle.edit(|c| *c = original);
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), core_pattern);
    assert!(!std::path::Path::new("/sys/fs/cgroup/memory/escape").exists());
    env.leak_check();
}

/// JSON merge: objects merge recursively, anything else replaces.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}
