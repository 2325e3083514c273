//! A private containerd (Debian's 1.6) for tests that drive berth-oci through it: its own root,
//! state, sockets and namespace under the test's directory, no CRI plugin; `ctr` talks to it.
//! `teardown` removes its images and namespace, stops the daemon (by its pid) and removes the
//! cgroups its containers had under the namespace's name; dropped without it (a test that
//! panicked), it first kills and removes whatever tasks and containers are left.

use crate::{Peer, TestEnv};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd<'a> {
    env: &'a TestEnv,
    daemon: Child,
    /// The containerd namespace, also the cgroup parent of its containers (cgroupfs driver).
    pub namespace: String,
}

impl<'a> Containerd<'a> {
    /// Starts the daemon and waits (up to 20 s) until `ctr version` answers.
    pub fn start(env: &'a TestEnv) -> Containerd<'a> {
        let dir = env.dir.join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = dir.join("containerd.sock").display(),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let containerd = Containerd { env, daemon, namespace: format!("berth-{}", env.dir.file_name().unwrap().to_string_lossy()) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !containerd.run(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        containerd
    }

    /// Where the runc v2 shim keeps the runtime's state for this namespace (`--root`).
    pub fn runtime_root(&self) -> PathBuf {
        PathBuf::from("/run/containerd/runc").join(&self.namespace)
    }

    /// The task's status as `ctr task ls` shows it (RUNNING, STOPPED, PAUSED…).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let tasks = self.ok(&["task", "ls"]);
        tasks.lines().find(|l| l.split_whitespace().next() == Some(id)).and_then(|l| l.split_whitespace().nth(2)).map(String::from)
    }

    /// Waits (up to 20 s) until the task is `status`.
    pub fn wait_task(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.task_status(id).as_deref() != Some(status) {
            assert!(Instant::now() < deadline, "task {id} never became {status} (is {:?})", self.task_status(id));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn teardown(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if self.daemon.try_wait().is_ok_and(|exited| exited.is_some()) {
            return;
        }
        for image in self.run(&["images", "ls", "-q"]).stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let _ = self.run(&["images", "rm", &String::from_utf8_lossy(image)]);
        }
        let _ = self.run(&["namespaces", "rm", &self.namespace]);
        // The daemon this test started, by its pid; it stops its plugins and exits.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.daemon.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir(self.runtime_root());
        crate::remove_cgroup_tree(&self.namespace);
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        if self.daemon.try_wait().is_ok_and(|exited| exited.is_some()) {
            return;
        }
        let listed = |args: &[&str]| -> Vec<String> {
            let out = self.run(args);
            String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(String::from).collect()
        };
        for id in listed(&["containers", "ls", "-q"]) {
            let _ = self.run(&["task", "kill", "--all", "--signal", "KILL", &id]);
            let _ = self.run(&["task", "delete", "--force", &id]);
            let _ = self.run(&["containers", "delete", &id]);
        }
        self.shut_down();
    }
}

impl Peer for Containerd<'_> {
    fn env(&self) -> &TestEnv {
        self.env
    }

    /// `ctr` on this daemon and namespace.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.env.dir.join("containerd/containerd.sock"))
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        command
    }
}
