//! Operating berthd as a service: readiness and stopping told to systemd through `$NOTIFY_SOCKET`
//! (a datagram socket of the test's standing in for systemd's), serving on a socket systemd passes
//! (`LISTEN_FDS`, the test's listener at descriptor 3), JSON logs, a socket group for users
//! without root, the start-up check of the shim and runtime, and `scripts/install.sh` into a
//! staging directory (binaries, units, the example config, completions, man pages).

use berth_testsupport::{workspace_bin, Berthd, TestEnv};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A config of the test's own, with `extra` appended.
fn config(env: &TestEnv, extra: &str) -> std::path::PathBuf {
    let path = env.dir.join("berthd.toml");
    let text = format!(
        "root = {:?}\nstate = {:?}\nsocket = {:?}\ncni_conf_dir = {:?}\ndefault_network = \"none\"\n{extra}",
        env.dir.join("root"),
        env.dir.join("state"),
        env.dir.join("run/berth.sock"),
        env.dir.join("cni-none")
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn berth(env: &TestEnv, socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    env.capture(Command::new(workspace_bin("berth")).arg("--socket").arg(socket).args(args).stdin(Stdio::null()))
}

fn terminate(child: &mut std::process::Child) {
    // SAFETY: kill takes a pid and a signal; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "berthd did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn berthd_tells_systemd_it_is_ready_and_serves_on_the_socket_systemd_passes() {
    let env = TestEnv::new("sd-notify");
    let config = config(&env, "");
    let notify_path = env.dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // systemd's part: it listens, then starts berthd with the listener as descriptor 3.
    let activated = env.dir.join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&activated).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let log = std::fs::File::create(env.dir.join("berthd.log")).unwrap();
    let mut command = Command::new("sh");
    // LISTEN_PID names berthd itself: the shell's pid, which exec hands on.
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\" --log-format json")
        .arg(workspace_bin("berthd"))
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: between fork and exec only dup2, which is async-signal-safe; fd is the test's
    // listener, still open in the parent.
    unsafe {
        command.pre_exec(move || match libc::dup2(fd, 3) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let mut child = command.spawn().unwrap();
    // Ours no longer: the child has them (the Command would hold the log open).
    drop((listener, command));
    let mut buffer = [0u8; 512];
    let ready = notify.recv(&mut buffer).map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned()).unwrap_or_default();
    let listed = berth(&env, &activated, &["ps", "-a"]);
    let own_socket = env.dir.join("run/berth.sock").exists();
    terminate(&mut child);
    let stopping = notify.recv(&mut buffer).map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned()).unwrap_or_default();
    let log = std::fs::read_to_string(env.dir.join("berthd.log")).unwrap();

    assert!(ready.lines().any(|l| l == "READY=1") && ready.contains(&format!("MAINPID={}", child.id())), "{ready:?}");
    assert!(listed.status.success(), "served on the passed socket: {}", String::from_utf8_lossy(&listed.stderr));
    assert!(!own_socket, "with a passed socket berthd makes none of its own");
    assert!(activated.exists(), "the passed socket is systemd's: left in place");
    assert_eq!(stopping, "STOPPING=1");
    for line in log.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("--log-format json: {line:?}: {e}"));
        assert!(parsed["level"].is_string() && parsed["fields"]["message"].is_string(), "{line}");
    }
    assert!(log.contains("serving on the socket systemd passed"), "{log}");
    env.leak_check();
}

