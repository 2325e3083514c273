//! A berthd of the test's own (store, state, socket and config under the test directory) and the
//! `berth` CLI pointed at it.

use crate::{workspace_bin, TestEnv};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub struct Berthd {
    pub child: Child,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Berthd {
    pub fn start(env: &TestEnv, plain_http: &[&str]) -> Berthd {
        Berthd::start_with(env, plain_http, "", None)
    }

    /// With `extra` appended to the config file and `path_prefix` put first on berthd's PATH.
    pub fn start_with(env: &TestEnv, plain_http: &[&str], extra: &str, path_prefix: Option<&std::path::Path>) -> Berthd {
        let (root, socket, config) = (env.dir.join("berth-root"), env.dir.join("run/berth.sock"), env.dir.join("berthd.toml"));
        let state = env.dir.join("run/state");
        let registries: Vec<String> = plain_http.iter().map(|r| format!("{r:?}")).collect();
        // Never the host's CNI configs (podman's bridge is in /etc/cni/net.d here): an empty dir of
        // the test's (pods get loopback only) unless the test names its own.
        let mut cni = if extra.contains("cni_conf_dir") { String::new() } else { format!("cni_conf_dir = {:?}\n", env.dir.join("cni-none")) };
        // `berth run` on no bridge unless the test asks (the tests of networks do): the others
        // need none and would share the host's default bridge.
        if !extra.contains("default_network") {
            cni += "default_network = \"none\"\n";
        }
        std::fs::write(
            &config,
            format!("root = {:?}\nsocket = {:?}\nstate = {:?}\nplain_http = [{}]\n{cni}{extra}", root, socket, state, registries.join(", ")),
        )
        .unwrap();
        let mut command = Command::new(workspace_bin("berthd"));
        if let Some(prefix) = path_prefix {
            command.env("PATH", format!("{}:{}", prefix.display(), std::env::var("PATH").unwrap_or_default()));
        }
        // Its log beside the test's files (appended across restarts), quoted when it fails to start.
        let log_path = env.dir.join("berthd.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let child = command.arg("--config").arg(&config).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let mut berthd = Berthd { child, socket, root, state };
        // Recovery comes before listening: under the VM's emulation, many containers take a while.
        for _ in 0..6000 {
            if std::os::unix::net::UnixStream::connect(&berthd.socket).is_ok() {
                return berthd;
            }
            if let Ok(Some(status)) = berthd.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail = &log[log.len().saturating_sub(2000)..];
                panic!("berthd exited ({status}) before it listened on {}; its log ends:\n{tail}", berthd.socket.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Dropped here: killed, and whatever containers it had with it.
        panic!("berthd never listened on {}", berthd.socket.display());
    }

    pub fn berth(&self, env: &TestEnv, args: &[&str]) -> Output {
        env.capture(Command::new(workspace_bin("berth")).arg("--socket").arg(&self.socket).args(args).stdin(Stdio::null()))
    }

    pub fn ok(&self, env: &TestEnv, args: &[&str]) -> String {
        let out = self.berth(env, args);
        assert!(out.status.success(), "berth {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM, and wait (at most 10 s): a graceful stop.
    pub fn stop(mut self) {
        // SAFETY: kill takes a pid and a signal; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed().as_secs() < 10, "berthd did not stop within 10 s of SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Berthd {
    /// A failed test's containers go too (they would outlive berthd: that is what shims do).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let list = Command::new(workspace_bin("berth"))
                .arg("--socket")
                .arg(&self.socket)
                .args(["ps", "-a", "--format", "json"])
                .stdin(Stdio::null())
                .output();
            let containers: Vec<serde_json::Value> = list.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
            for container in containers {
                let id = container["id"].as_str().unwrap_or_default();
                let _ = Command::new(workspace_bin("berth")).arg("--socket").arg(&self.socket).args(["rm", "-f", id]).stdin(Stdio::null()).output();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // What a failed test's pods left: their infra processes and namespace pins (the berth
        // CLI has no pod verbs).
        for pod in std::fs::read_dir(self.state.join("containers")).into_iter().flatten().flatten() {
            if let Some(pid) = std::fs::read_to_string(pod.path().join("infra.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline.windows(pod.path().as_os_str().len()).any(|w| w == pod.path().as_os_str().as_encoded_bytes()) {
                    // SAFETY: kill takes a pid and a signal; the process names this test's pod.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let state = self.state.to_string_lossy().into_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo.lines().filter_map(|l| l.split_whitespace().nth(4)).filter(|m| m.starts_with(&state)).collect();
        mounts.sort_unstable_by(|a, b| b.cmp(a));
        for mount in mounts {
            let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
