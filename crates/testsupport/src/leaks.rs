//! The leak check: everything a test could leave behind on the host, looked up from the kernel's
//! own views (/proc/self/mountinfo, the cgroup filesystems, /proc/*/root and /proc/self/fd).

use std::fmt;
use std::path::Path;

#[derive(Default)]
pub struct Leaks(Vec<String>);

impl Leaks {
    pub fn find(test_dir: &Path, state_root: &Path, ids: &[String]) -> Leaks {
        let mut leaks = Leaks::default();
        let dir = test_dir.to_string_lossy().into_owned();
        if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
            for line in mountinfo.lines().filter(|l| l.split_whitespace().nth(4).is_some_and(|m| m.starts_with(&dir))) {
                leaks.0.push(format!("mount: {line}"));
            }
        }
        for id in ids {
            if state_root.join(id).exists() {
                leaks.0.push(format!("state dir: {}", state_root.join(id).display()));
            }
            if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
                for controller in controllers.flatten() {
                    let path = controller.path().join(id);
                    if path.exists() {
                        leaks.0.push(format!("cgroup: {}", path.display()));
                    }
                }
            }
        }
        // Containers' writable layers: active snapshots in any image store of the test's.
        let mut stores = vec![test_dir.to_path_buf()];
        for _ in 0..2 {
            let below: Vec<_> = stores.iter().flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path())).collect();
            stores.extend(below.into_iter().filter(|p| p.is_dir()));
        }
        stores.sort();
        stores.dedup();
        for active in stores.iter().map(|d| d.join("snapshots/active")) {
            for snapshot in std::fs::read_dir(&active).into_iter().flatten().flatten() {
                leaks.0.push(format!("active snapshot: {}", snapshot.path().display()));
            }
        }
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for entry in procs.flatten() {
                let pid = entry.file_name();
                if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                // A berth-shim that names the test's files is one of its shims (or a pod's infra).
                if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                    let needle = test_dir.as_os_str().as_encoded_bytes();
                    let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                    if program.ends_with(b"berth-shim") && cmdline.windows(needle.len()).any(|w| w == needle) {
                        leaks.0.push(format!("process {}: {}", pid.to_string_lossy(), String::from_utf8_lossy(&cmdline).replace('\0', " ")));
                    }
                }
                // A process whose root or cwd is inside the test's files is one of its containers.
                for link in ["root", "cwd"] {
                    if let Ok(target) = std::fs::read_link(entry.path().join(link)) {
                        if target.starts_with(test_dir) {
                            leaks.0.push(format!("process {}: {link} is {}", pid.to_string_lossy(), target.display()));
                        }
                    }
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    if target.starts_with(test_dir) {
                        leaks.0.push(format!("fd {}: {}", fd.file_name().to_string_lossy(), target.display()));
                    }
                }
            }
        }
        leaks
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for leak in &self.0 {
            writeln!(f, "  {leak}")?;
        }
        Ok(())
    }
}
