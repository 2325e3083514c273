//! The console socket (a real pty handed to the caller) and the six runtime-spec hooks.

use berth_testsupport::{ConsoleSocket, TestEnv};
use serde_json::{json, Value};
use std::io::Read;

#[test]
fn console_socket_receives_a_working_pty() {
    let mut env = TestEnv::new("console");
    env.bundle.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 30, "width": 100});
        c["process"]["args"] =
            json!(["sh", "-c", "tty; stty size; [ -t 0 ] && echo stdin-is-tty; [ /dev/console -ef \"$(tty)\" ] && echo console-is-the-pty"]);
    });
    let socket_path = env.dir.join("console.sock");
    let socket = ConsoleSocket::bind(&socket_path);
    let id = env.id("tty");
    let receiver = std::thread::spawn(move || socket.accept_master());
    env.ok(&["create", "--console-socket", socket_path.to_str().unwrap(), &id]);
    let master = receiver.join().unwrap();
    env.ok(&["start", &id]);
    let mut output = Vec::new();
    let mut file = std::fs::File::from(master);
    // Reading the master ends with EIO once the container's side of the pty is closed.
    let mut buf = [0u8; 1024];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        output.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&output).replace('\r', "");
    assert_eq!(text, "/dev/pts/0\n30 100\nstdin-is-tty\nconsole-is-the-pty\n");
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    env.leak_check();
}

/// A hook that records its name (in order) and the state it was given, in the test directory.
fn recording_hook(dir: &std::path::Path, name: &str) -> Value {
    let script = format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order", dir = dir.display());
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

fn read_state(dir: &std::path::Path, name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}.json: {e}"))).unwrap()
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    let mut env = TestEnv::new("hooks");
    let dir = env.dir.join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    env.bundle.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["hooks"] = json!({
            "prestart": [recording_hook(&dir, "prestart")],
            "createRuntime": [recording_hook(&dir, "createRuntime")],
            "createContainer": [recording_hook(&dir, "createContainer")],
            // Runs inside the container after pivot_root: its paths are the container's.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer.json; hostname > /tmp/startContainer.host"]}],
            "poststart": [recording_hook(&dir, "poststart")],
            "poststop": [recording_hook(&dir, "poststop")],
        });
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    let id = env.id("hooks");
    env.ok(&["create", &id]);
    let pid = env.pid(&id);
    let prestart = read_state(&dir, "prestart");
    assert_eq!(prestart["id"], id.as_str());
    assert_eq!(prestart["status"], "created");
    assert_eq!(prestart["pid"], pid);
    assert_eq!(prestart["bundle"], env.bundle.dir.to_str().unwrap());
    assert_eq!(read_state(&dir, "createContainer")["status"], "created");
    env.ok(&["start", &id]);
    assert_eq!(read_state(&dir, "poststart")["status"], "running");
    let rootfs = env.bundle.dir.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("tmp/startContainer.host")).unwrap(), "berth\n");
    let start_state: Value = serde_json::from_str(&std::fs::read_to_string(rootfs.join("tmp/startContainer.json")).unwrap()).unwrap();
    assert_eq!(start_state["id"], id.as_str());
    env.ok(&["delete", "--force", &id]);
    assert_eq!(read_state(&dir, "poststop")["status"], "stopped");
    let order = std::fs::read_to_string(dir.join("order")).unwrap();
    assert_eq!(order, "prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n");
    for file in ["tmp/startContainer.json", "tmp/startContainer.host"] {
        std::fs::remove_file(rootfs.join(file)).unwrap();
    }
    env.leak_check();
}

#[test]
fn failing_or_slow_create_hooks_abort_create() {
    let mut env = TestEnv::new("hooks-fail");
    for (hook, expected) in [
        (json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}), "exited with"),
        (json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}), "timed out after 1s"),
        (json!({"path": "/no/such/hook"}), "/no/such/hook"),
    ] {
        env.bundle.edit(|c| c["hooks"] = json!({"createRuntime": [hook]}));
        let id = env.id("hookfail");
        let started = std::time::Instant::now();
        let stderr = env.fails(&["create", &id]);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the timeout was honoured");
        assert!(!env.root.join(&id).exists());
    }
    env.leak_check();
}

#[test]
fn failing_poststart_hook_only_warns() {
    let mut env = TestEnv::new("hooks-poststart");
    env.bundle.edit(|c| {
        c["hooks"] = json!({"poststart": [{"path": "/bin/false"}]});
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    let id = env.id("poststart");
    env.ok(&["create", &id]);
    let out = env.oci(&["start", &id]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/bin/false"));
    assert_eq!(env.status(&id), "running");
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

#[test]
fn foreground_run_and_exec_get_a_terminal_without_console_socket() {
    let mut env = TestEnv::new("tty-proxy");
    env.bundle.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["args"] = json!(["sh", "-c", "tty; stty size; exit 4"]);
    });
    let id = env.id("ttyrun");
    // script(1) gives berth-oci a real terminal of a known size, as a user's shell would.
    let command = format!("stty rows 33 cols 77; {} --root {} run {id}", env.bin.display(), env.root.display());
    let (status, text) = in_script(&command, &env.bundle.dir);
    assert_eq!(status.code(), Some(4), "{text}");
    assert!(text.contains("/dev/pts/0\n33 77\n"), "{text:?}");

    env.bundle.edit(|c| {
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sleep", "60"]);
    });
    let id = env.id("ttyexec");
    env.ok(&["run", "-d", &id]);
    let command = format!("{} --root {} exec -t {id} sh -c 'tty; exit 6'", env.bin.display(), env.root.display());
    let (status, text) = in_script(&command, &env.bundle.dir);
    assert_eq!(status.code(), Some(6), "{text}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    env.ok(&["delete", "--force", &id]);
    assert!(std::fs::read_dir(&env.root).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".console")));
    env.leak_check();
}

/// Runs `command` under script(1), which gives it a real terminal. script's own stdin stays open
/// until the command ends: at EOF script types the terminal's EOF character into the session, and
/// that keystroke would be echoed into the output being checked.
fn in_script(command: &str, dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child =
        Command::new("script").args(["-qec", command, "/dev/null"]).current_dir(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let stdin = child.stdin.take();
    let mut output = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut output).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    (status, String::from_utf8_lossy(&output).replace('\r', ""))
}
