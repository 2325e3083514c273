//! Containers from images, end to end: berthd + berth-shim + berth-oci, images pulled from a
//! private docker-registry. run/exec/attach/logs/stop, ttys driven through a real pty (`script`),
//! survival of kill -9 of berthd, many runs in a row and at once, bad input. Each test ends with
//! the leak check and a look for the containers' cgroups (`/berth/<id>`) and mounts.

use berth_testsupport::{busybox_registry, workspace_bin, Berthd, Registry, TestEnv};
use std::process::{Command, Output, Stdio};

/// A berthd with busybox pulled from a private registry; returns the image's name.
fn setup(name: &str) -> (TestEnv, Registry, Berthd, String) {
    let env = TestEnv::new(name);
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    (env, registry, berthd, image)
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn containers(berthd: &Berthd, env: &TestEnv) -> Vec<serde_json::Value> {
    serde_json::from_str(&berthd.ok(env, &["ps", "-a", "--format", "json"])).unwrap()
}

fn id_of(berthd: &Berthd, env: &TestEnv, name: &str) -> String {
    let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(env, &["inspect", name])).unwrap()[0].clone();
    inspected["id"].as_str().unwrap().to_string()
}

/// No cgroup of these containers is left, on v1 (per controller) or v2.
fn assert_no_cgroups(ids: &[String]) {
    let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup/berth")];
    roots.extend(std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten().map(|c| c.path().join("berth")));
    for root in roots {
        for id in ids {
            assert!(!root.join(id).exists(), "cgroup {} left behind", root.join(id).display());
        }
    }
}

/// Everything of the daemon's containers is gone: state dirs, writable layers, records.
fn assert_no_container_files(berthd: &Berthd) {
    for dir in [berthd.state.join("containers"), berthd.root.join("containers")] {
        let left: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "containers.redb").collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}

/// `berth <args>` started and left running, its output dropped.
fn in_background(berthd: &Berthd, args: &[&str]) -> std::process::Child {
    let mut command = Command::new(workspace_bin("berth"));
    command.arg("--socket").arg(&berthd.socket).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command.spawn().unwrap()
}

/// `berth events` running beside a test; what it printed once stopped.
struct EventsFollower(std::process::Child);

impl EventsFollower {
    fn start(berthd: &Berthd) -> EventsFollower {
        EventsFollower::with(berthd, &[])
    }

    fn with(berthd: &Berthd, args: &[&str]) -> EventsFollower {
        let mut command = Command::new(workspace_bin("berth"));
        command.arg("--socket").arg(&berthd.socket).arg("events").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        EventsFollower(command.spawn().unwrap())
    }

    fn printed(mut self) -> String {
        let _ = self.0.kill();
        String::from_utf8_lossy(&self.0.wait_with_output().unwrap().stdout).into_owned()
    }
}

/// `berth <args>` inside a pty (util-linux `script`), with `input` typed into it.
fn in_pty(berthd: &Berthd, size: (u16, u16), args: &str, input: &str) -> Output {
    in_pty_when(berthd, &format!("stty cols {} rows {}; BERTH", size.0, size.1), args, || true, input.as_bytes())
}

/// `berth <args>` in a pty, after `prefix` (a shell line in which BERTH stands for the command),
/// `input` typed once `ready` says so (a terminal the command has made raw by then takes it as it
/// is: in cooked mode ^Q would be flow control). A session still going after a minute is killed
/// (ours, by PID), so a lost keystroke fails the test instead of hanging it.
fn in_pty_when(berthd: &Berthd, prefix: &str, args: &str, ready: impl Fn() -> bool, input: &[u8]) -> Output {
    let berth = format!("{} --socket {} {args}", workspace_bin("berth").display(), berthd.socket.display());
    let command = if prefix.contains("BERTH") { prefix.replace("BERTH", &berth) } else { berth };
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    let waited = std::time::Instant::now();
    while !ready() && waited.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stdin.write_all(input).unwrap();
    let pid = child.id() as i32;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
            // SAFETY: kill takes a pid and a signal; `script` is this test's own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    // Kept open until the command is done: a closed pty input would hang up the session.
    let out = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    drop(stdin);
    out
}

