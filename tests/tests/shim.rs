//! berth-shim on its own, driven through its protocol as berthd drives it: one shim supervising a
//! pod's containers (an exit leaves the others and the shim alone; the last delete ends the shim),
//! exits pushed to a subscriber, ExecSync's output cap and timeout, log reopen after rotation, and
//! a first create that fails. Real containers (berth-oci, busybox bundles); the leak check at the end.

use berth_shim::protocol::{Event, Status, MAX_EXEC_SYNC_OUTPUT};
use berth_shim::{Client, CreateRequest};
use berth_testsupport::{berth_oci_bin, workspace_bin, Bundle, TestEnv};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

struct Shim {
    dir: PathBuf,
    pid: i32,
    client: Client,
}

fn launch(env: &TestEnv) -> Shim {
    let dir = env.dir.join("shim");
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(workspace_bin("berth-shim"))
        .arg("--dir")
        .arg(&dir)
        .arg("--runtime")
        .arg(berth_oci_bin())
        .arg("--runtime-root")
        .arg(&env.root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid = stdout.trim().strip_prefix("ok ").and_then(|p| p.parse().ok());
    let pid = pid.unwrap_or_else(|| panic!("berth-shim: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    Shim { client: Client::new(&dir), dir, pid }
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: the shim's parent (us, through `output`) has long reaped it or init has.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The shim's events, read on a thread as they come.
fn subscribe(client: &Client) -> Receiver<Event> {
    let mut events = client.subscribe().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(Some(event)) = events.next_event() {
            if send.send(event).is_err() {
                return;
            }
        }
    });
    receive
}

fn next(events: &Receiver<Event>) -> Event {
    events.recv_timeout(Duration::from_secs(10)).expect("an event within 10 s")
}

fn container(env: &TestEnv, name: &str, args: &[&str]) -> (String, CreateRequest) {
    let mut bundle = Bundle::new(&env.dir.join(name));
    bundle.set_args(args);
    let request =
        CreateRequest { bundle: bundle.dir.clone(), log: env.dir.join(format!("{name}.log")), log_max_size: 1 << 20, tty: false, stdin: false };
    (env.id(name), request)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn one_shim_supervises_a_pod_and_ends_with_its_last_container() {
    let env = TestEnv::new("shim-pod");
    let shim = launch(&env);
    let events = subscribe(&shim.client);
    assert_eq!(next(&events), Event::Synced, "an empty shim has nothing to tell first");

    let ticker = ["sh", "-c", "while true; do echo tick; sleep 0.1; done"];
    let (a, a_req) = container(&env, "a", &ticker);
    let (b, b_req) = container(&env, "b", &["sh", "-c", "echo hello from b; exec sleep 1000"]);
    let (c, c_req) = container(&env, "c", &["sleep", "1000"]);
    let mut pids = Vec::new();
    for (id, request) in [(&a, &a_req), (&b, &b_req), (&c, &c_req)] {
        pids.push(shim.client.create(id, request).unwrap());
        assert_eq!(shim.client.state(id).unwrap().status, Status::Created);
        shim.client.start(id).unwrap();
    }
    wait_until("b's output in its log", || log_text(&b_req.log).contains("hello from b"));

    // kill -9 of b's process: its exit is pushed; a, c and the shim live on.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[1]), nix::sys::signal::Signal::SIGKILL).unwrap();
    match next(&events) {
        Event::Exit { id, exit } => assert_eq!((id, exit.code, exit.signal, exit.oom_killed), (b.clone(), 137, Some(9), false)),
        other => panic!("expected b's exit, got {other:?}"),
    }
    assert!(shim.dir.join(&b).join("exit.json").exists(), "the exit is on disk until the delete");
    for id in [&a, &c] {
        assert_eq!(shim.client.state(id).unwrap().status, Status::Running);
    }
    shim.client.delete(&b).unwrap();
    assert!(!shim.dir.join(&b).exists());
    assert!(alive(shim.pid), "deleting one container of three leaves the shim");
    let refused = shim.client.delete(&a).unwrap_err().to_string();
    assert!(refused.contains("running"), "{refused}");

    // A second subscriber is told what the shim holds first.
    let late = subscribe(&shim.client);
    let mut told: Vec<(String, Status)> = Vec::new();
    loop {
        match next(&late) {
            Event::Container(state) => told.push((state.id, state.status)),
            Event::Synced => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    told.sort_by(|x, y| x.0.cmp(&y.0));
    let mut expected = vec![(a.clone(), Status::Running), (c.clone(), Status::Running)];
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(told, expected);

    // Log rotation by someone else: the shim writes to the path again once told.
    let rotated = env.dir.join("a.log.rotated");
    std::fs::rename(&a_req.log, &rotated).unwrap();
    shim.client.reopen_log(&a).unwrap();
    wait_until("a's log reopened", || log_text(&a_req.log).contains(" stdout F tick"));

    for id in [&a, &c] {
        shim.client.kill(id, libc::SIGKILL, true).unwrap();
    }
    let mut exited = Vec::new();
    while exited.len() < 2 {
        if let Event::Exit { id, .. } = next(&events) {
            exited.push(id);
        }
    }
    shim.client.delete(&a).unwrap();
    assert!(alive(shim.pid));
    shim.client.delete(&c).unwrap();
    assert!(!shim.dir.join("shim.sock").exists() && !shim.dir.join("shim.pid").exists(), "gone before the last delete's reply");
    wait_until("the shim's exit after its last container", || !alive(shim.pid));
    assert!(events.recv_timeout(Duration::from_secs(5)).is_err(), "the subscription ends with the shim");
    assert_eq!(env.status(&a), "absent");
    env.leak_check();
}

#[test]
fn exec_sync_caps_output_and_kills_at_its_timeout() {
    let env = TestEnv::new("shim-execsync");
    let shim = launch(&env);
    let (id, request) = container(&env, "x", &["sleep", "1000"]);
    shim.client.create(&id, &request).unwrap();
    shim.client.start(&id).unwrap();
    let process = |args: &[&str]| serde_json::json!({"args": args, "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});

    let out = shim.client.exec_sync(&id, "small", process(&["sh", "-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(10)).unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit.code, out.exit.truncated, out.exit.timed_out),
        (&b"out\n"[..], &b"err\n"[..], 3, false, false)
    );

    let big = format!("head -c {} /dev/zero; echo tail >&2", MAX_EXEC_SYNC_OUTPUT + 1000);
    let out = shim.client.exec_sync(&id, "big", process(&["sh", "-c", &big]), Duration::from_secs(30)).unwrap();
    assert_eq!(out.stdout.len(), MAX_EXEC_SYNC_OUTPUT, "stdout is cut at the cap");
    assert_eq!((out.stderr.as_slice(), out.exit.code, out.exit.truncated), (&b"tail\n"[..], 0, true), "and the cut is marked");

    let started = Instant::now();
    // Time enough to print first even under the cgroup v2 VM's emulation (300 ms was not).
    let out = shim.client.exec_sync(&id, "slow", process(&["sh", "-c", "echo before; exec sleep 100"]), Duration::from_secs(3)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "the timeout ended it ({:?})", started.elapsed());
    assert_eq!((out.stdout.as_slice(), out.exit.timed_out, out.exit.signal), (&b"before\n"[..], true, Some(libc::SIGKILL)));
    let ps = shim.client.exec_sync(&id, "ps", process(&["ps", "-o", "args"]), Duration::from_secs(10)).unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.trim() == "sleep 100"),
        "the timed-out process is gone: {}",
        String::from_utf8_lossy(&ps.stdout)
    );

    shim.client.kill(&id, libc::SIGKILL, true).unwrap();
    shim.client.wait(&id, Some(Duration::from_secs(10))).unwrap().expect("exited");
    shim.client.delete(&id).unwrap();
    wait_until("the shim's exit", || !alive(shim.pid));
    env.leak_check();
}

#[test]
fn a_shim_whose_first_create_fails_goes_away() {
    let env = TestEnv::new("shim-fail");
    let shim = launch(&env);
    let (id, mut request) = container(&env, "y", &["true"]);
    request.bundle = env.dir.join("no-such-bundle");
    let refused = shim.client.create(&id, &request).unwrap_err().to_string();
    assert!(refused.contains("no-such-bundle"), "the runtime's reason: {refused}");
    wait_until("the shim's exit", || !alive(shim.pid));
    assert!(!shim.dir.join(&id).exists());
    env.leak_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_shim_passes_the_shim_conformance_suite() {
    let env = TestEnv::new("shim-conformance");
    let mut bundle = Bundle::new(&env.dir.join("conformance"));
    bundle.set_args(&["sleep", "1000"]);
    let shims = berth_containers::shims::ProcessShims { binary: workspace_bin("berth-shim") };
    let dir = env.dir.join("conformance-shim");
    berth_containers::shims::conformance(&shims, &dir, &bundle.dir, &env.dir.join("conformance.log"), &berth_oci_bin(), &env.root).await;
    env.leak_check();
}

#[test]
fn an_oom_kill_is_pushed_while_the_init_lives_on() {
    let env = TestEnv::new("shim-oom");
    let shim = launch(&env);
    let events = subscribe(&shim.client);
    assert_eq!(next(&events), Event::Synced);
    let (id, request) = container(&env, "oom", &["sh", "-c", "sh /eat.sh; echo survived; exec sleep 1000"]);
    // A child that holds 200 MB in a shell variable, in a cgroup of 32 MiB (no swap to go to),
    // and offers itself to the OOM killer first (raising one's score needs no privilege).
    std::fs::write(request.bundle.join("rootfs/eat.sh"), "echo 1000 > /proc/self/oom_score_adj\nx=$(yes | head -c 200000000)\n").unwrap();
    let config = request.bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 32 << 20, "swap": 32 << 20});
    std::fs::write(&config, spec.to_string()).unwrap();
    shim.client.create(&id, &request).unwrap();
    shim.client.start(&id).unwrap();
    // Under the cgroup v2 VM's emulation, filling 32 MiB takes about half a minute.
    let pushed = events.recv_timeout(Duration::from_secs(120));
    assert_eq!(pushed, Ok(Event::Oom { id: id.clone() }), "the kill is pushed as it happens: {:?}", log_text(&request.log));
    wait_until("the init carries on", || log_text(&request.log).contains("survived"));
    assert_eq!(shim.client.state(&id).unwrap().status, Status::Running);
    shim.client.kill(&id, libc::SIGKILL, true).unwrap();
    match next(&events) {
        Event::Exit { exit, .. } => assert!(exit.oom_killed, "the exit says the OOM killer was at work: {exit:?}"),
        other => panic!("expected the exit, got {other:?}"),
    }
    shim.client.delete(&id).unwrap();
    wait_until("the shim's exit", || !alive(shim.pid));
    env.leak_check();
}