#[test]
fn a_socket_group_lets_its_members_in_and_nobody_else() {
    let env = TestEnv::new("socket-group");
    // nogroup (65534) stands for the operators' group; nobody (65534) is in it only when asked.
    let berthd = Berthd::start_with(&env, &[], "socket_group = \"65534\"\n", None);
    let (socket, dir) = (berthd.socket.clone(), berthd.socket.parent().unwrap().to_path_buf());
    let (socket_meta, dir_meta) = (std::fs::metadata(&socket).unwrap(), std::fs::metadata(&dir).unwrap());
    let as_nobody = |groups: &str| {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", groups, "--"]).arg(workspace_bin("berth")).arg("--socket").arg(&socket).args(["ps", "-a"]);
        env.capture(command.stdin(Stdio::null()))
    };
    let member = as_nobody("--init-groups");
    drop(berthd);

    assert_eq!((socket_meta.mode() & 0o777, socket_meta.gid()), (0o660, 65534));
    assert_eq!((dir_meta.mode() & 0o777, dir_meta.gid()), (0o710, 65534));
    assert!(member.status.success(), "a member of the group: {}", String::from_utf8_lossy(&member.stderr));

    // Without the setting, the directory is root's alone.
    let env = TestEnv::new("socket-private");
    let berthd = Berthd::start(&env, &[]);
    let private = std::fs::metadata(berthd.socket.parent().unwrap()).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .arg("ps");
    let outsider = env.capture(command.stdin(Stdio::null()));
    drop(berthd);
    assert_eq!(private.permissions().mode() & 0o777, 0o700);
    assert!(!outsider.status.success(), "nobody outside the group is let in");
}

#[test]
fn a_missing_shim_or_default_runtime_stops_berthd_saying_where_it_looked() {
    let env = TestEnv::new("binaries");
    for (extra, expected) in [
        ("shim = \"/nonexistent/berth-shim\"\n", "/nonexistent/berth-shim does not exist"),
        ("default_runtime = \"ghost\"\n[runtimes]\nghost = \"no-such-runtime-binary\"\n", "not next to berthd"),
    ] {
        let config = config(&env, extra);
        let out = env.capture(Command::new(workspace_bin("berthd")).arg("--config").arg(&config).stdin(Stdio::null()));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains(expected), "{extra}: {said}");
    }
}

#[test]
fn install_puts_binaries_units_config_completions_and_man_pages_under_a_prefix() {
    let env = TestEnv::new("install");
    let staging = env.dir.join("staging");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    let bin_dir = workspace_bin("berth").parent().unwrap().to_path_buf();
    let out = env.capture(
        Command::new("sh").arg(&script).env("DESTDIR", &staging).env("PREFIX", "/usr/local").env("BERTH_BIN_DIR", &bin_dir).stdin(Stdio::null()),
    );
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let root = staging.join("usr/local");
    for binary in ["berth", "berthd", "berth-shim", "berth-oci"] {
        let meta = std::fs::metadata(root.join("bin").join(binary)).unwrap_or_else(|e| panic!("{binary}: {e}"));
        assert!(meta.permissions().mode() & 0o111 != 0, "{binary} is executable");
    }
    let service = std::fs::read_to_string(staging.join("etc/systemd/system/berthd.service")).unwrap();
    assert!(service.contains("Type=notify") && service.contains("ExecStart=/usr/local/bin/berthd"), "{service}");
    let socket = std::fs::read_to_string(staging.join("etc/systemd/system/berthd.socket")).unwrap();
    assert!(socket.contains("ListenStream=/run/berth/berth.sock"), "{socket}");
    // The example config is one berthd takes as it is, and documents every key.
    let example = staging.join("etc/berth/berthd.toml");
    let checked = env.capture(Command::new(root.join("bin/berthd")).arg("--config").arg(&example).arg("--check-config").stdin(Stdio::null()));
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(staging.join("usr/local/share/bash-completion/completions/berth").exists());
    assert!(staging.join("usr/local/share/zsh/site-functions/_berth").exists());
    assert!(staging.join("usr/local/share/fish/vendor_completions.d/berth.fish").exists());
    assert!(staging.join("usr/local/share/man/man1/berth-run.1").exists());
    // A second install keeps the operator's config.
    std::fs::write(&example, "# mine\n").unwrap();
    let again = env.capture(
        Command::new("sh").arg(&script).env("DESTDIR", &staging).env("PREFIX", "/usr/local").env("BERTH_BIN_DIR", &bin_dir).stdin(Stdio::null()),
    );
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(&example).unwrap(), "# mine\n");
}

