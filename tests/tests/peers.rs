//! berth-oci driven by the tools that will drive it in production: Debian's containerd 1.6 (through
//! its runc v2 shim, `ctr run --runc-binary`) and podman 4.3 (`--runtime`, through conmon). Each
//! test runs its own private instance (storage, state, sockets and cgroup parent under the test's
//! directory or named after it), builds a busybox image offline, and tears everything down.

use berth_testsupport::{cgroup_file, cgroup_v2, Containerd, Peer, Podman, TestEnv, PODMAN_IMAGE};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!("{what}: {}\nstdout: {}\nstderr: {}", out.status, text(&out.stdout), text(&out.stderr))
}

const IMAGE: &str = PODMAN_IMAGE;

fn assert_no_runtime_state(root: &Path, id: &str) {
    assert!(!root.join(id).exists(), "berth-oci state {} left behind", root.join(id).display());
}

#[test]
fn podman_runs_execs_stops_and_gives_a_terminal() {
    let env = TestEnv::new("peer-podman");
    let podman = Podman::new(&env);
    podman.import_busybox();
    let with = |args: &[&str]| podman.with_options(args);

    // stdout and the exit code.
    let args = with(&["run", "--rm", IMAGE, "sh", "-c", "echo hello from podman; exit 3"]);
    let out = podman.run(&strs(&args));
    assert_eq!(out.status.code(), Some(3), "{}", describe("podman run", &out));
    assert_eq!(text(&out.stdout), "hello from podman\n");

    // exec into a running container, then stop it: SIGTERM is trapped and becomes exit 42.
    let args = with(&["run", "-d", "--name", "berth-stop", IMAGE, "sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done"]);
    let id = podman.ok(&strs(&args)).trim().to_string();
    assert!(Path::new("/run/berth-oci").join(&id).join("state.json").exists(), "podman ran the container with berth-oci");
    let out = podman.run(&["exec", "berth-stop", "sh", "-c", "cat /proc/1/cmdline; echo; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe("podman exec", &out));
    assert!(text(&out.stdout).contains("trap"), "exec sees the container's init: {}", text(&out.stdout));
    podman.ok(&["stop", "--time", "10", "berth-stop"]);
    assert_eq!(podman.ok(&["inspect", "--format", "{{.State.ExitCode}}", "berth-stop"]).trim(), "42");
    podman.ok(&["rm", "berth-stop"]);
    assert_no_runtime_state(Path::new("/run/berth-oci"), &id);

    // `podman update` hands berth-oci its own resources document: a privileged container keeps
    // the host's devices through it (/dev/kmsg, opened for writing, stands for any), and the new
    // CPU shares reach its cgroup.
    let args = with(&["run", "-d", "--privileged", "--name", "berth-update", IMAGE, "sleep", "300"]);
    let id = podman.ok(&strs(&args)).trim().to_string();
    let kmsg = ["exec", "berth-update", "sh", "-c", "if [ -c /dev/kmsg ] && true >> /dev/kmsg; then echo opened; fi 2>/dev/null"];
    assert_eq!(podman.ok(&kmsg), "opened\n");
    podman.ok(&["update", "--cpu-shares", "512", "berth-update"]);
    assert_eq!(podman.ok(&kmsg), "opened\n", "after podman update");
    let pid = podman.ok(&["inspect", "--format", "{{.State.Pid}}", "berth-update"]).trim().to_string();
    // Its cpu hierarchy's line in /proc/PID/cgroup ("N:cpu,cpuacct:/path"), or v2's "0::/path".
    let v2 = cgroup_v2();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups
        .lines()
        .map(|l| l.splitn(3, ':').collect::<Vec<_>>())
        .find(|f| f.len() == 3 && if v2 { f[0] == "0" } else { f[1].split(',').any(|c| c == "cpu") })
        .map(|f| f[2].to_string())
        .unwrap_or_else(|| panic!("no cpu cgroup in {cgroups}"));
    // runc's conversion of 512 shares to a v2 weight.
    let (file, expected) = if v2 { ("cpu.weight", "20") } else { ("cpu.shares", "512") };
    assert_eq!(cgroup_file("cpu", &path, file), expected);
    podman.ok(&["rm", "--force", "berth-update"]);
    assert_no_runtime_state(Path::new("/run/berth-oci"), &id);

    // -t: a real pty through conmon's console socket, sized from the caller's terminal. conmon
    // sizes it once it has the pty, which may come after the process starts (a loaded machine
    // showed `stty size` failing on 0x0 once): the container waits up to 2 s for a size.
    // (No quotes: the line goes through `script -c` in single quotes.)
    let wait_for_size = "tty; for i in 1 2 3 4 5 6 7 8 9 10; do stty size 2>/dev/null | grep -qv ^0.0$ && break; sleep 0.2; done; stty size";
    let podman_line = {
        let command = podman.command(&strs(&with(&["run", "--rm", "-t", IMAGE, "sh", "-c", wait_for_size])));
        let mut line = format!("{:?}", command.get_program());
        for arg in command.get_args() {
            line.push_str(&format!(" '{}'", arg.to_string_lossy()));
        }
        line.replace('"', "")
    };
    let mut script = Command::new("script");
    script.args(["-qec", &format!("stty rows 33 cols 77; {podman_line}"), "/dev/null"]).stdin(Stdio::piped());
    let out = env.capture(&mut script);
    let tty = text(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{}", describe("podman run -t", &out));
    assert!(tty.contains("/dev/pts/0\n33 77\n"), "{tty:?}");

    podman.teardown();
    env.leak_check();
}

/// A private containerd: its own root, state, sockets and namespace, the CRI plugin off.
#[test]
fn containerd_runs_execs_and_kills_through_its_runc_shim() {
    let env = TestEnv::new("peer-containerd");
    // The image: built by podman offline, handed over as a docker archive.
    let podman = Podman::new(&env);
    podman.import_busybox();
    let archive = env.dir.join("busybox.tar");
    podman.ok(&["save", "--output", archive.to_str().unwrap(), IMAGE]);
    podman.teardown();

    let containerd = Containerd::start(&env);
    containerd.ok(&["images", "import", archive.to_str().unwrap()]);
    let bin = env.bin.to_str().unwrap();

    // Foreground run: stdout and the exit status come back through the shim.
    let out = containerd.run(&["run", "--rm", "--runc-binary", bin, IMAGE, "berth-run", "sh", "-c", "echo hello from containerd; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe("ctr run", &out));
    assert_eq!(text(&out.stdout), "hello from containerd\n");
    assert_no_runtime_state(&containerd.runtime_root(), "berth-run");

    // A long-running container: exec into it, then kill it; its exit status reaches `ctr run`.
    let n = std::process::id();
    let (stdout_path, stderr_path) = (env.dir.join(format!("run-{n}.out")), env.dir.join(format!("run-{n}.err")));
    let mut run = containerd
        .command(&["run", "--runc-binary", bin, IMAGE, "berth-kill", "sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done"])
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while containerd.task_status("berth-kill").as_deref() != Some("RUNNING") {
        assert!(Instant::now() < deadline, "the task never ran: {}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = std::fs::read_to_string(containerd.runtime_root().join("berth-kill/state.json")).unwrap_or_default();
    assert!(state.contains("\"start_time\""), "the shim ran berth-oci, whose state this is: {state:.200}");
    let out = containerd.run(&["task", "exec", "--exec-id", "probe", "berth-kill", "sh", "-c", "cat /proc/1/cmdline; echo; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe("ctr task exec", &out));
    assert!(text(&out.stdout).contains("trap"), "exec sees the container's init: {}", text(&out.stdout));
    let ps = containerd.ok(&["task", "ps", "berth-kill"]);
    assert!(ps.lines().count() >= 2, "ctr task ps lists the init: {ps}");
    containerd.ok(&["task", "kill", "berth-kill"]);
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(42), "ctr run reports the exit status: {}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
    containerd.ok(&["container", "rm", "berth-kill"]);
    assert_no_runtime_state(&containerd.runtime_root(), "berth-kill");

    containerd.teardown();
    env.leak_check();
}
