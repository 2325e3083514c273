//! Attacks on the host through the runtime, written as the attack; each asserts the host is untouched.

use berth_testsupport::TestEnv;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

fn sha256(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// CVE-2019-5736: a container process holds an O_PATH handle on the runtime binary through
/// /proc/<pid>/exe of a process still running runtime code, waits until that process is gone (so the
/// binary is no longer busy), then reopens the handle for writing to replace the host's runtime.
#[test]
fn runtime_binary_reachable_from_a_container_cannot_be_overwritten() {
    let mut env = TestEnv::new("cve-2019-5736");
    env.bundle.set_args(&["true"]);
    // A copy of its own: while any other test runs the shared binary, opening it for writing
    // fails as busy (ETXTBSY) before the mount's read-only flag is even looked at.
    let own = env.dir.join("berth-oci");
    std::fs::copy(&env.bin, &own).unwrap();
    env.bin = own;
    let before = sha256(&env.bin);
    let id = env.id("exe");
    env.ok(&["create", &id]);
    // Until `start`, the container's init runs berth-oci code.
    let pid = env.pid(&id);
    let handle = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(format!("/proc/{pid}/exe")).unwrap();
    env.ok(&["delete", "--force", &id]);
    let reopened = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let error = reopened.expect_err("the binary reachable from the container must not be writable");
    assert!(matches!(error.raw_os_error(), Some(libc::EROFS) | Some(libc::EPERM)), "{error}");
    assert_eq!(sha256(&env.bin), before);
    drop(handle);
    env.leak_check();
}

/// CVE-2024-40635 class: a user id the kernel reads as "unchanged" ((uid_t)-1) would leave the
/// process running as root. Refused, from config.json and from `exec --user`.
#[test]
fn an_id_that_cannot_be_set_never_becomes_root() {
    let mut env = TestEnv::new("cve-2024-40635");
    for user in [
        serde_json::json!({"uid": 4294967295u32, "gid": 0}),
        serde_json::json!({"uid": 1000, "gid": 4294967295u32}),
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [4294967295u32]}),
    ] {
        env.bundle.edit(|c| {
            c["process"]["user"] = user.clone();
            c["process"]["args"] = serde_json::json!(["id", "-u"]);
        });
        let id = env.id("uid");
        let stderr = env.fails(&["run", &id]);
        assert!(stderr.contains("not a valid id"), "{user}: {stderr}");
        assert_eq!(env.status(&id), "absent");
    }
    env.bundle.edit(|c| {
        c["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
        c["process"]["args"] = serde_json::json!(["sleep", "60"]);
    });
    let id = env.id("exec");
    env.ok(&["run", "-d", &id]);
    let stderr = env.fails(&["exec", "--user", "4294967295:0", &id, "id", "-u"]);
    assert!(stderr.contains("not a valid id"), "{stderr}");
    env.ok(&["delete", "--force", &id]);
    env.leak_check();
}

/// CVE-2025-31133 class: masks are bind mounts of the container's /dev/null. If /dev/null is
/// swapped for a symlink to a procfs file after the runtime created it (a race through a shared
/// volume, played here by a createContainer hook), every masked file would become that file.
#[test]
fn a_dev_null_that_is_not_the_null_device_is_never_used_for_masks() {
    let mut env = TestEnv::new("cve-2025-31133");
    let null = env.bundle.dir.join("rootfs/dev/null");
    let swap = format!("rm -f {0} && ln -s /proc/sys/kernel/hostname {0}", null.display());
    env.bundle.edit(|c| {
        c["hooks"] = serde_json::json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", swap]}]});
        c["process"]["args"] = serde_json::json!(["true"]);
    });
    let id = env.id("null");
    let stderr = env.fails(&["run", &id]);
    assert!(stderr.contains("not the null device"), "{stderr}");
    env.leak_check();
}