#[test]
fn run_prints_exits_with_the_containers_status_and_logs_follow() {
    let (env, _registry, berthd, image) = setup("ctr-run");
    let out = berthd.berth(&env, &["run", "--rm", &image, "echo", "hi"]);
    assert_eq!(text(&out).0, "hi\n", "{}", text(&out).1);
    assert!(out.status.success());
    let out = berthd.berth(&env, &["run", "--rm", &image, "sh", "-c", "echo to-err >&2; exit 3"]);
    assert_eq!((out.status.code(), text(&out).1.as_str()), (Some(3), "to-err\n"));
    assert!(containers(&berthd, &env).is_empty(), "--rm removed them");

    // Detached, with the image's settings overridden; logs (tail, timestamps, follow) while it runs.
    let id = berthd.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "-e",
            "GREETING=hello",
            "--hostname",
            "box",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            &image,
            "sh",
            "-c",
            "echo $GREETING $(hostname) $(pwd) $(id -u); for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo oops >&2; exit 4",
        ],
    );
    let id = id.trim().to_string();
    let followed = berthd.berth(&env, &["logs", "-f", "ticker"]);
    assert_eq!(text(&followed).0, "hello box /tmp 65534\ntick 1\ntick 2\ntick 3\n");
    assert_eq!(text(&followed).1, "oops\n");
    assert_eq!(berthd.ok(&env, &["wait", "ticker"]).trim(), "4");
    assert_eq!(berthd.ok(&env, &["logs", "--tail", "2", "ticker"]), "tick 3\n");
    let stamped = berthd.ok(&env, &["logs", "-t", "--tail", "2", "ticker"]);
    assert!(stamped.starts_with("20") && stamped.contains("Z tick 3"), "{stamped}");
    // The log on disk is the CRI format.
    let log = std::fs::read_to_string(berthd.state.join("containers").join(&id).join("ctr.log")).unwrap();
    assert!(log.lines().all(|l| l.split(' ').nth(2) == Some("F")) && log.contains(" stderr F oops"), "{log}");
    let listed = containers(&berthd, &env);
    assert_eq!((listed[0]["state"].as_str(), listed[0]["exit_code"].as_i64()), (Some("exited"), Some(4)));

    // Started again: the same container, its writable layer kept.
    berthd.ok(&env, &["rm", "ticker"]);
    berthd.ok(&env, &["create", "--name", "again", &image, "sh", "-c", "cat /kept 2>/dev/null; echo x > /kept"]);
    assert_eq!(berthd.berth(&env, &["start", "-a", "again"]).stdout, b"");
    assert_eq!(berthd.berth(&env, &["start", "-a", "again"]).stdout, b"x\n");
    let again = id_of(&berthd, &env, "again");
    berthd.ok(&env, &["rm", "again"]);
    assert_no_cgroups(&[id, again]);
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn options_reach_the_container() {
    let (env, _registry, berthd, image) = setup("ctr-options");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        let out = berthd.berth(&env, &all);
        (out.status.code(), text(&out).0, text(&out).1)
    };
    // Networks: none is loopback only; host is the host's.
    assert_eq!(run(&[&image, "ls", "/sys/class/net"]).1, "lo\n");
    let host_links: Vec<String> =
        std::fs::read_dir("/sys/class/net").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(run(&["--network", "host", &image, "ls", "/sys/class/net"]).1.lines().count(), host_links.len());
    // Read-only root, with a writable volume; labels kept.
    let volume = env.dir.join("volume");
    std::fs::create_dir(&volume).unwrap();
    let (code, _, stderr) = run(&["--read-only", "-v", &format!("{}:/data", volume.display()), &image, "sh", "-c", "echo v > /data/f; touch /x"]);
    assert!(code != Some(0) && stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(std::fs::read_to_string(volume.join("f")).unwrap(), "v\n");
    // Capabilities: docker's default set, dropped, or all with --privileged.
    let cap_eff = |args: &[&str]| -> u64 {
        let mut all = args.to_vec();
        all.extend([image.as_str(), "sh", "-c", "grep CapEff /proc/self/status"]);
        u64::from_str_radix(run(&all).1.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(cap_eff(&[]), 0xa80425fb, "docker's default capability set");
    assert_eq!(cap_eff(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]), 1 << 12);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_bounding = u64::from_str_radix(status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim(), 16).unwrap();
    assert_eq!(cap_eff(&["--privileged"]), own_bounding, "all the capabilities berthd may grant");
    // And the host's devices, as docker gives them (/dev/kmsg, opened for writing, stands for
    // any the defaults lack); its own console and terminals, not the host's.
    let kmsg = ["sh", "-c", "if [ -c /dev/kmsg ] && true >> /dev/kmsg; then echo opened; fi 2>/dev/null; ls /dev/pts | grep -vx ptmx | wc -l"];
    assert_eq!(run(&[&[image.as_str()][..], &kmsg].concat()).1, "0\n", "not privileged: no /dev/kmsg");
    assert_eq!(run(&[&["--privileged", image.as_str()][..], &kmsg].concat()).1, "opened\n0\n");
    // Another OCI runtime under the same shim: runc.
    assert_eq!(run(&["--runtime", "runc", "--name", "by-runc", &image, "echo", "from runc"]).1, "from runc\n");
    assert!(containers(&berthd, &env).is_empty());
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn exec_attach_and_ttys() {
    let (env, _registry, berthd, image) = setup("ctr-exec");
    berthd.ok(&env, &["run", "-d", "-i", "--name", "box", &image, "sh", "-c", "while read line; do echo got $line; done; echo stdin closed"]);
    let out = berthd.berth(&env, &["exec", "-e", "X=1", "-w", "/etc", "box", "sh", "-c", "echo $X $(pwd); exit 7"]);
    assert_eq!((out.status.code(), text(&out).0.as_str()), (Some(7), "1 /etc\n"), "{}", text(&out).1);
    let mut exec = Command::new(workspace_bin("berth"));
    exec.arg("--socket").arg(&berthd.socket).args(["exec", "-i", "box", "cat"]);
    let out = env.capture(exec.stdin(std::fs::File::open("/etc/hostname").unwrap()));
    assert_eq!(text(&out).0, std::fs::read_to_string("/etc/hostname").unwrap());

    // Attach with stdin: what we type reaches the container, its answer comes back; closing our
    // stdin closes its stdin.
    let mut attach = Command::new(workspace_bin("berth"));
    attach.arg("--socket").arg(&berthd.socket).args(["attach", "box"]);
    let mut child = attach.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out).0, "got one\ngot two\nstdin closed\n", "{}", text(&out).1);
    assert_eq!(berthd.ok(&env, &["wait", "box"]).trim(), "0");

    // A real terminal: tty, its size, input typed into it, the exit status.
    let out = in_pty(&berthd, (101, 33), &format!("run --rm -it {image} sh -c 'tty; stty size; read x; echo typed $x; exit 5'"), "abc\n");
    let stdout = text(&out).0;
    assert!(stdout.contains("/dev/pts/") && stdout.contains("33 101") && stdout.contains("typed abc"), "{stdout:?}");
    assert_eq!(out.status.code(), Some(5));
    berthd.ok(&env, &["run", "-d", "--name", "quiet", "--memory", "64m", "--pids-limit", "20", &image, "sleep", "100"]);
    // top and stats: its cgroup's view of it, limits included.
    let top = berthd.ok(&env, &["top", "quiet"]);
    assert!(top.starts_with("UID") && top.lines().count() == 2 && top.lines().nth(1).is_some_and(|l| l.ends_with("sleep 100")), "{top}");
    // ps's own options, as docker passes them on; a PID column is needed to pick the rows.
    let custom = berthd.ok(&env, &["top", "quiet", "-o", "pid,user,args"]);
    assert!(custom.lines().next().is_some_and(|l| l.split_whitespace().eq(["PID", "USER", "COMMAND"])), "{custom}");
    assert!(custom.lines().nth(1).is_some_and(|l| l.ends_with("sleep 100")) && custom.lines().count() == 2, "{custom}");
    assert!(!berthd.berth(&env, &["top", "quiet", "-o", "comm"]).status.success(), "no PID column");
    let stats: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["stats", "--no-stream", "--format", "json", "quiet"])).unwrap();
    assert_eq!(stats["stats"]["memory"]["usage"]["limit"], 64 << 20, "{stats}");
    assert_eq!((stats["stats"]["pids"]["current"].as_u64(), stats["stats"]["pids"]["limit"].as_u64()), (Some(1), Some(20)), "{stats}");
    let out = in_pty(&berthd, (90, 20), "exec -it quiet sh -c 'tty; stty size'", "");
    assert!(text(&out).0.contains("/dev/pts/") && text(&out).0.contains("20 90"), "{:?}", text(&out));

    // A resize reaches the container's terminal.
    berthd.ok(&env, &["run", "-d", "-t", "--name", "tty", &image, "sleep", "100"]);
    // (Straight to its shim, whose directory berthd keeps in its state: no client resizes a
    // container it is not attached to.)
    let id = id_of(&berthd, &env, "tty");
    let shim = berth_shim::Client::new(&berthd.state.join("containers").join(&id).join("shim"));
    shim.resize(&id, None, 77, 22).unwrap();
    assert_eq!(berthd.ok(&env, &["exec", "tty", "sh", "-c", "stty size < /dev/console"]), "22 77\n");
    berthd.ok(&env, &["rm", "-f", "tty"]);

    // exec into a stopped container: a clear error.
    berthd.ok(&env, &["stop", "-t", "0", "quiet"]);
    let out = berthd.berth(&env, &["exec", "quiet", "true"]);
    assert!(!out.status.success() && text(&out).1.contains("is not running"), "{:?}", text(&out));
    let ids = [id_of(&berthd, &env, "box"), id_of(&berthd, &env, "quiet")];
    berthd.ok(&env, &["rm", "box", "quiet"]);
    assert_no_cgroups(&ids);
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let (env, _registry, berthd, image) = setup("ctr-stop");
    berthd.ok(&env, &["run", "-d", "--name", "stubborn", &image, "sh", "-c", "trap 'echo ignored TERM' TERM; while true; do sleep 0.1; done"]);
    berthd.ok(&env, &["run", "-d", "--name", "polite", &image, "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    berthd.ok(&env, &["stop", "-t", "1", "stubborn"]);
    let took = started.elapsed();
    berthd.ok(&env, &["stop", "-t", "30", "polite"]);
    let listed = containers(&berthd, &env);
    let code = |name: &str| listed.iter().find(|c| c["name"] == name).unwrap()["exit_code"].as_i64();
    assert_eq!((code("stubborn"), code("polite")), (Some(137), Some(0)));
    assert!(took.as_secs_f64() >= 1.0, "SIGKILL came only after the timeout ({took:?})");
    assert!(berthd.ok(&env, &["logs", "stubborn"]).contains("ignored TERM"));
    // kill by name; rm -f of a running container.
    // (A container's init ignores signals it has no handler for, SIGKILL aside: hence the trap.)
    berthd.ok(&env, &["run", "-d", "--name", "victim", &image, "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    berthd.ok(&env, &["kill", "-s", "TERM", "victim"]);
    assert_eq!(berthd.ok(&env, &["wait", "victim"]).trim(), "3");
    berthd.ok(&env, &["start", "victim"]);
    berthd.ok(&env, &["kill", "victim"]);
    assert_eq!(berthd.ok(&env, &["wait", "victim"]).trim(), "137");
    berthd.ok(&env, &["run", "-d", "--name", "forced", &image, "sleep", "100"]);
    let out = berthd.berth(&env, &["rm", "forced"]);
    assert!(text(&out).1.contains("is running"), "{:?}", text(&out));
    let ids: Vec<String> = ["stubborn", "polite", "victim", "forced"].iter().map(|n| id_of(&berthd, &env, n)).collect();
    berthd.ok(&env, &["rm", "-f", "stubborn", "polite", "victim", "forced"]);
    assert_no_cgroups(&ids);
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing() {
    let (env, _registry, berthd, image) = setup("ctr-bad");
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--rm", "--pull", "never", "localhost/nosuch:1", "true"], "no such image"),
        (&["run", "--rm", "localhost/nosuch:1", "true"], "Connection refused"),
        (&["run", "--rm", "-u", "nosuchuser", &image, "true"], "nosuchuser"),
        (&["run", "--rm", "-u", "4294967296", &image, "true"], "out of range"),
        (&["run", "--rm", "-v", "/nonexistent/berth-src:/data", &image, "true"], "volume source /nonexistent/berth-src does not exist"),
        (&["run", "--rm", "--name", "bad/name", &image, "true"], "container name"),
        (&["run", "--rm", "--network", "nosuchnet", &image, "true"], "network nosuchnet"),
        (&["run", "--rm", "--network", "container:x", &image, "true"], "no such container: x"),
        (&["run", "--rm", "-p", "80", &image, "true"], "need a bridge network"),
        (&["run", "--rm", "-p", "80:x", &image, "true"], "publish \"80:x\""),
        (&["run", "--rm", "--cap-add", "CAP_NOPE", &image, "true"], "unknown capability"),
        (&["run", "--rm", "--runtime", "nosuch", &image, "true"], "unknown runtime"),
        (&["run", "--rm", &image, "/no/such/binary"], "/no/such/binary"),
        (&["exec", "nosuch", "true"], "no such container"),
    ];
    for (args, expected) in cases {
        let out = berthd.berth(&env, args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success() && stderr.contains(expected), "berth {args:?}: {stderr}");
        assert!(containers(&berthd, &env).is_empty(), "berth {args:?} left a container");
        assert_no_container_files(&berthd);
    }
    // A name clash: the second create fails and the first container is untouched.
    berthd.ok(&env, &["create", "--name", "taken", &image, "true"]);
    let out = berthd.berth(&env, &["create", "--name", "taken", &image, "true"]);
    assert!(text(&out).1.contains("already used"), "{:?}", text(&out));
    assert_eq!(containers(&berthd, &env).len(), 1);
    // An image in use is not removed from under its container.
    let out = berthd.berth(&env, &["rmi", &image]);
    assert!(text(&out).1.contains("is used by container taken"), "{:?}", text(&out));
    let id = id_of(&berthd, &env, "taken");
    berthd.ok(&env, &["rm", "taken"]);
    assert_no_cgroups(&[id]);
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn containers_outlive_berthd_and_are_found_again() {
    let (env, registry, mut berthd, image) = setup("ctr-restart");
    for i in 0..5 {
        berthd.ok(&env, &["run", "-d", "--name", &format!("long{i}"), &image, "sh", "-c", "echo up; sleep 1000"]);
        berthd.ok(&env, &["run", "-d", "--name", &format!("short{i}"), &image, "sh", "-c", &format!("sleep 1; echo done; exit {}", 10 + i)]);
    }
    let ids: Vec<String> = containers(&berthd, &env).iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    // kill -9: nothing graceful; the shorts exit while nobody is there.
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let berthd2 = Berthd::start(&env, &[&registry.address]);
    let listed = containers(&berthd2, &env);
    assert_eq!(listed.len(), 10);
    for c in &listed {
        let name = c["name"].as_str().unwrap();
        if let Some(i) = name.strip_prefix("short") {
            assert_eq!((c["state"].as_str(), c["exit_code"].as_i64()), (Some("exited"), Some(10 + i.parse::<i64>().unwrap())), "{c}");
            assert_eq!(berthd2.ok(&env, &["logs", name]), "done\n");
        } else {
            assert_eq!(c["state"], "running", "{c}");
        }
    }
    // The survivors are whole: exec and logs work; a graceful stop of berthd leaves them running
    // too, and they stop as usual.
    assert_eq!(berthd2.ok(&env, &["exec", "long3", "echo", "alive"]), "alive\n");
    berthd2.stop();
    let berthd2 = Berthd::start(&env, &[&registry.address]);
    assert_eq!(berthd2.ok(&env, &["logs", "long0"]), "up\n");
    assert!(containers(&berthd2, &env).iter().filter(|c| c["state"] == "running").count() == 5);
    let names: Vec<String> = (0..5).flat_map(|i| [format!("long{i}"), format!("short{i}")]).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    berthd2.ok(&env, &args);
    assert_no_cgroups(&ids);
    assert_no_container_files(&berthd2);
    berthd2.stop();
    // (The first berthd is already dead; its Drop finds nothing to do.)
    berthd.child.try_wait().unwrap();
    env.leak_check();
}

#[test]
fn two_hundred_runs_in_a_row_and_fifty_at_once() {
    let (env, _registry, berthd, image) = setup("ctr-many");
    let berthd_fds = || std::fs::read_dir(format!("/proc/{}/fd", berthd.child.id())).unwrap().count();
    // The events stream, read as it comes (a full pipe would hold berthd's sender back).
    let mut events = Command::new(workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(events.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // Warm up (the blocking pool's threads, the database's pages) before counting fds; its
    // events say the stream is subscribed.
    berthd.ok(&env, &["run", "--rm", &image, "true"]);
    while !received.recv_timeout(std::time::Duration::from_secs(30)).unwrap().contains(" destroy ") {}
    let fds_before = berthd_fds();
    for i in 0..200 {
        let out = berthd.berth(&env, &["run", "--rm", &image, "sh", "-c", &format!("exit {}", i % 3)]);
        assert_eq!(out.status.code(), Some(i % 3), "run {i}: {}", text(&out).1);
    }
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let mut command = Command::new(workspace_bin("berth"));
            command.arg("--socket").arg(&berthd.socket).args(["run", "--rm", &image, "echo", &format!("n{i}")]).stdin(Stdio::null());
            std::thread::spawn(move || command.output().unwrap())
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let out = handle.join().unwrap();
        assert_eq!((out.status.code(), text(&out).0), (Some(0), format!("n{i}\n")), "{}", text(&out).1);
    }
    assert!(containers(&berthd, &env).is_empty());
    assert_no_container_files(&berthd);
    let fds_after = berthd_fds();
    assert!(fds_after <= fds_before + 2, "berthd holds {fds_after} fds after 250 runs, {fds_before} before");
    let mut created = Vec::new();
    while created.len() < 250 {
        let line = received.recv_timeout(std::time::Duration::from_secs(30)).expect("an event for every run");
        if let ["container", "create", id] = line.split_whitespace().skip(1).take(3).collect::<Vec<_>>()[..] {
            created.push(id.to_string());
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert_no_cgroups(&created);
    berthd.stop();
    env.leak_check();
}

#[test]
fn a_container_half_created_when_berthd_died_is_removed_at_restart() {
    let (env, registry, berthd, image) = setup("ctr-half");
    berthd.stop();
    // A shim that never reports back: berthd is inside `create` when it is killed.
    let hang = env.dir.join("hanging-shim");
    let pid_file = env.dir.join("hanging-shim.pid");
    std::fs::write(&hang, format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000\n", pid_file.display())).unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut stuck = Berthd::start_with(&env, &[&registry.address], &format!("shim = {hang:?}\n"), None);
    let mut create = in_background(&stuck, &["create", "--name", "half", &image, "true"]);
    let started = std::time::Instant::now();
    while !pid_file.exists() {
        assert!(started.elapsed().as_secs() < 30, "the hanging shim never ran");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_dir(stuck.state.join("containers")).unwrap().count(), 1, "create got as far as the bundle");
    stuck.child.kill().unwrap();
    stuck.child.wait().unwrap();
    let _ = create.wait();
    let shim_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // SAFETY: kill takes a pid and a signal; the pid is the script this test wrote and berthd ran.
    unsafe { libc::kill(shim_pid, libc::SIGKILL) };

    let berthd = Berthd::start(&env, &[&registry.address]);
    assert!(containers(&berthd, &env).is_empty(), "the half-created container is gone");
    assert_no_container_files(&berthd);
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounted.contains(&stuck.state.to_string_lossy().into_owned()), "its rootfs is unmounted");
    // Its lease went with it: nothing keeps the image's layers once the image is removed.
    berthd.ok(&env, &["rmi", &image]);
    assert!(berthd.ok(&env, &["prune"]).starts_with("removed 3 blobs and 1 snapshots"), "the lease was released");
    berthd.stop();
    env.leak_check();
}

#[test]
fn run_rm_removes_the_container_even_when_the_client_is_killed() {
    let (env, _registry, berthd, image) = setup("ctr-rm-killed");
    // Long enough to be seen running by a poll that takes seconds under the VM's emulation.
    let mut client = in_background(&berthd, &["run", "--rm", "--name", "orphan", &image, "sh", "-c", "sleep 8; exit 3"]);
    let started = std::time::Instant::now();
    while !containers(&berthd, &env).iter().any(|c| c["name"] == "orphan" && c["state"] == "running") {
        // (Bounds for the VM's emulation on a shared machine, not for speed.)
        assert!(started.elapsed().as_secs() < 90, "the container never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let id = id_of(&berthd, &env, "orphan");
    client.kill().unwrap();
    client.wait().unwrap();
    // Nobody waits on it any more: berthd removes it when it exits.
    while !containers(&berthd, &env).is_empty() {
        assert!(started.elapsed().as_secs() < 90, "the container was never removed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_no_cgroups(&[id]);
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn berthd_killed_while_fifty_containers_start_leaves_each_whole_or_gone() {
    let (env, registry, berthd, image) = setup("ctr-crash50");
    let clients: Vec<_> = (0..50).map(|i| in_background(&berthd, &["run", "-d", "--name", &format!("c{i}"), &image, "sleep", "1000"])).collect();
    // Killed with some containers made, some half made, some not begun.
    let bundles = berthd.state.join("containers");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&bundles).map(|d| d.count()).unwrap_or(0) < 30 && started.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut berthd = berthd;
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    for mut client in clients {
        client.wait().unwrap();
    }

    let berthd = Berthd::start(&env, &[&registry.address]);
    let listed = containers(&berthd, &env);
    let ids: Vec<String> = listed.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    // What is listed is whole: running, or created and startable (berthd died between the two).
    for c in &listed {
        let name = c["name"].as_str().unwrap();
        match c["state"].as_str().unwrap() {
            "running" => {}
            "created" => {
                berthd.ok(&env, &["start", name]);
            }
            other => panic!("{name} is {other} after the restart"),
        }
        assert_eq!(berthd.ok(&env, &["exec", name, "echo", "whole"]), "whole\n", "{name}");
    }
    // What is not listed left no trace: no bundle, writable layer, runtime state, mount or shim.
    for dir in [berthd.state.join("containers"), berthd.root.join("containers"), berthd.state.join("runtime/berth-oci")] {
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
        // (berth-oci keeps files of its own there, named with an @.)
        left.retain(|n| n != "containers.redb" && !n.starts_with('@') && !ids.contains(n));
        assert!(left.is_empty(), "unlisted containers left in {}: {left:?}", dir.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs_mounts = mounts.lines().filter(|l| l.contains(&*berthd.state.to_string_lossy())).count();
    assert_eq!(rootfs_mounts, listed.len(), "one rootfs mount per listed container");
    eprintln!("crash50: {} of 50 containers whole after the restart, the rest gone", listed.len());
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    if !ids.is_empty() {
        berthd.ok(&env, &args);
    }
    assert_no_container_files(&berthd);
    berthd.stop();
    env.leak_check();
}

#[test]
fn the_cli_keeps_dockers_habits_exit_codes_many_names_and_quiet_pipes() {
    let (env, _registry, berthd, image) = setup("cli-habits");
    // Usage errors and failed runs: 125, 126/127 for a command that cannot run, the container's
    // own status otherwise.
    assert_eq!(berthd.berth(&env, &["ps", "--no-such-flag"]).status.code(), Some(125));
    let missing = berthd.berth(&env, &["run", "--rm", &image, "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", text(&missing).1);
    assert!(text(&missing).1.contains("executable file not found"), "{}", text(&missing).1);
    // Said once, without the runtime's internal command line.
    let said = text(&missing).1;
    assert!(!said.contains("--bundle") && said.matches("container init failed").count() <= 1, "{said}");
    let denied = berthd.berth(&env, &["run", "--rm", &image, "/etc/passwd"]);
    assert_eq!(denied.status.code(), Some(126), "a file that cannot be run: {}", text(&denied).1);
    assert!(text(&denied).1.contains("permission denied"), "{}", text(&denied).1);
    assert_eq!(berthd.berth(&env, &["run", "--rm", &image, "sh", "-c", "exit 1"]).status.code(), Some(1));
    assert_eq!(berthd.berth(&env, &["run", "--rm", "--memory", "lots", &image, "true"]).status.code(), Some(125), "a bad flag value");

    // The socket from the environment, as docker's and podman's clients take it.
    for (variable, value) in [("BERTH_HOST", format!("unix://{}", berthd.socket.display())), ("CONTAINER_HOST", berthd.socket.display().to_string())]
    {
        let out = env.capture(Command::new(workspace_bin("berth")).args(["ps", "-a"]).env(variable, value).stdin(Stdio::null()));
        assert!(out.status.success(), "{variable}: {}", text(&out).1);
    }
    let remote = env.capture(Command::new(workspace_bin("berth")).arg("ps").env("BERTH_HOST", "tcp://10.0.0.1:2375").stdin(Stdio::null()));
    assert!(!remote.status.success() && text(&remote).1.contains("unix socket"), "{}", text(&remote).1);

    // stop/kill/rm go through every name; the unknown ones are errors, the rest done.
    berthd.ok(&env, &["run", "-d", "--name", "known", &image, "sleep", "100"]);
    let stopped = berthd.berth(&env, &["stop", "-t", "1", "nosuch1", "known", "nosuch2"]);
    let (out, err) = text(&stopped);
    assert_eq!((stopped.status.code(), out.trim()), (Some(1), "known"), "{err}");
    assert!(err.contains("nosuch1") && err.contains("nosuch2"), "{err}");
    let known = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "known"])).unwrap()[0].clone();
    assert_eq!((&known["state"], &known["pid"]), (&serde_json::json!("exited"), &serde_json::json!(0)), "stopped, and no stale pid");

    // `run -d --rm`: berthd removes it once it has exited, with no client waiting.
    berthd.ok(&env, &["run", "-d", "--rm", "--name", "gone", &image, "true"]);
    for _ in 0..100 {
        if !containers(&berthd, &env).iter().any(|c| c["name"] == "gone") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!containers(&berthd, &env).iter().any(|c| c["name"] == "gone"), "run -d --rm left its container");

    // An exited container keeps no mount; `start` mounts it again.
    berthd.ok(&env, &["run", "--name", "again", &image, "echo", "hi"]);
    let mounted = |id: &str| std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.contains(id) && l.contains("/rootfs "));
    let again = id_of(&berthd, &env, "again");
    for _ in 0..50 {
        if !mounted(&again) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!mounted(&again), "an exited container's rootfs is still mounted");
    assert_eq!(berthd.ok(&env, &["start", "-a", "again"]), "hi\n");
    berthd.ok(&env, &["rm", "again"]);

    // A second berthd on the same socket leaves the first's alone.
    let other = env.dir.join("other.toml");
    std::fs::write(
        &other,
        format!("root = {:?}\nstate = {:?}\nsocket = {:?}\n", env.dir.join("other-root"), env.dir.join("other-state"), berthd.socket),
    )
    .unwrap();
    let second = env.capture(Command::new(workspace_bin("berthd")).arg("--config").arg(&other).stdin(Stdio::null()));
    assert!(!second.status.success() && text(&second).1.contains("served by another process"), "{}", text(&second).1);
    berthd.ok(&env, &["ps", "-a"]);
    let _ = std::fs::remove_dir_all(env.dir.join("other-root"));
    let _ = std::fs::remove_dir_all(env.dir.join("other-state"));

    // A reader that goes away ends `berth logs` quietly, by SIGPIPE, as docker's and podman's.
    berthd.ok(&env, &["run", "--name", "chatty", &image, "seq", "1", "200000"]);
    let mut logs = Command::new(workspace_bin("berth"));
    logs.arg("--socket").arg(&berthd.socket).args(["logs", "chatty"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut logs = logs.spawn().unwrap();
    let mut first = [0u8; 2];
    std::io::Read::read_exact(logs.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(logs.stdout.take());
    let done = logs.wait_with_output().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&done.status), Some(libc::SIGPIPE), "{:?}", done.status);
    assert!(done.stderr.is_empty(), "{}", String::from_utf8_lossy(&done.stderr));

    // Scripting: ps --filter, inspect and rmi of several names, stats of every running one.
    berthd.ok(&env, &["run", "-d", "--name", "front", "-l", "tier=front", &image, "sleep", "100"]);
    assert_eq!(berthd.berth(&env, &["run", "--name", "failed", &image, "sh", "-c", "exit 4"]).status.code(), Some(4));
    let filtered = |filters: &[&str]| {
        let args: Vec<&str> = ["ps", "-a", "--format", "json"].into_iter().chain(filters.iter().flat_map(|f| ["--filter", *f])).collect();
        let list: Vec<serde_json::Value> = serde_json::from_str(&berthd.ok(&env, &args)).unwrap();
        let mut names: Vec<String> = list.iter().map(|c| c["name"].as_str().unwrap_or_default().to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(filtered(&["label=tier=front"]), ["front"]);
    assert_eq!(filtered(&["status=exited", "exited=4"]), ["failed"]);
    assert_eq!(filtered(&["name=front", "name=failed"]), ["failed", "front"], "one key's values: either");
    assert_eq!(filtered(&["name=front", "status=exited"]), Vec::<String>::new(), "different keys: all");
    let running: Vec<serde_json::Value> = serde_json::from_str(&berthd.ok(&env, &["ps", "--filter", "status=exited", "--format", "json"])).unwrap();
    assert!(running.iter().any(|c| c["name"] == "failed"), "a status filter looks at exited containers without -a");
    assert_eq!(berthd.berth(&env, &["ps", "--filter", "colour=red"]).status.code(), Some(125));
    let both: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["inspect", "front", "failed"])).unwrap();
    assert_eq!((both[0]["name"].as_str(), both[1]["name"].as_str()), (Some("front"), Some("failed")));
    let partly = berthd.berth(&env, &["inspect", "front", "nosuch"]);
    assert!(!partly.status.success() && text(&partly).0.contains("front") && text(&partly).1.contains("nosuch"), "{partly:?}");
    // One name: still docker's array; times in RFC 3339, Go's zero time for what has not happened.
    let one = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "front"])).unwrap();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    let created = one[0]["created_at"].as_str().unwrap_or_default();
    assert!(humantime::parse_rfc3339(created).is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 600)), "{created}");
    assert_eq!(one[0]["finished_at"], "0001-01-01T00:00:00Z");
    assert_eq!(berthd.ok(&env, &["inspect", "--format", "{{.name}} {{.state}}", "front", "failed"]), "front running\nfailed exited\n");
    assert_eq!(berthd.berth(&env, &["inspect", "--format", "{{.name", "front"]).status.code(), Some(125), "a bad template is a usage error");
    let stats = berthd.ok(&env, &["stats", "--no-stream"]);
    assert!(stats.starts_with("NAME") && stats.contains("CPU %"), "{stats}");
    let names: Vec<&str> = stats.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"front") && !names.contains(&"known") && !names.contains(&"failed"), "every running one:\n{stats}");
    berthd.ok(&env, &["tag", &image, "localhost/one:1"]);
    berthd.ok(&env, &["tag", &image, "localhost/two:1"]);
    let removed = berthd.berth(&env, &["rmi", "localhost/one:1", "nosuch:1", "localhost/two:1"]);
    assert_eq!(text(&removed).0, "Untagged: localhost/one:1\nUntagged: localhost/two:1\n", "{}", text(&removed).1);
    assert!(!removed.status.success() && text(&removed).1.contains("nosuch"), "{}", text(&removed).1);
    // Go templates, as docker's --format; an image's short id runs it.
    assert_eq!(
        berthd
            .ok(&env, &["ps", "-a", "--filter", "name=failed", "--format", "{{.Names}} {{.State}} {{.Status}}"])
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>(),
        ["failed", "exited", "Exited", "(4)"]
    );
    let table = berthd.ok(&env, &["ps", "--filter", "name=front", "--format", "table {{.Names}}\\t{{.Labels}}"]);
    assert_eq!(table, "NAMES\tLABELS\nfront\ttier=front\n");
    let json_line = berthd.ok(&env, &["ps", "--filter", "name=front", "--format", "{{json .}}"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json_line).unwrap()["Names"], "front");
    let image_line = berthd.ok(&env, &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"]);
    let (reference, rest) = image_line.lines().find(|l| l.starts_with(&image)).unwrap_or_default().split_once(' ').unwrap_or_default();
    assert_eq!(reference, image);
    let short_id = rest.split_whitespace().next().unwrap_or_default().to_string();
    assert!(short_id.len() == 12 && (rest.ends_with("kB") || rest.ends_with("MB")), "{image_line}");
    assert_eq!(berthd.ok(&env, &["run", "--rm", &short_id, "echo", "by id"]), "by id\n");
    let images_table = berthd.ok(&env, &["images"]);
    assert!(images_table.starts_with("REPOSITORY") && images_table.contains(&short_id), "{images_table}");
    assert!(!berthd.berth(&env, &["ps", "--format", "{{.Names"]).status.success(), "a broken template is refused");
    berthd.ok(&env, &["rm", "-f", "front", "failed"]);

    berthd.ok(&env, &["rm", "-f", "known", "chatty"]);
    // SIGTERM stops berthd even with a client following its events (Berthd::stop allows 10 s).
    let mut follower = in_background(&berthd, &["events"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    berthd.stop();
    let _ = follower.kill();
    let _ = follower.wait();
    env.leak_check();
}

#[test]
fn a_huge_command_does_not_break_listing_or_inspecting() {
    let (env, _registry, berthd, image) = setup("huge-command");
    let peak = berth_testsupport::PeakRss::start(berthd.child.id());
    // Two containers whose commands are 200,000 arguments of 10 bytes each: either fits a
    // request, both together are over the transport's 4 MiB limit on one list answer.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let channel = berth_api::connect(&berthd.socket).await.unwrap();
        let mut client = berth_api::v1::containers_client::ContainersClient::new(channel);
        for name in ["huge1", "huge2"] {
            let request = berth_api::v1::CreateContainerRequest {
                image: image.clone(),
                name: name.into(),
                args: std::iter::once("true".to_string()).chain(std::iter::repeat_n("x".repeat(10), 200_000)).collect(),
                ..Default::default()
            };
            client.create(request).await.unwrap();
        }
    });
    let listed = containers(&berthd, &env);
    assert_eq!(listed.len(), 2);
    let shown = listed[0]["command"].as_array().unwrap();
    assert!(shown.len() < 5000 && shown.last().unwrap().as_str().unwrap().ends_with('…'), "{} arguments shown", shown.len());
    let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "huge1"])).unwrap()[0].clone();
    assert_eq!(inspected["name"], "huge1");
    let grown = peak.grown_kib();
    eprintln!("two 2.4 MB commands created, listed and inspected: berthd's peak RSS +{grown} KiB");
    assert!(grown < 64 << 10, "berthd's peak RSS grew by {grown} KiB");
    berthd.ok(&env, &["rm", "huge1", "huge2"]);
    drop(berthd);
    env.leak_check();
}

#[test]
fn signals_to_a_foreground_run_reach_the_container_and_rm_still_removes_it() {
    let (env, _registry, berthd, image) = setup("sig-proxy");
    let script = "trap 'exit 5' INT; trap 'exit 6' TERM; trap 'exit 7' USR1; echo ready; while true; do sleep 0.1; done";
    // Signals sent to the client itself, as a supervisor or `kill` would.
    for (signal, expected) in [(libc::SIGINT, 5), (libc::SIGTERM, 6), (libc::SIGUSR1, 7)] {
        let name = format!("proxied{signal}");
        let mut client = Command::new(workspace_bin("berth"))
            .arg("--socket")
            .arg(&berthd.socket)
            .args(["run", "--rm", "--name", &name, &image, "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        // SAFETY: kill takes a pid and a signal; the pid is our own child's.
        assert_eq!(unsafe { libc::kill(client.id() as i32, signal) }, 0);
        let status = client.wait().unwrap();
        assert_eq!(status.code(), Some(expected), "signal {signal}: the client exits with the container's status");
        assert!(!containers(&berthd, &env).iter().any(|c| c["name"] == name.as_str()), "--rm removed {name}");
    }

    // ^C typed at a terminal: the line discipline signals the client, which passes it on.
    let berth = format!("{} --socket {}", workspace_bin("berth").display(), berthd.socket.display());
    let mut session = Command::new("script")
        // exec: no shell between script and the client, to be signalled too and to die of it.
        .args(["-qec", &format!("exec {berth} run --rm --name typed {image} sh -c \"{script}\""), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut output = session.stdout.take().unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut output, &mut buf).unwrap();
        assert!(n > 0, "the session ended before the container was ready: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let mut input = session.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"\x03").unwrap();
    let status = session.wait().unwrap();
    drop(input);
    assert_eq!(status.code(), Some(5), "^C: the container's trap ran and its status came back");
    assert!(!containers(&berthd, &env).iter().any(|c| c["name"] == "typed"), "--rm removed it");
    drop(berthd);
    env.leak_check();
}

#[test]
fn run_pulls_a_missing_image_as_pull_says() {
    let env = TestEnv::new("run-pull");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    let never = berthd.berth(&env, &["run", "--rm", "--pull", "never", &image, "true"]);
    assert_eq!(never.status.code(), Some(125), "--pull never: {}", text(&never).1);
    assert!(text(&never).1.contains("no such image"), "{}", text(&never).1);
    // Missing (the default): pulled, the pull said on stderr, stdout the container's alone.
    let out = berthd.berth(&env, &["run", "--rm", &image, "echo", "hi"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hi\n");
    assert!(stderr.contains("Unable to find image") && stderr.contains("bytes downloaded"), "{stderr}");
    // Present: no pull; always: a pull (nothing new to download).
    let again = berthd.berth(&env, &["run", "--rm", &image, "true"]);
    assert!(again.status.success() && !text(&again).1.contains("Unable to find image"), "{}", text(&again).1);
    let always = berthd.berth(&env, &["run", "--rm", "--pull", "always", &image, "true"]);
    assert!(always.status.success() && text(&always).1.contains("(0 bytes downloaded)"), "{}", text(&always).1);
    // An image no registry has: the pull's error, as docker's engine errors, 125.
    let unknown = berthd.berth(&env, &["run", "--rm", &format!("{}/no/such:v1", registry.address), "true"]);
    assert_eq!(unknown.status.code(), Some(125), "{}", text(&unknown).1);
    assert!(text(&unknown).1.contains("MANIFEST_UNKNOWN") || text(&unknown).1.contains("404"), "{}", text(&unknown).1);
    drop(berthd);
    env.leak_check();
}

#[test]
fn named_volumes_outlive_containers_and_image_volumes_start_from_the_image() {
    let env = TestEnv::new("volumes");
    // busybox with /data (a file of uid 1000, mode 0640, a symlink that points out, a FIFO) and
    // VOLUME /data and /cache in its config.
    let rootfs = env.dir.join("volume-rootfs");
    berth_testsupport::busybox_rootfs(&rootfs);
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    std::fs::write(rootfs.join("data/seed"), "from the image\n").unwrap();
    std::os::unix::fs::chown(rootfs.join("data/seed"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(rootfs.join("data/seed"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", rootfs.join("data/link")).unwrap();
    nix::unistd::mkfifo(&rootfs.join("data/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let layout = berth_testsupport::write_layout(
        &env.dir.join("volume-layout"),
        "v1",
        &[berth_testsupport::LayoutImage {
            architecture: berth_testsupport::host_architecture(),
            layers: vec![berth_testsupport::tar_of(&rootfs)],
            zstd: false,
        }],
    );
    berth_testsupport::patch_layout_config(&layout, |config| config["config"]["Volumes"] = serde_json::json!({"/data": {}, "/cache": {}}));
    let archive = berth_testsupport::layout_archive(&layout);
    let berthd = Berthd::start(&env, &[]);
    berthd.ok(&env, &["load", archive.to_str().unwrap(), "test/volumes:v1"]);
    let image = "test/volumes:v1";
    let volumes = |berthd: &Berthd| -> Vec<String> { berthd.ok(&env, &["volume", "ls", "-q"]).lines().map(String::from).collect() };

    // The image's VOLUME: an anonymous volume filled from the image, gone with its container.
    let out = berthd.ok(&env, &["run", "--rm", image, "sh", "-c", "cat /data/seed; stat -c %u:%g:%a /data/seed; readlink /data/link; ls /data"]);
    assert_eq!(out, "from the image\n1000:1000:640\n/etc/passwd\nlink\nseed\n", "copied with owner, mode and symlink; the FIFO skipped");
    assert!(volumes(&berthd).is_empty(), "--rm took its anonymous volumes: {:?}", volumes(&berthd));

    // A named volume: made on first use, filled from the image, kept after its container.
    berthd.ok(&env, &["run", "--name", "writer", "-v", "mydata:/data", image, "sh", "-c", "echo from writer >> /data/seed"]);
    let listed = volumes(&berthd);
    assert!(listed.contains(&"mydata".to_string()) && listed.len() == 2, "mydata and writer's /cache: {listed:?}");
    let in_use = berthd.berth(&env, &["volume", "rm", "mydata"]);
    assert!(!in_use.status.success() && text(&in_use).1.contains("in use by writer"), "{}", text(&in_use).1);
    berthd.ok(&env, &["rm", "writer"]);
    assert_eq!(volumes(&berthd), ["mydata"], "writer's anonymous volume went with it");
    let out =
        berthd.ok(&env, &["run", "--rm", "-v", "mydata:/data:ro", image, "sh", "-c", "cat /data/seed; touch /data/x 2>/dev/null || echo read-only"]);
    assert_eq!(out, "from the image\nfrom writer\nread-only\n", "the next container sees what the last wrote, not the image again");
    let inspected: serde_json::Value = serde_json::from_str(&berthd.ok(&env, &["volume", "inspect", "mydata"])).unwrap();
    assert_eq!(inspected[0]["anonymous"], false);
    assert!(std::path::Path::new(inspected[0]["mountpoint"].as_str().unwrap()).join("seed").exists());

    // Names are checked; a relative path is a host directory; prune takes what nothing uses.
    let bad = berthd.berth(&env, &["run", "--rm", "-v", "-bad:/data", image, "true"]);
    assert_eq!(bad.status.code(), Some(125), "{}", text(&bad).1);
    berthd.ok(&env, &["volume", "create", "spare"]);
    assert_eq!(berthd.ok(&env, &["volume", "prune"]).trim(), "", "prune without --all keeps named volumes");
    let mut pruned: Vec<String> = berthd.ok(&env, &["volume", "prune", "--all"]).lines().map(String::from).collect();
    pruned.sort();
    assert_eq!(pruned, ["mydata", "spare"]);
    assert!(volumes(&berthd).is_empty());
    drop(berthd);
    env.leak_check();
}

#[test]
fn an_oom_kill_shows_in_inspect_and_as_an_event() {
    let (env, _registry, berthd, image) = setup("oom-shown");
    let events = EventsFollower::start(&berthd);
    // 40 MB into a shell variable under a 16 MiB limit: the cgroup's OOM killer ends it.
    let out = berthd
        .berth(&env, &["run", "--name", "hog", "--memory", "16m", &image, "sh", "-c", "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ${#x}"]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out).1);
    let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "hog"])).unwrap()[0].clone();
    assert_eq!((&inspected["oom_killed"], &inspected["exit_code"]), (&serde_json::json!(true), &serde_json::json!(137)), "{inspected}");
    berthd.ok(&env, &["rm", "hog"]);
    let printed = events.printed();
    assert!(printed.lines().any(|l| l.contains(" oom ") && l.contains("name=hog")), "{printed}");
    drop(berthd);
    env.leak_check();
}

#[test]
fn healthchecks_from_the_image_or_flags_show_in_ps_inspect_and_events() {
    let env = TestEnv::new("health");
    let layout = berth_testsupport::busybox_layout(&env, "v1");
    // HEALTHCHECK CMD-SHELL test -e /tmp/ok, every 200 ms, unhealthy after 2 failures.
    berth_testsupport::patch_layout_config(&layout, |config| {
        config["config"]["Healthcheck"] =
            serde_json::json!({"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 200_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 2});
    });
    let archive = berth_testsupport::layout_archive(&layout);
    let berthd = Berthd::start(&env, &[]);
    berthd.ok(&env, &["load", archive.to_str().unwrap(), "test/health:v1"]);
    let events = EventsFollower::start(&berthd);
    let health = |berthd: &Berthd, name: &str| -> String {
        let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", name])).unwrap()[0].clone();
        inspected["health"].as_str().unwrap_or("").to_string()
    };
    let wait_for = |berthd: &Berthd, name: &str, wanted: &str| {
        let started = std::time::Instant::now();
        while health(berthd, name) != wanted {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "{name} never became {wanted} (is {})", health(berthd, name));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    berthd.ok(&env, &["run", "-d", "--name", "checked", "test/health:v1", "sleep", "1000"]);
    wait_for(&berthd, "checked", "unhealthy");
    berthd.ok(&env, &["exec", "checked", "touch", "/tmp/ok"]);
    wait_for(&berthd, "checked", "healthy");
    assert!(berthd.ok(&env, &["ps"]).lines().any(|l| l.contains("Up ") && l.contains("(healthy)") && l.ends_with("checked")));
    // Flags over the image's check, and --no-healthcheck.
    berthd.ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "flagged",
            "--health-cmd",
            "exit 3",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "test/health:v1",
            "sleep",
            "1000",
        ],
    );
    wait_for(&berthd, "flagged", "unhealthy");
    berthd.ok(&env, &["run", "-d", "--name", "unchecked", "--no-healthcheck", "test/health:v1", "sleep", "1000"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(health(&berthd, "unchecked"), "", "no healthcheck, no health");
    let printed = events.printed();
    for wanted in ["health_status: unhealthy", "health_status: healthy"] {
        assert!(printed.lines().any(|l| l.contains(wanted) && l.contains("name=checked")), "{wanted} in:\n{printed}");
    }
    // A new berthd checks the running containers it finds again.
    berthd.stop();
    let berthd = Berthd::start(&env, &[]);
    berthd.ok(&env, &["exec", "checked", "rm", "/tmp/ok"]);
    wait_for(&berthd, "checked", "unhealthy");
    berthd.ok(&env, &["rm", "-f", "checked", "flagged", "unchecked"]);
    drop(berthd);
    env.leak_check();
}

/// docker's `--env-file` (read by the client, before `-e`), `--add-host` and `--dns*` (the
/// container's own /etc/hosts and resolv.conf); malformed ones refused before anything is made.
#[test]
fn env_files_extra_hosts_and_dns_flags_reach_the_container() {
    let (env, _registry, berthd, image) = setup("ctr-env-dns");
    let env_file = env.dir.join("app.env");
    // A byte-order mark, a comment, a blank line, a bare name with a trailing space.
    std::fs::write(&env_file, "\u{feff}# settings\nA=from-file\n\nB=overridden\nBERTH_TEST_FROM_SHELL \n").unwrap();
    let bad_file = env.dir.join("bad.env");
    std::fs::write(&bad_file, "FOO BAR=1\n").unwrap();
    let mut run = std::process::Command::new(berth_testsupport::workspace_bin("berth"));
    run.arg("--socket").arg(&berthd.socket).env("BERTH_TEST_FROM_SHELL", "shell");
    run.args(["run", "--rm", "--env-file", env_file.to_str().unwrap(), "-e", "B=from-flag"]);
    run.args(["--add-host", "db:192.0.2.10", "--add-host", "v6=2001:db8::1", "--add-host", "host.docker.internal:host-gateway"]);
    run.args(["--dns", "192.0.2.53", "--dns-search", "example.test", "--dns-option", "ndots:3"]);
    run.args([&image, "sh", "-c", "echo $A $B $BERTH_TEST_FROM_SHELL; grep -v localhost /etc/hosts; grep -v '^#' /etc/resolv.conf"]);
    let out = env.capture(&mut run);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "from-file from-flag shell");
    assert!(lines.contains(&"192.0.2.10\tdb") && lines.contains(&"2001:db8::1\tv6"), "{stdout}");
    // host-gateway: the default network's gateway (berthd's default subnet, 10.210.0.0/24).
    assert!(lines.contains(&"10.210.0.1\thost.docker.internal"), "{stdout}");
    let resolv: Vec<&str> = lines.iter().copied().filter(|l| ["nameserver", "search", "options"].iter().any(|k| l.starts_with(k))).collect();
    assert_eq!(resolv, ["nameserver 192.0.2.53", "search example.test", "options ndots:3"], "{stdout}");
    let bad_env = berthd.berth(&env, &["run", "--rm", "--env-file", bad_file.to_str().unwrap(), &image, "true"]);
    assert!(!bad_env.status.success() && text(&bad_env).1.contains("not a variable name"), "{}", text(&bad_env).1);
    for bad in [
        ["--add-host", "db"],
        ["--add-host", "bad name:1.2.3.4"],
        ["--add-host", "db:[[1.2.3.4"],
        ["--dns", "not-an-ip"],
        ["--dns-search", "two words"],
    ] {
        let refused = berthd.berth(&env, &["run", "--rm", bad[0], bad[1], &image, "true"]);
        let said = text(&refused).1;
        assert!(!refused.status.success() && (said.contains(bad[0]) || said.contains("one word")), "{bad:?}: {said}");
    }
    assert!(containers(&berthd, &env).is_empty(), "nothing made");
    drop(berthd);
    env.leak_check();
}

/// docker's `--ulimit` (the process's rlimits) and `--device` (the node inside, allowed by the
/// device cgroup); impossible ones refused before anything is made.
#[test]
fn ulimits_and_devices_reach_the_container() {
    let (env, _registry, berthd, image) = setup("ctr-ulimit-device");
    let script = "ulimit -n; ulimit -Hn; echo x > /dev/mynull && echo wrote; stat -c '%t:%T' /dev/mynull";
    let out = berthd.berth(&env, &["run", "--rm", "--ulimit", "nofile=512:1024", "--device", "/dev/null:/dev/mynull:rw", &image, "sh", "-c", script]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["512", "1024", "wrote", "1:3"], "{stdout}");
    // The permissions reach the device cgroup (/dev/kmsg: not among the devices always allowed).
    let open_for_writing = |grant: &str| {
        let device = format!("/dev/kmsg:/dev/k:{grant}");
        let out = berthd.berth(&env, &["run", "--rm", "--device", &device, &image, "sh", "-c", "exec 3>/dev/k && echo opened"]);
        text(&out).0.trim().to_string()
    };
    assert_eq!((open_for_writing("rw").as_str(), open_for_writing("r").as_str()), ("opened", ""), "a read-only grant refuses a write");
    for bad in
        [["--ulimit", "nofile=2048:1024"], ["--ulimit", "bogus=1"], ["--ulimit", "nofile"], ["--device", "/nonexistent"], ["--device", "relative"]]
    {
        let refused = berthd.berth(&env, &["run", "--rm", bad[0], bad[1], &image, "true"]);
        let said = text(&refused).1;
        assert!(!refused.status.success() && (said.contains("ulimit") || said.contains("device")), "{bad:?}: {said}");
    }
    assert!(containers(&berthd, &env).is_empty(), "nothing made");
    drop(berthd);
    env.leak_check();
}

#[test]
fn logs_since_and_until_pick_lines_by_time() {
    let (env, _registry, berthd, image) = setup("logs-since");
    berthd.ok(&env, &["run", "--name", "timed", &image, "sh", "-c", "echo one; sleep 1.5; echo two"]);
    let stamped = berthd.ok(&env, &["logs", "-t", "timed"]);
    // The moment between the two lines: half a second after the first.
    let first = stamped.lines().next().and_then(|l| l.split_whitespace().next()).unwrap_or_default().to_string();
    let first = humantime::parse_rfc3339(&first).unwrap_or_else(|e| panic!("{first:?}: {e} in {stamped:?}"));
    let between = first + std::time::Duration::from_millis(500);
    let unix = between.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64().to_string();
    let rfc3339 = humantime::format_rfc3339_nanos(between).to_string();
    assert_eq!(berthd.ok(&env, &["logs", "--since", &unix, "timed"]), "two\n");
    assert_eq!(berthd.ok(&env, &["logs", "--since", &rfc3339, "timed"]), "two\n");
    assert_eq!(berthd.ok(&env, &["logs", "--until", &rfc3339, "timed"]), "one\n");
    assert_eq!(berthd.ok(&env, &["logs", "--since", "1h", "timed"]), "one\ntwo\n");
    assert_eq!(berthd.ok(&env, &["logs", "--since", "2000-01-01", "--until", "2000-01-02", "timed"]), "");
    assert_eq!(berthd.berth(&env, &["logs", "--since", "yesterday-ish", "timed"]).status.code(), Some(125));
    // Following stops at until.
    berthd.ok(&env, &["run", "-d", "--name", "talker", &image, "sh", "-c", "while true; do echo tick; sleep 0.2; done"]);
    let until = humantime::format_rfc3339_nanos(std::time::SystemTime::now() + std::time::Duration::from_secs(1)).to_string();
    let started = std::time::Instant::now();
    let followed = berthd.ok(&env, &["logs", "-f", "--until", &until, "talker"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10) && followed.lines().all(|l| l == "tick"), "{followed:?}");
    berthd.ok(&env, &["rm", "-f", "timed", "talker"]);
    drop(berthd);
    env.leak_check();
}

/// Completions and man pages come from the same definitions as the flags: bash, loaded in a shell,
/// completes `berth ru<TAB>` and `berth run --det<TAB>`; zsh's and fish's scripts are made; the man
/// pages name every verb and flag; a typo gets a suggestion.
#[test]
fn completions_and_man_pages_come_from_the_flags() {
    let env = TestEnv::new("completions");
    let berth = workspace_bin("berth");
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source <({berth} completion bash) && COMP_WORDS=({words}) && COMP_CWORD={cword} && COMP_LINE={line:?} && COMP_POINT=${{#COMP_LINE}} && _berth berth {cur:?} {prev:?} && echo \"${{COMPREPLY[@]}}\"",
            berth = berth.display(),
            words = words.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>().join(" "),
            cword = words.len() - 1,
            // As bash calls a completion function: the command, the word, the one before.
            cur = words[words.len() - 1],
            prev = words[words.len() - 2],
        );
        let out = env.capture(Command::new("bash").arg("-c").arg(script).stdin(Stdio::null()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>()
    };
    assert!(complete("berth ru").contains(&"run".to_string()), "{:?}", complete("berth ru"));
    assert_eq!(complete("berth run --det"), ["--detach", "--detach-keys"]);
    for shell in ["zsh", "fish"] {
        let out = env.capture(Command::new(&berth).args(["completion", shell]).stdin(Stdio::null()));
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    let man = env.dir.join("man");
    let out = env.capture(Command::new(&berth).arg("man").arg(&man).stdin(Stdio::null()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_page = std::fs::read_to_string(man.join("berth-run.1")).unwrap();
    assert!(run_page.contains("restart") && run_page.contains("publish"), "{run_page}");
    for verb in ["berth.1", "berth-ps.1", "berth-network-create.1", "berth-volume-rm.1"] {
        assert!(man.join(verb).exists(), "{verb}");
    }
    let typo = env.capture(Command::new(&berth).args(["rum"]).stdin(Stdio::null()));
    assert_eq!(typo.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("'run'"), "{}", String::from_utf8_lossy(&typo.stderr));
}

#[test]
fn detach_keys_leave_the_container_running() {
    let (env, _registry, berthd, image) = setup("detach-keys");
    // Typed once the container runs and the client's terminal is raw (it goes raw as it starts
    // the container): a moment after the container shows as running.
    let running = |name: &'static str| {
        let (berthd, env) = (&berthd, &env);
        move || {
            let up = containers(berthd, env).iter().any(|c| c["name"] == name && c["state"] == "running");
            if up {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            up
        }
    };
    // docker's keys on run -it: the client ends with 0, the container runs on (--rm or not).
    let out = in_pty_when(&berthd, "", &format!("run -it --rm --name d1 {image} sh"), running("d1"), b"\x10\x11");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(containers(&berthd, &env).iter().find(|c| c["name"] == "d1").map(|c| c["state"].clone()), Some("running".into()));
    // Attach with keys of one's own; a typed ^P alone does not detach.
    let attached = || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        true
    };
    let out = in_pty_when(&berthd, "", "attach --detach-keys ctrl-x d1", attached, b"\x10\x18");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(containers(&berthd, &env).iter().find(|c| c["name"] == "d1").map(|c| c["state"].clone()), Some("running".into()));
    // Without keys, ^P ^Q are the container's: its shell reads them and exits at "exit".
    let out =
        in_pty_when(&berthd, "", &format!("run -it --rm --name d3 --detach-keys= {image} sh -c 'read x; exit 3'"), running("d3"), b"\x10\x11\r");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    berthd.ok(&env, &["rm", "-f", "d1"]);
    drop(berthd);
    env.leak_check();
}

/// `--init`: tini's static build (the host's, bound read-only) is PID 1, reaps the orphans a
/// command leaves (without it they stay zombies under a PID 1 that never waits), passes signals on
/// and exits with the command's status.
#[test]
fn run_init_reaps_zombies_and_keeps_the_exit_status() {
    let (env, _registry, berthd, image) = setup("run-init");
    let orphan = "(sleep 0.1 &); exec sleep 100";
    berthd.ok(&env, &["run", "-d", "--init", "--name", "with", &image, "sh", "-c", orphan]);
    berthd.ok(&env, &["run", "-d", "--name", "without", &image, "sh", "-c", orphan]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let states = |name: &str| berthd.ok(&env, &["exec", name, "ps", "-o", "stat,comm"]);
    let (with, without) = (states("with"), states("without"));
    let pid1 = berthd.ok(&env, &["exec", "with", "cat", "/proc/1/comm"]);
    let stopped = std::time::Instant::now();
    berthd.ok(&env, &["stop", "-t", "10", "with"]);
    let stop_took = stopped.elapsed();
    let status = berthd.berth(&env, &["run", "--rm", "--init", &image, "sh", "-c", "exit 7"]).status.code();
    berthd.ok(&env, &["rm", "-f", "with", "without"]);
    drop(berthd);

    assert_eq!(pid1.trim(), "docker-init");
    assert!(!with.lines().any(|l| l.trim_start().starts_with('Z')), "the init reaps the orphan:\n{with}");
    assert!(without.lines().any(|l| l.trim_start().starts_with('Z')), "without it, a zombie (the test's premise):\n{without}");
    assert!(
        stop_took < std::time::Duration::from_secs(9),
        "SIGTERM reached the command through the init before stop -t 10 would SIGKILL ({stop_took:?})"
    );
    assert_eq!(status, Some(7));
    env.leak_check();
}

#[test]
fn events_are_filtered_and_printed_as_json() {
    let (env, _registry, berthd, image) = setup("events-filter");
    let follower =
        EventsFollower::with(&berthd, &["--filter", "container=e1", "--filter", "event=die", "--filter", "event=destroy", "--format", "json"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(berthd.berth(&env, &["run", "--rm", "--name", "e1", &image, "sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(berthd.berth(&env, &["run", "--rm", "--name", "e2", &image, "true"]).status.code(), Some(0));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let printed = follower.printed();
    let events: Vec<serde_json::Value> = printed.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let actions: Vec<(&str, &str)> = events.iter().map(|e| (e["name"].as_str().unwrap_or(""), e["action"].as_str().unwrap_or(""))).collect();
    assert_eq!(actions, [("e1", "die"), ("e1", "destroy")], "{printed}");
    assert_eq!(events[0]["exit_code"], 3);
    assert_eq!(berthd.berth(&env, &["events", "--filter", "image=x"]).status.code(), Some(125));
    drop(berthd);
    env.leak_check();
}

/// `--tmpfs` and `--mount` (tmpfs, bind, volume) and `-v /dst` (an anonymous volume), as docker's.
#[test]
fn tmpfs_mount_and_anonymous_volume_flags() {
    let (env, _registry, berthd, image) = setup("mount-flags");
    let mounts_of = |args: &[&str], path: &str| {
        let script = format!("grep ' {path} ' /proc/mounts");
        let full: Vec<&str> = ["run", "--rm"].into_iter().chain(args.iter().copied()).chain([image.as_str(), "sh", "-c", script.as_str()]).collect();
        berthd.ok(&env, &full)
    };
    let tmpfs = mounts_of(&["--tmpfs", "/scratch:size=1m,mode=1777"], "/scratch");
    assert!(
        tmpfs.starts_with("tmpfs /scratch tmpfs") && tmpfs.contains("nosuid") && tmpfs.contains("noexec") && tmpfs.contains("size=1024k"),
        "{tmpfs}"
    );
    let mounted = mounts_of(&["--mount", "type=tmpfs,target=/t,tmpfs-size=2m,tmpfs-mode=700"], "/t");
    assert!(mounted.contains("size=2048k") && mounted.contains("mode=700"), "{mounted}");
    let host_dir = env.dir.join("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("file"), "from the host\n").unwrap();
    let bind = format!("type=bind,source={},target=/h,readonly", host_dir.display());
    let out = berthd.berth(&env, &["run", "--rm", "--mount", &bind, &image, "sh", "-c", "cat /h/file; touch /h/new"]);
    assert!(!out.status.success() && text(&out).0 == "from the host\n" && text(&out).1.contains("Read-only"), "{out:?}");
    berthd.ok(&env, &["run", "--rm", "--mount", "type=volume,source=named1,target=/v", &image, "sh", "-c", "echo kept > /v/f"]);
    assert_eq!(berthd.ok(&env, &["run", "--rm", "-v", "named1:/v", &image, "cat", "/v/f"]), "kept\n");
    // An anonymous volume lives as long as its container.
    berthd.ok(&env, &["run", "-d", "--name", "anon", "-v", "/anon", &image, "sh", "-c", "echo x > /anon/f; sleep 100"]);
    let listed = berthd.ok(&env, &["volume", "ls", "-q"]);
    berthd.ok(&env, &["rm", "-f", "anon"]);
    let after = berthd.ok(&env, &["volume", "ls", "-q"]);
    assert_eq!(listed.lines().count(), 2, "named1 and the anonymous one:\n{listed}");
    assert_eq!(after.trim(), "named1");
    for bad in
        [&["--tmpfs", "/x:bogus=1"][..], &["--tmpfs", "relative"], &["--mount", "type=bind,source=rel,target=/x"], &["--mount", "type=nfs,target=/x"]]
    {
        let args: Vec<&str> = ["run", "--rm"].into_iter().chain(bad.iter().copied()).chain([image.as_str(), "true"]).collect();
        assert_eq!(berthd.berth(&env, &args).status.code(), Some(125), "{bad:?}");
    }
    berthd.ok(&env, &["volume", "rm", "named1"]);
    drop(berthd);
    env.leak_check();
}
