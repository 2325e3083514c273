//! A private podman (Debian's 4.3) for tests that drive berth-oci through it (`--runtime`, through
//! conmon): its own storage (vfs), run root and temp dir under the test's directory, and its own
//! cgroup parent: a directory under the root of each hierarchy with the cgroupfs manager, or a
//! slice with systemd's (where systemd is PID 1). Its OCI runtime state still lives in
//! berth-oci's default root (podman passes none). `teardown` removes its containers and images
//! and that parent.

use crate::{Peer, TestEnv};
use std::process::{Command, Stdio};

/// The image `import_busybox` makes.
pub const PODMAN_IMAGE: &str = "localhost/berth-busybox:test";

pub struct Podman<'a> {
    env: &'a TestEnv,
    /// `/berth-<test dir>` with cgroupfs; `<name>.slice` with systemd.
    pub cgroup_parent: String,
    systemd: bool,
}

impl<'a> Podman<'a> {
    /// With the cgroupfs manager.
    pub fn new(env: &'a TestEnv) -> Podman<'a> {
        let name = env.dir.file_name().unwrap().to_string_lossy();
        Podman { env, cgroup_parent: format!("/berth-{name}"), systemd: false }
    }

    /// With systemd's manager (`--cgroup-manager systemd`): containers in `slice`, their
    /// conmon in a scope podman asks systemd for over the system bus.
    pub fn with_systemd(env: &'a TestEnv, slice: &str) -> Podman<'a> {
        Podman { env, cgroup_parent: slice.to_string(), systemd: true }
    }

    /// Options every container gets: no network (no CNI here), the test's cgroup parent, and
    /// rlimits below this machine's hard limits (podman's defaults exceed them, and raising a hard
    /// limit needs CAP_SYS_RESOURCE, which root lacks here).
    pub fn container_options(&self) -> Vec<String> {
        ["--network", "none", "--cgroup-parent", &self.cgroup_parent, "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
            .map(String::from)
            .to_vec()
    }

    /// `args` with [`Self::container_options`] after the verb (`run`, `create`).
    pub fn with_options(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![args[0].to_string()];
        all.extend(self.container_options());
        all.extend(args[1..].iter().map(|a| a.to_string()));
        all
    }

    /// Imports a busybox rootfs as [`PODMAN_IMAGE`].
    pub fn import_busybox(&self) {
        let rootfs = self.env.dir.join("image-rootfs");
        crate::busybox_rootfs(&rootfs);
        let archive = self.env.dir.join("image-rootfs.tar");
        std::fs::write(&archive, crate::tar_of(&rootfs)).unwrap();
        let mut command = self.command(&["import", "-", PODMAN_IMAGE]);
        command.stdin(std::fs::File::open(&archive).unwrap());
        let out = self.env.capture(&mut command);
        assert!(out.status.success(), "podman import: {}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
        std::fs::remove_dir_all(&rootfs).unwrap();
        std::fs::remove_file(&archive).unwrap();
    }

    /// Removes everything this podman made: containers, images, and the cgroup parent of conmon
    /// and the containers (the slice stopped, with systemd).
    pub fn teardown(&self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        match self.systemd {
            true => {
                let _ = Command::new("systemctl").args(["stop", &self.cgroup_parent]).status();
            }
            false => crate::remove_cgroup_tree(&self.cgroup_parent),
        }
    }
}

impl Peer for Podman<'_> {
    fn env(&self) -> &TestEnv {
        self.env
    }

    fn command(&self, args: &[&str]) -> Command {
        let dir = &self.env.dir;
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(dir.join("podman/storage"))
            .arg("--runroot")
            .arg(dir.join("podman/run"))
            .arg("--tmpdir")
            .arg(dir.join("podman/tmp"))
            .args(["--storage-driver", "vfs", "--events-backend", "file"])
            .args(["--cgroup-manager", if self.systemd { "systemd" } else { "cgroupfs" }])
            .arg("--runtime")
            .arg(&self.env.bin)
            .args(args)
            .stdin(Stdio::null());
        command
    }
}
