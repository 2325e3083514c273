//! The cgroup v1 driver: one directory per controller hierarchy, all at the same relative path.

pub(crate) mod devices;
mod resources;

use crate::path::CgroupPath;
use crate::stats::{parse_blkio, parse_flat_keyed, Stats};
use crate::{Cgroup, Error, FreezerState, Result};
use oci_spec::runtime::LinuxResources;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long `remove` waits for a cgroup's exiting processes to leave it.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct V1Cgroup {
    /// controller → this container's directory in that controller's hierarchy.
    dirs: BTreeMap<String, PathBuf>,
    /// controller → the hierarchy's mount point (co-mounted controllers share one).
    mounts: BTreeMap<String, PathBuf>,
}

impl V1Cgroup {
    pub(crate) fn new(mounts: BTreeMap<String, PathBuf>, path: &CgroupPath) -> Result<Self> {
        let own = if path.absolute { BTreeMap::new() } else { own_cgroups()? };
        let mut dirs = BTreeMap::new();
        for (controller, mount) in &mounts {
            let base = match own.get(controller) {
                Some(own_path) => mount.join(own_path.trim_start_matches('/')),
                None => mount.clone(),
            };
            dirs.insert(controller.clone(), base.join(&path.components));
        }
        Ok(V1Cgroup { dirs, mounts })
    }

    pub(crate) fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.get(controller).map(PathBuf::as_path)
    }

    fn read(&self, controller: &str, file: &str) -> Result<String> {
        let Some(dir) = self.dir(controller) else { return Ok(String::new()) };
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| Error::io("read", path, e))
    }

    fn read_u64(&self, controller: &str, file: &str) -> u64 {
        self.read(controller, file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }
}

pub(crate) use crate::write;

/// The caller's own cgroup per v1 controller, from /proc/self/cgroup.
fn own_cgroups() -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| Error::io("read", "/proc/self/cgroup", e))?;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        for controller in controllers.split(',').filter(|c| !c.is_empty()) {
            let name = controller.strip_prefix("name=").unwrap_or(controller);
            map.insert(name.to_string(), path.to_string());
        }
    }
    Ok(map)
}

/// A new cpuset cgroup starts with empty cpus/mems and refuses tasks; copy them down from the parent.
fn init_cpuset(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cursor = dir.to_path_buf();
    while !cursor.exists() {
        missing.push(cursor.clone());
        if !cursor.pop() {
            break;
        }
    }
    for created in missing.iter().rev() {
        std::fs::create_dir(created).or_else(ignore_exists).map_err(|e| Error::io("mkdir", created, e))?;
        let parent = created.parent().unwrap_or(created);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(created.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let inherited = std::fs::read_to_string(parent.join(file)).map_err(|e| Error::io("read", parent.join(file), e))?;
                write(created, file, inherited.trim())?;
            }
        }
    }
    Ok(())
}

fn ignore_exists(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == ErrorKind::AlreadyExists {
        Ok(())
    } else {
        Err(e)
    }
}