/// SIGHUP: berthd reads its config again; a new runtime and a new mirror work at once, a key it
/// reads at start only is named as needing a restart, and a broken file changes nothing.
#[test]
fn sighup_reloads_runtimes_and_registries_and_names_what_needs_a_restart() {
    let env = TestEnv::new("sighup");
    let registry = berth_testsupport::busybox_registry(&env);
    let berthd = Berthd::start_with(&env, &[&registry.address, "127.0.0.1:9"], "", None);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    // A registry nobody listens on, to be mirrored by the live one after the reload.
    let mirrored = "127.0.0.1:9/test/busybox:v1";
    let before = (berthd.berth(&env, &["run", "--rm", "--runtime", "runc2", &image, "true"]), berthd.berth(&env, &["pull", mirrored]));
    let config_path = env.dir.join("berthd.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let hangup = |berthd: &Berthd| {
        // SAFETY: kill takes a pid and a signal; the pid is our own child's.
        unsafe { libc::kill(berthd.child.id() as i32, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(500));
    };
    std::fs::write(&config_path, "not = [toml").unwrap();
    hangup(&berthd);
    std::fs::write(
        &config_path,
        format!("{original}log_max_size = 12345\n[runtimes]\nrunc2 = \"runc\"\n[mirrors]\n\"127.0.0.1:9\" = [{:?}]\n", registry.address),
    )
    .unwrap();
    hangup(&berthd);
    let after = (berthd.berth(&env, &["run", "--rm", "--runtime", "runc2", &image, "echo", "via runc2"]), berthd.berth(&env, &["pull", mirrored]));
    let log = std::fs::read_to_string(env.dir.join("berthd.log")).unwrap();
    drop(berthd);

    assert!(!before.0.status.success() && String::from_utf8_lossy(&before.0.stderr).contains("runc2"), "{:?}", before.0);
    assert!(!before.1.status.success(), "no mirror yet");
    assert!(log.contains("SIGHUP") && log.contains("the running config stays"), "a broken file is refused:\n{log}");
    assert!(after.0.status.success() && String::from_utf8_lossy(&after.0.stdout) == "via runc2\n", "{:?}", after.0);
    assert!(after.1.status.success(), "the mirror serves: {}", String::from_utf8_lossy(&after.1.stderr));
    let reloaded = log.lines().find(|l| l.contains("config reloaded")).unwrap_or_default();
    assert!(reloaded.contains("log_max_size") && reloaded.contains("needs_restart") && reloaded.contains("runtimes"), "{reloaded}");
    env.leak_check();
}

/// The metrics endpoint, scraped and parsed as Prometheus's text format: containers by state,
/// shims, pulls and their bytes, RPC latencies and errors by method; other paths are not found.
#[test]
fn metrics_are_served_in_prometheus_text_format() {
    let env = TestEnv::new("metrics");
    let registry = berth_testsupport::busybox_registry(&env);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let berthd = Berthd::start_with(&env, &[&registry.address], &format!("metrics_address = \"127.0.0.1:{port}\"\n"), None);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    berthd.ok(&env, &["run", "-d", "--name", "m1", &image, "sleep", "100"]);
    assert!(!berthd.berth(&env, &["inspect", "nosuch"]).status.success());
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let (scraped, missing) = (get("/metrics"), get("/other"));
    berthd.ok(&env, &["rm", "-f", "m1"]);
    drop(berthd);

    assert!(
        scraped.starts_with("HTTP/1.1 200") && scraped.contains("application/openmetrics-text") && scraped.trim_end().ends_with("# EOF"),
        "{scraped}"
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let body = scraped.split_once("\r\n\r\n").unwrap().1;
    // name{labels} value, every line that is not a comment.
    let samples: Vec<(String, f64)> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            (name.to_string(), value.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
        })
        .collect();
    let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(value("berth_containers{state=\"running\"}"), Some(1.0), "{body}");
    assert_eq!(value("berth_shims"), Some(1.0), "{body}");
    assert_eq!(value("berth_pulls_total"), Some(1.0), "{body}");
    assert!(value("berth_pull_bytes_total").is_some_and(|b| b > 100_000.0), "{body}");
    assert!(value("berth_rpc_duration_seconds_count{method=\"/berth.v1.Containers/Create\"}").is_some_and(|c| c >= 1.0), "{body}");
    assert!(value("berth_rpc_errors_total{method=\"/berth.v1.Containers/Inspect\"}").is_some_and(|c| c >= 1.0), "{body}");
    assert!(
        body.contains("berth_rpc_duration_seconds_bucket{le=\"0.001\",method=") || body.contains("berth_rpc_duration_seconds_bucket{method="),
        "{body}"
    );
    env.leak_check();
}
