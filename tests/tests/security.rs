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
