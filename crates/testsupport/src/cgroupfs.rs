//! Reading a container's cgroup files on whichever hierarchy the machine has: the host here is
//! cgroup v1, the test VM (vm/run-in-vm.sh) pure v2, and the same tests run on both.

use std::path::{Path, PathBuf};

/// Whether /sys/fs/cgroup is a cgroup2 mount (the unified hierarchy).
pub fn cgroup_v2() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let separator = fields.iter().position(|f| *f == "-");
        fields.get(4) == Some(&"/sys/fs/cgroup") && separator.and_then(|i| fields.get(i + 1)) == Some(&"cgroup2")
    })
}

/// The directory of cgroup `path` (relative to the hierarchy root) for `controller`.
pub fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let root = PathBuf::from("/sys/fs/cgroup");
    let path = path.trim_start_matches('/');
    if cgroup_v2() {
        root.join(path)
    } else {
        root.join(controller).join(path)
    }
}

/// The trimmed content of one cgroup file of `path`.
pub fn cgroup_file(controller: &str, path: &str, file: &str) -> String {
    let file = cgroup_dir(controller, path).join(file);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).trim().to_string()
}

/// Removes a cgroup directory and its (empty) children under every v1 controller or on v2.
pub fn remove_cgroup_tree(relative: &str) {
    let relative = relative.trim_start_matches('/');
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(relative)];
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(controllers.flatten().map(|c| c.path().join(relative)));
    }
    for root in roots.into_iter().filter(|r| r.is_dir()) {
        remove_dirs_bottom_up(&root);
        assert!(!root.exists(), "cgroup {} could not be removed: processes left in it?", root.display());
    }
}

fn remove_dirs_bottom_up(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            remove_dirs_bottom_up(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
