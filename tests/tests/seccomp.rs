//! The default seccomp profile that `berth-oci spec` writes, seen from inside a container by a
//! probe that makes the syscalls itself (tests/probes/syscalls.c, built static here).

use berth_testsupport::TestEnv;
use serde_json::json;

/// Builds the probe into the bundle's rootfs as /probe.
fn install_probe(env: &TestEnv) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/syscalls.c");
    let target = env.bundle.dir.join("rootfs/probe");
    let out = std::process::Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&target).arg(&source).output().expect("gcc");
    assert!(out.status.success(), "building the probe: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `script` as an unprivileged user (nobody) in the container; returns its stdout.
fn run_as_nobody(env: &mut TestEnv, name: &str, script: &str) -> String {
    env.bundle.edit(|c| {
        c["process"]["user"] = json!({"uid": 65534, "gid": 65534});
        c["process"]["args"] = json!(["sh", "-c", script]);
    });
    let id = env.id(name);
    let out = env.oci(&["run", &id]);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PROBES: &str = "/probe keyctl bpf unshare-user clone-user clone3 clone-plain personality-query";

#[test]
fn default_profile_refuses_host_state_and_namespaces_and_runs_a_shell() {
    let mut env = TestEnv::new("seccomp-default");
    install_probe(&env);
    assert!(env.bundle.config["linux"]["seccomp"].is_object(), "berth-oci spec writes the default profile");

    let shell = "echo a | tr a b; ls / > /dev/null && sleep 0.1 & wait; id -u; date > /dev/null && echo done";
    let expected =
        "keyctl=EPERM\nbpf=EPERM\nunshare-user=EPERM\nclone-user=EPERM\nclone3=ENOSYS\nclone-plain=ok\npersonality-query=ok\nb\n65534\ndone\n";
    assert_eq!(run_as_nobody(&mut env, "filtered", &format!("{PROBES}; {shell}")), expected);
    // The compiled program was cached under the state root; the next container loads it from there.
    let cached: Vec<_> = std::fs::read_dir(env.root.join("@seccomp")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(run_as_nobody(&mut env, "cached", &format!("{PROBES}; {shell}")), expected);

    // The same probes without a filter: the kernel itself would have allowed what the profile
    // refused, so the refusals above are the profile's.
    env.bundle.edit(|c| c["linux"]["seccomp"] = json!(null));
    let out = run_as_nobody(&mut env, "unfiltered", "/probe keyctl clone-user clone3 unshare-user");
    // (unshare last: afterwards the probe is in a user namespace without mappings.)
    assert_eq!(out, "keyctl=ok\nclone-user=ok\nclone3=ok\nunshare-user=ok\n");
    std::fs::remove_file(env.bundle.dir.join("rootfs/probe")).unwrap();
    env.leak_check();
}

/// What a seccomp listener saw on one connection: the container process state and the syscall
/// numbers it answered (each refused with EXDEV, an errno nothing else here would produce).
struct Notified {
    state: serde_json::Value,
    syscalls: Vec<i32>,
}

/// A listener at `path` that serves `connections` connections, each on its own thread until the
/// filtered process is gone, then reports what it saw.
fn seccomp_listener(path: &std::path::Path, connections: usize) -> std::sync::mpsc::Receiver<Notified> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(serve_notifications(stream)).unwrap());
        }
    });
    rx
}

fn serve_notifications(stream: std::os::unix::net::UnixStream) -> Notified {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut buf = vec![0u8; 64 * 1024];
    let mut control = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC).unwrap();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel installed these descriptors for us; nothing else owns them.
            fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let len = msg.bytes;
    let state = serde_json::from_slice(&buf[..len]).unwrap();
    assert_eq!(fds.len(), 1, "one notify fd with the state");
    let notify = fds.pop().unwrap();
    let mut syscalls = Vec::new();
    loop {
        let mut poll = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&notify), nix::poll::PollFlags::POLLIN)];
        nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(10_000u16)).unwrap();
        let revents = poll[0].revents().unwrap();
        if !revents.contains(nix::poll::PollFlags::POLLIN) {
            break; // POLLHUP: every process under the filter is gone (or the 10 s ran out)
        }
        // SAFETY: both structs are plain data the kernel fills in or reads; RECV wants it zeroed.
        let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(notify.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut request) } != 0 {
            continue; // the process died between poll and receive
        }
        syscalls.push(request.data.nr);
        let mut response = libc::seccomp_notif_resp { id: request.id, val: 0, error: -libc::EXDEV, flags: 0 };
        // SAFETY: as above.
        unsafe { libc::ioctl(notify.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut response) };
    }
    Notified { state, syscalls }
}

#[test]
fn notify_hands_syscalls_to_the_listener_for_the_init_and_for_exec() {
    let mut env = TestEnv::new("seccomp-notify");
    let socket = env.dir.join("listener.sock");
    let mkdirs = [libc::SYS_mkdir as i32, libc::SYS_mkdirat as i32];
    env.bundle.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket,
            "listenerMetadata": "berth-test",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        c["process"]["args"] = json!(["sh", "-c", "mkdir /tmp/notified; echo rc=$?"]);
        c["root"]["readonly"] = json!(false);
    });

    // The init: the listener answers its mkdir, which the container sees fail with EXDEV.
    let seen = seccomp_listener(&socket, 1);
    let id = env.id("init");
    let out = env.oci(&["run", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rc=1\n", "{stderr}");
    assert!(stderr.contains("cross-device"), "{stderr}");
    assert!(!env.bundle.dir.join("rootfs/tmp/notified").exists());
    let init = seen.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    assert_eq!(init.state["fds"], json!(["seccompFd"]));
    assert_eq!(init.state["metadata"], "berth-test");
    assert_eq!(init.state["state"]["id"], id.as_str());
    assert_eq!(init.state["state"]["status"], "creating");
    assert!(init.state["pid"].as_i64().unwrap() > 1);
    assert_eq!(init.syscalls.len(), 1, "{:?}", init.syscalls);
    assert!(mkdirs.contains(&init.syscalls[0]));
    std::fs::remove_file(&socket).unwrap();

    // exec: a second filter, a second connection, the exec'd process's pid.
    let seen = seccomp_listener(&socket, 2);
    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("exec");
    env.ok(&["run", "--detach", &id]);
    let out = env.oci(&["exec", &id, "mkdir", "/tmp/by-exec"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cross-device"));
    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    let mut states: Vec<Notified> = (0..2).map(|_| seen.recv_timeout(std::time::Duration::from_secs(30)).unwrap()).collect();
    states.sort_by_key(|n| n.state["state"]["status"] != "creating");
    assert!(states[0].syscalls.is_empty(), "sleep makes no mkdir");
    assert_eq!(states[1].state["state"]["status"], "running");
    assert_ne!(states[1].state["pid"], states[0].state["pid"]);
    assert_eq!(states[1].syscalls.len(), 1);
    std::fs::remove_file(&socket).unwrap();

    // A notify rule without a listener, or on sendmsg: refused before anything is created.
    env.bundle.edit(|c| c["linux"]["seccomp"]["listenerPath"] = json!(null));
    let stderr = env.fails(&["run", &env.id("nolistener")]);
    assert!(stderr.contains("listenerPath"), "{stderr}");
    env.bundle.edit(|c| {
        c["linux"]["seccomp"]["listenerPath"] = json!(socket);
        c["linux"]["seccomp"]["syscalls"][0]["names"] = json!(["sendmsg"]);
    });
    let stderr = env.fails(&["run", &env.id("sendmsg")]);
    assert!(stderr.contains("sendmsg"), "{stderr}");
    env.leak_check();
}