/// CVE-2025-52881 class: sysctls are written under /proc/sys; a /proc that is not procfs (here a
/// tmpfs the config mounts there) must not receive them.
#[test]
fn sysctls_are_only_written_to_procfs() {
    let mut env = TestEnv::new("fake-proc");
    env.bundle.edit(|c| {
        for mount in c["mounts"].as_array_mut().unwrap() {
            if mount["destination"] == "/proc" {
                *mount = serde_json::json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"});
            }
        }
        c["linux"]["maskedPaths"] = serde_json::json!([]);
        c["linux"]["readonlyPaths"] = serde_json::json!([]);
        c["linux"]["sysctl"] = serde_json::json!({"kernel.shm_rmid_forced": "1"});
        c["process"]["args"] = serde_json::json!(["true"]);
    });
    // The tmpfs gets the file the runtime would write, as a planted one would be.
    let planted = env.bundle.dir.join("rootfs/proc/sys/kernel");
    let plant = format!("mkdir -p {0} && touch {0}/shm_rmid_forced", planted.display());
    env.bundle.edit(|c| {
        c["hooks"] = serde_json::json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", plant]}]});
    });
    let id = env.id("sysctl");
    let stderr = env.fails(&["run", &id]);
    assert!(stderr.contains("not on procfs"), "{stderr}");
    env.leak_check();
}

/// An image whose /proc or /dev is an absolute symlink to a host directory: every mount resolves
/// inside the rootfs, so the host directory gets neither a mount nor a device node.
#[test]
fn proc_and_dev_symlinks_in_the_image_stay_inside_the_rootfs() {
    let mut env = TestEnv::new("symlinked-proc-dev");
    env.bundle.set_args(&["true"]);
    for name in ["proc", "dev"] {
        let host_dir = env.dir.join(format!("host-{name}"));
        std::fs::create_dir(&host_dir).unwrap();
        let in_image = env.bundle.dir.join("rootfs").join(name);
        std::fs::remove_dir_all(&in_image).unwrap();
        std::os::unix::fs::symlink(&host_dir, &in_image).unwrap();
        let id = env.id(name);
        let out = env.oci(&["run", &id]);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0, "{name}: the host directory was written to");
        env.leak_check();
        let _ = env.oci(&["delete", "--force", &id]);
        std::fs::remove_file(&in_image).unwrap();
        std::fs::create_dir(&in_image).unwrap();
        // A mount that escaped onto the host directory would make this fail.
        std::fs::remove_dir(&host_dir).unwrap();
    }
    env.leak_check();
}

/// CVE-2024-21626: a cwd of /proc/self/fd/N reaches whatever directory the runtime left open as
/// fd N. Each such cwd either fails or lands inside the container's rootfs.
#[test]
fn a_cwd_through_an_inherited_fd_never_reaches_the_host() {
    let mut env = TestEnv::new("cve-2024-21626");
    let rootfs = std::fs::canonicalize(env.bundle.dir.join("rootfs")).unwrap();
    for fd in 3..=9 {
        env.bundle.edit(|c| {
            c["process"]["cwd"] = serde_json::json!(format!("/proc/self/fd/{fd}"));
            c["process"]["args"] = serde_json::json!(["sleep", "60"]);
        });
        let id = env.id("cwd");
        if env.oci(&["run", "-d", &id]).status.success() {
            let pid = env.pid(&id);
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
            assert!(cwd.starts_with(&rootfs), "fd {fd}: the container's cwd is {}", cwd.display());
            env.ok(&["delete", "--force", &id]);
        }
    }
    env.leak_check();
}

