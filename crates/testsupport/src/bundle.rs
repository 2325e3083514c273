//! Busybox bundles: a rootfs from the host's busybox-static and a config.json made by
//! `berth-oci spec`, edited as JSON by the tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUSYBOX: &str = "/bin/busybox";

/// Builds a busybox rootfs at `dir`: /bin/busybox plus every applet as a hardlink, and the
/// directories a container expects.
pub fn busybox_rootfs(dir: &Path) {
    for sub in ["bin", "dev", "proc", "sys", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(sub)).expect("create rootfs dir");
    }
    let target = dir.join("bin/busybox");
    std::fs::copy(BUSYBOX, &target).unwrap_or_else(|e| panic!("copy {BUSYBOX} (install busybox-static): {e}"));
    let list = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| !a.is_empty() && !a.contains('/')) {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            std::fs::hard_link(&target, &link).expect("hardlink applet");
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// A bundle with a busybox rootfs and the default spec of the runtime under test, with
    /// `terminal: false` so tests read plain stdio.
    pub fn new(dir: &Path) -> Bundle {
        std::fs::create_dir_all(dir).expect("create bundle dir");
        busybox_rootfs(&dir.join("rootfs"));
        let out = Command::new(crate::berth_oci_bin()).args(["spec", "--bundle"]).arg(dir).output().expect("berth-oci spec");
        assert!(out.status.success(), "berth-oci spec: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.join("config.json")).expect("read config.json");
        let mut config: Value = serde_json::from_str(&text).expect("parse config.json");
        config["process"]["terminal"] = Value::Bool(false);
        let bundle = Bundle { dir: dir.to_path_buf(), config };
        bundle.save();
        bundle
    }

    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        self.save();
        self
    }

    /// Edits the config with a closure, then writes it.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&self) {
        std::fs::write(self.dir.join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).expect("write config.json");
    }
}