impl Cgroup for V1Cgroup {
    fn create(&self) -> Result<()> {
        for (controller, dir) in &self.dirs {
            if controller == "cpuset" {
                init_cpuset(dir)?;
            } else {
                std::fs::create_dir_all(dir).map_err(|e| Error::io("mkdir", dir, e))?;
            }
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        resources::apply(self, resources)
    }

    fn sub_cgroup(&self, paths: &BTreeMap<String, String>) -> Result<Box<dyn Cgroup>> {
        if let Some(unknown) = paths.keys().find(|c| !c.is_empty() && !self.dirs.contains_key(*c)) {
            return Err(Error::InvalidSubCgroup(unknown.clone(), "no such cgroup v1 controller here"));
        }
        let mut dirs = BTreeMap::new();
        for (controller, dir) in &self.dirs {
            let below = match paths.get(controller).or_else(|| paths.get("")) {
                Some(path) => crate::existing_below(dir, path)?,
                None => dir.clone(),
            };
            dirs.insert(controller.clone(), below);
        }
        // Controllers mounted together (cpu,cpuacct) are one directory tree: one path for both,
        // or the second write would move the process back out of the first's.
        for (a, b) in dirs.keys().flat_map(|a| dirs.keys().map(move |b| (a, b))) {
            if a != b && self.mounts.get(a) == self.mounts.get(b) && dirs[a] != dirs[b] {
                return Err(Error::InvalidSubCgroup(format!("{a},{b}"), "controllers mounted together need the same sub-cgroup"));
            }
        }
        Ok(Box::new(V1Cgroup { dirs, mounts: self.mounts.clone() }))
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for dir in self.dirs.values() {
            write(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    fn can_join_self(&self) -> bool {
        true
    }

    fn join_self(&self) -> Result<()> {
        for dir in self.dirs.values() {
            write(dir, "tasks", "0")?;
        }
        Ok(())
    }

    fn processes(&self) -> Result<Vec<i32>> {
        // Every controller holds every process; the freezer (or any) hierarchy is enough.
        let Some(dir) = self.dir("freezer").or_else(|| self.dirs.values().next().map(PathBuf::as_path)) else {
            return Ok(Vec::new());
        };
        let mut pids = Vec::new();
        collect_procs(dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self, state: FreezerState) -> Result<()> {
        let Some(dir) = self.dir("freezer") else {
            return Err(Error::Unsupported("the freezer controller is not mounted".into()));
        };
        let wanted = match state {
            FreezerState::Frozen => "FROZEN",
            FreezerState::Thawed => "THAWED",
        };
        // Freezing is asynchronous in v1: the state reads FREEZING until every task stopped.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            write(dir, "freezer.state", wanted)?;
            let now = self.read("freezer", "freezer.state")?;
            if now.trim() == wanted {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Busy(dir.to_path_buf()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        if self.dir("freezer").is_none() {
            return Ok(FreezerState::Thawed);
        }
        match self.read("freezer", "freezer.state") {
            Ok(s) if s.trim() == "FROZEN" => Ok(FreezerState::Frozen),
            Ok(_) => Ok(FreezerState::Thawed),
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(FreezerState::Thawed),
            Err(e) => Err(e),
        }
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        let cpuacct = parse_flat_keyed(&self.read("cpuacct", "cpuacct.stat").unwrap_or_default());
        // cpuacct.stat is in USER_HZ ticks; runc reports nanoseconds.
        let tick_ns = 1_000_000_000 / clock_ticks();
        stats.cpu.usage.user = cpuacct.get("user").copied().unwrap_or(0) * tick_ns;
        stats.cpu.usage.kernel = cpuacct.get("system").copied().unwrap_or(0) * tick_ns;
        stats.cpu.usage.total = self.read_u64("cpuacct", "cpuacct.usage");
        stats.cpu.usage.percpu =
            self.read("cpuacct", "cpuacct.usage_percpu").unwrap_or_default().split_whitespace().filter_map(|v| v.parse().ok()).collect();
        let cpu_stat = parse_flat_keyed(&self.read("cpu", "cpu.stat").unwrap_or_default());
        stats.cpu.throttling.periods = cpu_stat.get("nr_periods").copied().unwrap_or(0);
        stats.cpu.throttling.throttled_periods = cpu_stat.get("nr_throttled").copied().unwrap_or(0);
        stats.cpu.throttling.throttled_time = cpu_stat.get("throttled_time").copied().unwrap_or(0);

        let raw = parse_flat_keyed(&self.read("memory", "memory.stat").unwrap_or_default());
        stats.memory.cache = raw.get("total_cache").or_else(|| raw.get("cache")).copied().unwrap_or(0);
        for (entry, prefix) in
            [(&mut stats.memory.usage, "memory"), (&mut stats.memory.swap, "memory.memsw"), (&mut stats.memory.kernel, "memory.kmem")]
        {
            entry.usage = self.read_u64("memory", &format!("{prefix}.usage_in_bytes"));
            entry.max = self.read_u64("memory", &format!("{prefix}.max_usage_in_bytes"));
            entry.limit = self.read_u64("memory", &format!("{prefix}.limit_in_bytes"));
            entry.failcnt = self.read_u64("memory", &format!("{prefix}.failcnt"));
        }
        stats.memory.raw = raw;

        stats.pids.current = self.read_u64("pids", "pids.current");
        stats.pids.limit = self.read_u64("pids", "pids.max");
        stats.blkio.io_service_bytes_recursive = parse_blkio(&self.read("blkio", "blkio.throttle.io_service_bytes_recursive").unwrap_or_default());
        stats.blkio.io_serviced_recursive = parse_blkio(&self.read("blkio", "blkio.throttle.io_serviced_recursive").unwrap_or_default());
        Ok(stats)
    }

    fn kill_all(&self) -> Result<bool> {
        Ok(false)
    }

    fn clone_target(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }

    fn oom_kills(&self) -> Result<u64> {
        let control = parse_flat_keyed(&self.read("memory", "memory.oom_control")?);
        Ok(control.get("oom_kill").copied().unwrap_or(0))
    }

    fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        for dir in self.dirs.values() {
            remove_tree(dir, deadline)?;
        }
        Ok(())
    }

    fn exists(&self) -> bool {
        self.dirs.values().any(|d| d.exists())
    }

    fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        let mut seen = std::collections::BTreeSet::new();
        self.mounts
            .iter()
            .filter(|(_, mount)| seen.insert(mount.to_path_buf()))
            .filter_map(|(controller, mount)| {
                let name = mount.file_name()?.to_string_lossy().into_owned();
                Some((name, self.dirs.get(controller)?.clone()))
            })
            .collect()
    }
}

pub(crate) fn collect_procs(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", procs, e)),
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("readdir", dir, e))?.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_procs(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// Removes a cgroup directory and its children (deepest first); EBUSY means tasks are still exiting.
pub(crate) fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("readdir", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(Error::Busy(dir.to_path_buf())),
            Err(e) => return Err(Error::io("rmdir", dir, e)),
        }
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects; a failure returns -1, mapped to the usual 100.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cpu and cpuacct mounted together: `exec --cgroup cpu:sub` alone would be undone by the
    /// write to cpuacct's (the same) directory, so it is refused; one path for all is fine.
    #[test]
    fn co_mounted_controllers_take_one_sub_cgroup() {
        let root = std::env::temp_dir().join(format!("berth-cgroups-comount-{}", std::process::id()));
        let mount = root.join("cpu,cpuacct");
        std::fs::create_dir_all(mount.join("ctr/sub")).unwrap();
        let both = |path: PathBuf| [("cpu".to_string(), path.clone()), ("cpuacct".to_string(), path)].into_iter().collect();
        let cgroup = V1Cgroup { dirs: both(mount.join("ctr")), mounts: both(mount.clone()) };
        let only_cpu = cgroup.sub_cgroup(&[("cpu".to_string(), "sub".to_string())].into_iter().collect()).err().map(|e| e.to_string());
        let all = cgroup.sub_cgroup(&[(String::new(), "sub".to_string())].into_iter().collect()).map(|c| c.mount_sources());
        std::fs::remove_dir_all(&root).unwrap();
        assert!(only_cpu.is_some_and(|e| e.contains("mounted together")));
        assert!(all.is_ok());
    }
}
