//! Which cgroup hierarchies this host has, read from /proc/self/mountinfo.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// v1 (possibly hybrid): controller name → mount point. Co-mounted controllers share a mount.
    V1(BTreeMap<String, PathBuf>),
    /// Pure v2 ("unified") hierarchy mounted at the path.
    V2(PathBuf),
}

impl Hierarchy {
    pub fn detect() -> Result<Hierarchy> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
        parse_mountinfo(&mountinfo)
    }

    /// Whether the host has the controller at all (v1: mounted; v2: in the root's
    /// `cgroup.controllers`): limits for a missing one cannot be enforced, and a CRI client sends
    /// some (the kubelet's hugepage limits) whatever the host has.
    pub fn has_controller(&self, name: &str) -> bool {
        match self {
            Hierarchy::V1(mounts) => mounts.contains_key(name),
            Hierarchy::V2(root) => {
                std::fs::read_to_string(root.join("cgroup.controllers")).map(|list| list.split_whitespace().any(|c| c == name)).unwrap_or(false)
            }
        }
    }
}

fn parse_mountinfo(mountinfo: &str) -> Result<Hierarchy> {
    let mut v1 = BTreeMap::new();
    let mut v2_root = None;
    for line in mountinfo.lines() {
        // fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut right = right.split_whitespace();
        let (Some(fstype), Some(_source), Some(superopts)) = (right.next(), right.next(), right.next()) else {
            continue;
        };
        let Some(mount_point) = left.split_whitespace().nth(4) else { continue };
        let mount_point = PathBuf::from(std::ffi::OsString::from_vec(berth_sys::mountinfo::unescape(mount_point.as_bytes())));
        match fstype {
            "cgroup" => {
                for opt in superopts.split(',') {
                    let name = opt.strip_prefix("name=").unwrap_or(opt);
                    if is_controller(opt) || opt.starts_with("name=") {
                        v1.entry(name.to_string()).or_insert_with(|| mount_point.clone());
                    }
                }
            }
            "cgroup2" if mount_point == std::path::Path::new("/sys/fs/cgroup") => v2_root = Some(mount_point),
            _ => {}
        }
    }
    if !v1.is_empty() {
        Ok(Hierarchy::V1(v1))
    } else if let Some(root) = v2_root {
        Ok(Hierarchy::V2(root))
    } else {
        Err(Error::NoHierarchy)
    }
}

fn is_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "blkio"
            | "perf_event"
            | "hugetlb"
            | "pids"
            | "rdma"
            | "misc"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host_is_v1() {
        let info = "35 25 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu\n\
                    36 25 0:31 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,memory\n\
                    37 25 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    38 25 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n";
        let Hierarchy::V1(map) = parse_mountinfo(info).unwrap() else { panic!("not v1") };
        assert_eq!(map["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(map["memory"], PathBuf::from("/sys/fs/cgroup/cpu x"));
        assert_eq!(map["systemd"], PathBuf::from("/sys/fs/cgroup/systemd"));
        assert!(!map.contains_key("xattr"));
        let hierarchy = Hierarchy::V1(map);
        assert!(hierarchy.has_controller("memory"));
        assert!(!hierarchy.has_controller("hugetlb"));
    }

    #[test]
    fn pure_v2() {
        let info = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert!(matches!(parse_mountinfo(info).unwrap(), Hierarchy::V2(_)));
    }
}
