//! The container lifecycle through the runc command line: run, create/start/state/kill/delete,
//! list, ps, pause/resume, events, exec. Every test ends with the leak check.

use berth_testsupport::TestEnv;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;

#[test]
fn run_prints_output_and_returns_exit_code() {
    let mut env = TestEnv::new("run-exit");
    env.bundle.set_args(&["sh", "-c", "echo hello from $(hostname); exit 7"]);
    let id = env.id("run");
    let out = env.oci(&["run", &id]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from berth\n");
    assert_eq!(env.status(&id), "absent", "run without --keep deletes the container");
    env.leak_check();
}

#[test]
fn run_reports_death_by_signal_as_128_plus_n() {
    let mut env = TestEnv::new("run-signal");
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("sig");
    // The init of a pid namespace ignores SIGKILL from inside it; the signal has to come from outside.
    let mut run = env.command(&["run", &id]).stdout(std::process::Stdio::null()).spawn().unwrap();
    env.wait_status(&id, "running");
    env.ok(&["kill", &id, "KILL"]);
    assert_eq!(run.wait().unwrap().code(), Some(137));
    env.leak_check();
}

#[test]
fn create_start_kill_delete() {
    let mut env = TestEnv::new("lifecycle");
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("life");
    let pid_file = env.dir.join("pid");
    env.ok(&["create", "--pid-file", pid_file.to_str().unwrap(), &id]);
    assert_eq!(env.status(&id), "created");
    let state: Value = serde_json::from_str(&env.ok(&["state", &id])).unwrap();
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["ociVersion"].as_str().unwrap().split('.').next(), Some("1"));
    assert_eq!(state["bundle"], env.bundle.dir.to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid.to_string());
    // A created container's init is our runtime code, blocked before execve of the user process.
    assert!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap().to_string_lossy().contains("berth-oci"));

    env.ok(&["start", &id]);
    env.wait_status(&id, "running");
    let stderr = env.fails(&["start", &id]);
    assert!(stderr.contains("created"), "{stderr}");
    let stderr = env.fails(&["delete", &id]);
    assert!(stderr.contains("not stopped"), "{stderr}");

    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    let state: Value = serde_json::from_str(&env.ok(&["state", &id])).unwrap();
    assert_eq!(state["pid"], 0);
    let stderr = env.fails(&["kill", &id, "TERM"]);
    assert!(stderr.contains("not running"), "{stderr}");
    env.ok(&["delete", &id]);
    assert_eq!(env.status(&id), "absent");
    env.leak_check();
}

#[test]
fn delete_of_created_container_kills_its_init() {
    let mut env = TestEnv::new("delete-created");
    env.bundle.set_args(&["true"]);
    let id = env.id("created");
    env.ok(&["create", &id]);
    let pid = env.pid(&id);
    env.ok(&["delete", &id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/exe")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z")).unwrap_or(true)
    );
    env.leak_check();
}

