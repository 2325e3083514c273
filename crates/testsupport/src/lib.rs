//! Test support shared by berth's integration tests (they run as root and make real containers).
//!
//! - [`TestEnv`]: a private directory with a state root and a busybox bundle, unique per test; on drop
//!   it force-deletes every container it made and removes its directories.
//! - [`busybox_rootfs`]: a rootfs from Debian's busybox-static, applets as hardlinks (a masked
//!   symlinked applet would mask busybox itself).
//! - [`Registry`], [`write_layout`]: a private docker-registry on 127.0.0.1 and OCI layouts to push;
//!   [`HostileRegistry`]: one that attacks its clients.
//! - [`TestEnv::leak_check`]: asserts that nothing of the test outlives it: mounts, cgroups,
//!   processes, state directories, and fds of the test process that point into the test's files.
//! - [`Containerd`]: a private containerd for tests that drive berth-oci through its runc shim.

mod berthd;
mod bundle;
mod cgroupfs;
mod console;
mod containerd;
mod hostile_registry;
mod leaks;
mod network;
mod peak_rss;
mod peer;
mod podman;
mod proxy;
mod registry;
mod trees;

pub use berthd::Berthd;
pub use bundle::{busybox_rootfs, Bundle};
pub use cgroupfs::{cgroup_dir, cgroup_file, cgroup_v2, remove_cgroup_tree};
pub use console::ConsoleSocket;
pub use containerd::Containerd;
pub use hostile_registry::{Attack, HostileRegistry};
pub use leaks::Leaks;
pub use network::{ip_allocations, HostNetwork, NetNs};
pub use peak_rss::{proc_status, PeakRss};
pub use peer::Peer;
pub use podman::{Podman, PODMAN_IMAGE};
pub use proxy::{Fault, FaultyProxy};
pub use registry::{
    busybox_layout, busybox_registry, host_architecture, layout_archive, patch_layout_config, tar_of, wait_for_partial_blob, write_layout,
    LayoutImage, Registry,
};
pub use trees::{assert_same_tree, layer_dir};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The berth-oci binary under test: `$BERTH_OCI`, else the workspace's debug build.
pub fn berth_oci_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_OCI") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/berth-oci");
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` first (or set BERTH_OCI)", path.display());
    path
}

/// A binary of this workspace's debug build (`berthd`, `berth`); `cargo build --workspace` first.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` first", path.display());
    path
}

/// Whether a host command exists (peer tests skip with a message when a peer is not installed).
pub fn have(command: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {command}")).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Where tests make their directories: `/tmp/berth-test`, or `$BERTH_TEST_ROOT` (the cgroup v2 VM
/// points the containers suite at a tmpfs: its /tmp is an overlay, which overlayfs refuses as the
/// upper layer of a container's rootfs).
pub fn test_root() -> PathBuf {
    std::env::var_os("BERTH_TEST_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/berth-test"))
}

pub struct TestEnv {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub bundle: Bundle,
    pub bin: PathBuf,
    ids: std::cell::RefCell<Vec<String>>,
}

impl TestEnv {
    /// A fresh environment named after the test (used in ids, so leftovers are attributable).
    pub fn new(name: &str) -> TestEnv {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = test_root().join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let root = dir.join("state");
        let bundle = Bundle::new(&dir.join("bundle"));
        TestEnv { dir, root, bundle, bin: berth_oci_bin(), ids: Default::default() }
    }

    /// A container id unique to this test run; remembered for cleanup and the leak check.
    pub fn id(&self, name: &str) -> String {
        let id = format!("{name}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// `berth-oci --root <root> <args>`, capturing output. Output goes through files, not pipes: a
    /// container's init inherits the runtime's stdio, and a pipe would stay open as long as it runs.
    pub fn oci(&self, args: &[&str]) -> Output {
        self.capture(&mut self.command(args))
    }

    /// Runs any command with its output captured through files (see [`TestEnv::oci`]).
    pub fn capture(&self, command: &mut Command) -> Output {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let (out_path, err_path) = (self.dir.join(format!(".out-{n}")), self.dir.join(format!(".err-{n}")));
        let stdout = std::fs::File::create(&out_path).expect("create stdout file");
        let stderr = std::fs::File::create(&err_path).expect("create stderr file");
        let status = command.stdout(stdout).stderr(stderr).status().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
        // The command holds the files until it is dropped or given other stdio.
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let output = Output { status, stdout: std::fs::read(&out_path).unwrap_or_default(), stderr: std::fs::read(&err_path).unwrap_or_default() };
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        output
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--root").arg(&self.root).args(args).current_dir(&self.bundle.dir);
        command.stdin(Stdio::null());
        command
    }

    /// Runs berth-oci and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.oci(args);
        assert!(
            out.status.success(),
            "berth-oci {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth-oci and insists on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.oci(args);
        assert!(!out.status.success(), "berth-oci {args:?} unexpectedly succeeded:\nstdout: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The container's status from `state` (or "absent").
    pub fn status(&self, id: &str) -> String {
        let out = self.oci(&["state", id]);
        if !out.status.success() {
            return "absent".into();
        }
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
        state["status"].as_str().unwrap_or_default().to_string()
    }

    pub fn pid(&self, id: &str) -> i32 {
        let state: serde_json::Value = serde_json::from_str(&self.ok(&["state", id])).expect("state JSON");
        state["pid"].as_i64().expect("pid") as i32
    }

    /// Waits (bounded) until the container reaches `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..500 {
            if self.status(id) == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} never became {status} (is {})", self.status(id));
    }

    /// Asserts nothing of this test is left (see [`Leaks`]). Call at the end of each test, after
    /// deleting its containers.
    pub fn leak_check(&self) {
        let leaks = Leaks::find(&self.dir, &self.root, &self.ids.borrow());
        assert!(leaks.is_empty(), "leaks after test:\n{leaks}");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.command(&["delete", "--force", id]).stderr(Stdio::null()).status();
        }
        // A plugin or shim the test orphaned on purpose (a kill -9 of berthd mid-call) may still
        // be finishing inside the directory, or a lazily detached mount still going: try again a
        // while before giving up, and say why if it stays.
        for attempt in 0.. {
            match std::fs::remove_dir_all(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if attempt == 50 => {
                    eprintln!("could not remove {}: {e}", self.dir.display());
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }
}

/// Waits (up to 20 s) until `path` exists: a mark a test's plugin or hook leaves.
pub fn wait_for_file(path: &Path) {
    let started = std::time::Instant::now();
    while !path.exists() {
        assert!(started.elapsed().as_secs() < 20, "no {}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
