//! The v2 device filter (an eBPF program) on a real cgroup2 hierarchy. This host is v1 hybrid, but
//! its /sys/fs/cgroup/unified is a real cgroup2 mount, and device programs attach to any cgroup2
//! directory; the full v2 driver is exercised in the VM harness. Needs root.

use berth_cgroups::{open_in, Hierarchy};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find(|l| l.contains(" - cgroup2 ")).and_then(|l| l.split_whitespace().nth(4)).map(PathBuf::from)
}

#[test]
fn ebpf_device_filter_denies_and_allows() {
    let Some(root) = cgroup2_root() else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    };
    let id = format!("berth-test-devices-{}", std::process::id());
    let cgroup = open_in(Hierarchy::V2(root.clone()), Some(Path::new(&format!("/{id}"))), &id).unwrap();
    cgroup.create().unwrap();
    // Everything is denied but the default devices and /dev/kmsg (1:11), which the rules allow read-only.
    let mut kmsg_read_only = LinuxDeviceCgroup::default();
    kmsg_read_only.set_allow(true);
    kmsg_read_only.set_typ(Some(LinuxDeviceType::C));
    kmsg_read_only.set_major(Some(1));
    kmsg_read_only.set_minor(Some(11));
    kmsg_read_only.set_access(Some("r".into()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![kmsg_read_only]));
    // Only the device program: this hybrid host's cgroup2 has none of the other controllers.
    let result = cgroup.apply(&resources);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            "read go; check() { if \"$@\" 2>/dev/null; then echo allowed; else echo denied; fi; }; \
              check sh -c 'true < /dev/kmsg'; check sh -c 'true >> /dev/kmsg'; check sh -c 'echo x > /dev/null'; \
              check sh -c 'true < /dev/fuse'; check mknod /tmp/berth-fuse-$$ c 10 229; rm -f /tmp/berth-fuse-$$",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if result.is_ok() {
        cgroup.add_process(child.id() as i32).unwrap();
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    // The shell has exited: the cgroup is empty and can go.
    cgroup.remove().unwrap();
    result.unwrap();
    // kmsg read-only by rule, /dev/null by default, everything else denied.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "allowed\ndenied\nallowed\ndenied\ndenied\n");
    assert!(!root.join(&id).exists());
}