#[test]
fn kill_signals_by_name_and_number_and_all() {
    let mut env = TestEnv::new("kill");
    // The trap proves the exact signal arrived: USR1 prints, TERM exits 42.
    env.bundle.set_args(&[
        "sh",
        "-c",
        "trap 'echo usr1 >/tmp/got' USR1; trap 'exit 42' TERM; echo ready >/tmp/ready; while true; do sleep 0.05; done",
    ]);
    env.bundle.edit(|c| c["root"]["readonly"] = serde_json::json!(false));
    let id = env.id("kill");
    env.ok(&["run", "--detach", &id]);
    // Under TCG in the v2 VM the shell can take a while: signal only once its traps are set.
    let tmp = env.bundle.dir.join("rootfs/tmp");
    wait_for_content(&tmp.join("ready"), "ready\n");
    env.ok(&["kill", &id, "SIGUSR1"]);
    let marker = tmp.join("got");
    wait_for_content(&marker, "usr1\n");
    std::fs::remove_file(tmp.join("ready")).unwrap();
    std::fs::remove_file(&marker).unwrap();
    env.ok(&["kill", &id, "15"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);

    let id = env.id("killall");
    env.bundle.set_args(&["sh", "-c", "sleep 60 & sleep 60 & wait"]);
    env.ok(&["run", "--detach", &id]);
    env.wait_status(&id, "running");
    let pids: Vec<i32> = serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(!pids.is_empty());
    env.ok(&["kill", "--all", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    let stderr = env.fails(&["kill", &id, "NOSUCHSIGNAL"]);
    assert!(!stderr.is_empty());
    env.leak_check();
}

#[test]
fn list_ps_pause_resume_events() {
    let mut env = TestEnv::new("manage");
    env.bundle.set_args(&["sh", "-c", "sleep 60 & wait"]);
    let id = env.id("mgr");
    env.ok(&["run", "-d", &id]);
    env.wait_status(&id, "running");

    let list: Value = serde_json::from_str(&env.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    let table = env.ok(&["list"]);
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");
    assert_eq!(env.ok(&["list", "-q"]).trim(), id);

    let init = env.pid(&id);
    // ps reads the cgroup: the init and its sleep child, as host pids.
    let mut pids: Vec<i32> = Vec::new();
    for _ in 0..100 {
        pids = serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).unwrap();
        if pids.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(pids.contains(&init) && pids.len() == 2, "{pids:?}");
    let table = env.ok(&["ps", &id]);
    assert!(table.lines().count() >= 3 && table.contains("sleep 60"), "{table}");

    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    assert!(after_comm.starts_with('D') || after_comm.starts_with('S'), "frozen tasks sleep: {stat}");
    env.fails(&["pause", &id]);
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");
    env.fails(&["resume", &id]);

    let event: Value = serde_json::from_str(&env.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(event["type"], "stats");
    assert!(event["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{event}");
    assert_eq!(event["data"]["pids"]["current"], 2);
    assert!(event["data"]["cpu"]["usage"]["total"].as_u64().unwrap() > 0);

    env.ok(&["delete", "--force", &id]);
    assert_eq!(env.status(&id), "absent");
    env.leak_check();
}

#[test]
fn exec_runs_in_the_container() {
    let mut env = TestEnv::new("exec");
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("exec");
    env.ok(&["run", "-d", &id]);
    env.wait_status(&id, "running");

    let out = env.ok(&["exec", &id, "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "berth");
    assert_ne!(lines[1], "1", "an exec'd process is not the init");
    assert_eq!(lines[2].trim(), "sleep 60", "exec sees the container's pid namespace");

    let out = env.oci(&["exec", &id, "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));

    let out = env.ok(&["exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "65534:65534", &id, "sh", "-c", "echo $FOO $(pwd) $(id -u):$(id -g)"]);
    assert_eq!(out.trim(), "bar /tmp 65534:65534");

    let process = env.dir.join("process.json");
    std::fs::write(&process, r#"{"args":["sh","-c","echo from-process-json"],"cwd":"/","user":{"uid":0,"gid":0},"env":["PATH=/bin"]}"#).unwrap();
    let out = env.ok(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.trim(), "from-process-json");

    let pid_file = env.dir.join("exec.pid");
    env.ok(&["exec", "--detach", "--pid-file", pid_file.to_str().unwrap(), &id, "sleep", "30"]);
    let exec_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let pids: Vec<i32> = serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&exec_pid), "exec'd process joins the container's cgroup: {pids:?} vs {exec_pid}");

    let stderr = env.fails(&["exec", &id, "no-such-binary"]);
    assert!(stderr.contains("executable file not found"), "{stderr}");

    env.ok(&["delete", "--force", &id]);
    let stderr = env.fails(&["exec", &id, "true"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    env.leak_check();
}

#[test]
fn stopped_container_exit_status_is_visible_to_its_parent() {
    // `run` is the init's parent: the status it returns is the process's own, not a runtime code.
    let mut env = TestEnv::new("status");
    env.bundle.set_args(&["sh", "-c", "exit 0"]);
    let id = env.id("st");
    let out = env.oci(&["run", &id]);
    assert!(out.status.success() && out.status.signal().is_none());
    env.leak_check();
}

/// Waits (up to 20 s) until `path` holds exactly `expected`, which a shell writes non-atomically.
fn wait_for_content(path: &std::path::Path, expected: &str) {
    for _ in 0..2000 {
        if std::fs::read_to_string(path).is_ok_and(|s| s == expected) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never held {expected:?}: {:?}", path.display(), std::fs::read_to_string(path));
}