/// CVE-2022-29162 class: inheritable capabilities left on a process let an unprivileged user gain
/// them back by executing a file whose inheritable file capabilities name them. The attack: a
/// `cat` carrying cap_net_raw,cap_dac_override+ei, run as uid 1000 by the init and by
/// `exec --cap`; its permitted set must stay empty.
#[test]
fn inheritable_capabilities_never_reach_an_unprivileged_process() {
    let mut env = TestEnv::new("cve-2022-29162");
    let capcat = env.bundle.dir.join("rootfs/opt/cat");
    std::fs::create_dir_all(capcat.parent().unwrap()).unwrap();
    std::fs::copy(env.bundle.dir.join("rootfs/bin/busybox"), &capcat).unwrap();
    let out = std::process::Command::new("setcap").args(["cap_net_raw,cap_dac_override+ei"]).arg(&capcat).output().unwrap();
    assert!(out.status.success(), "setcap: {}", String::from_utf8_lossy(&out.stderr));
    let fields = |status: &str| -> Vec<String> {
        status.lines().filter(|l| l.starts_with("CapInh") || l.starts_with("CapPrm") || l.starts_with("CapAmb")).map(str::to_string).collect()
    };
    let empty = ["CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapAmb:\t0000000000000000"];

    env.bundle.edit(|c| {
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        // no_new_privs would ignore file capabilities altogether; the attack needs it off.
        c["process"]["noNewPrivileges"] = serde_json::json!(false);
    });
    env.bundle.set_args(&["/opt/cat", "/proc/self/status"]);
    let id = env.id("init");
    assert_eq!(fields(&env.ok(&["run", &id])), empty);

    env.bundle.set_args(&["sleep", "60"]);
    let id = env.id("exec");
    env.ok(&["run", "--detach", &id]);
    let status = env.ok(&["exec", "--user", "1000:1000", "--cap", "CAP_NET_RAW", "--cap", "CAP_DAC_OVERRIDE", &id, "/opt/cat", "/proc/self/status"]);
    assert_eq!(fields(&status), empty);
    // The control: with the capabilities in the inheritable set (as the spec may ask), the same
    // file does gain them, so the empty sets above are the runtime's doing.
    env.ok(&["delete", "--force", &id]);
    env.bundle.edit(|c| {
        c["process"]["capabilities"]["inheritable"] = serde_json::json!(["CAP_NET_RAW"]);
        c["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push("CAP_NET_RAW".into());
    });
    env.bundle.set_args(&["/opt/cat", "/proc/self/status"]);
    let id = env.id("asked");
    let granted = fields(&env.ok(&["run", &id]));
    assert_eq!(granted[1], "CapPrm:\t0000000000002000", "{granted:?}");
    std::fs::remove_file(&capcat).unwrap();
    env.leak_check();
}

/// CVE-2025-52565 class: the image's /dev/console is a symlink to a host-sensitive /proc file; a
/// runtime that binds the pty "over /dev/console" through the link would mount it there. Without a
/// /dev tmpfs the image's /dev is used as it is: the run is refused and nothing is mounted.
#[test]
fn a_dev_console_symlink_never_redirects_the_console_mount() {
    let mut env = TestEnv::new("cve-2025-52565");
    env.bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/dev");
        c["process"]["terminal"] = serde_json::json!(true);
        c["root"]["readonly"] = serde_json::json!(false);
    });
    env.bundle.set_args(&["true"]);
    let dev = env.bundle.dir.join("rootfs/dev");
    std::fs::create_dir_all(&dev).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("console")).unwrap();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let socket_path = env.dir.join("console.sock");
    let socket = berth_testsupport::ConsoleSocket::bind(&socket_path);
    let receiver = std::thread::spawn(move || socket.accept_master());
    let id = env.id("console");
    let stderr = env.fails(&["create", "--console-socket", socket_path.to_str().unwrap(), &id]);
    assert!(stderr.contains("/dev/console"), "{stderr}");
    drop(receiver.join());
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), core_pattern);
    assert!(std::fs::symlink_metadata(dev.join("console")).unwrap().file_type().is_symlink(), "the planted link is left as it was");
    assert_eq!(env.status(&id), "absent");
    std::fs::remove_dir_all(&dev).unwrap();
    env.leak_check();
}
