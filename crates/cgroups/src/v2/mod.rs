//! The cgroup v2 driver: one directory in the unified hierarchy; controllers enabled from the root
//! down through cgroup.subtree_control; devices through an eBPF program.

mod bpf;
mod resources;

pub(crate) use resources::shares_to_weight;

use crate::path::CgroupPath;
use crate::stats::{parse_flat_keyed, BlkioEntry, Stats};
use crate::{Cgroup, Error, FreezerState, Result};
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct V2Cgroup {
    root: PathBuf,
    dir: PathBuf,
}

pub(crate) use crate::write;

impl V2Cgroup {
    pub(crate) fn new(root: PathBuf, path: &CgroupPath) -> Result<Self> {
        let base = if path.absolute { root.clone() } else { root.join(own_cgroup()?.trim_start_matches('/')) };
        Ok(V2Cgroup { dir: base.join(&path.components), root })
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    fn read_u64(&self, file: &str) -> u64 {
        self.read(file).trim().parse().unwrap_or(0)
    }

    /// Enables every available controller in each ancestor's subtree_control, so the leaf gets them.
    fn enable_controllers(&self) -> Result<()> {
        let available =
            std::fs::read_to_string(self.root.join("cgroup.controllers")).map_err(|e| Error::io("read", self.root.join("cgroup.controllers"), e))?;
        let enable: String = available.split_whitespace().map(|c| format!("+{c} ")).collect();
        let mut dir = self.root.clone();
        let relative = self.dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        for component in relative.components() {
            // An ancestor holding processes cannot delegate (no internal processes): the write fails
            // and the leaf lacks those controllers; writing a resource then reports the missing file.
            let _ = write(&dir, "cgroup.subtree_control", enable.trim());
            dir.push(component);
        }
        Ok(())
    }
}

/// The caller's own cgroup ("0::<path>" in /proc/self/cgroup).
fn own_cgroup() -> Result<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| Error::io("read", "/proc/self/cgroup", e))?;
    Ok(text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").to_string())
}

impl Cgroup for V2Cgroup {
    fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("mkdir", &self.dir, e))?;
        self.enable_controllers()
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        resources::apply(&self.dir, resources)?;
        match resources.devices() {
            // The new program is attached before the old one goes: no gap to freeze over.
            Some(rules) => bpf::apply(&self.dir, &crate::devices::rules(rules)?),
            None => Ok(()),
        }
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn sub_cgroup(&self, paths: &std::collections::BTreeMap<String, String>) -> Result<Box<dyn Cgroup>> {
        let (Some(path), 1) = (paths.get(""), paths.len()) else {
            return Err(Error::InvalidSubCgroup(format!("{paths:?}"), "cgroup v2 has one hierarchy: give --cgroup PATH, without a controller"));
        };
        Ok(Box::new(V2Cgroup { dir: crate::existing_below(&self.dir, path)?, root: self.root.clone() }))
    }

    /// v2 writes of "0" to cgroup.procs still take the global lock; creation uses
    /// CLONE_INTO_CGROUP instead.
    fn can_join_self(&self) -> bool {
        false
    }

    fn join_self(&self) -> Result<()> {
        Err(Error::Unsupported("cgroup v2 joins by CLONE_INTO_CGROUP or cgroup.procs".into()))
    }

    fn processes(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        super::v1::collect_procs(&self.dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn freeze(&self, state: FreezerState) -> Result<()> {
        let (value, frozen) = match state {
            FreezerState::Frozen => ("1", "frozen 1"),
            FreezerState::Thawed => ("0", "frozen 0"),
        };
        write(&self.dir, "cgroup.freeze", value)?;
        // The kernel reports completion in cgroup.events once every task has stopped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.read("cgroup.events").lines().any(|l| l == frozen) {
            if Instant::now() > deadline {
                return Err(Error::Busy(self.dir.clone()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        Ok(if self.read("cgroup.freeze").trim() == "1" { FreezerState::Frozen } else { FreezerState::Thawed })
    }

    fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        let cpu = parse_flat_keyed(&self.read("cpu.stat"));
        let get = |map: &std::collections::BTreeMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
        stats.cpu.usage.total = get(&cpu, "usage_usec") * 1000;
        stats.cpu.usage.user = get(&cpu, "user_usec") * 1000;
        stats.cpu.usage.kernel = get(&cpu, "system_usec") * 1000;
        stats.cpu.throttling.periods = get(&cpu, "nr_periods");
        stats.cpu.throttling.throttled_periods = get(&cpu, "nr_throttled");
        stats.cpu.throttling.throttled_time = get(&cpu, "throttled_usec") * 1000;
        let raw = parse_flat_keyed(&self.read("memory.stat"));
        stats.memory.cache = get(&raw, "file");
        stats.memory.usage.usage = self.read_u64("memory.current");
        stats.memory.usage.max = self.read_u64("memory.peak");
        stats.memory.usage.limit = self.read("memory.max").trim().parse().unwrap_or(u64::MAX);
        stats.memory.swap.usage = self.read_u64("memory.swap.current");
        stats.memory.swap.limit = self.read("memory.swap.max").trim().parse().unwrap_or(u64::MAX);
        let events = parse_flat_keyed(&self.read("memory.events"));
        stats.memory.usage.failcnt = get(&events, "max");
        stats.memory.raw = raw;
        stats.pids.current = self.read_u64("pids.current");
        stats.pids.limit = self.read("pids.max").trim().parse().unwrap_or(0);
        for line in self.read("io.stat").lines() {
            let mut fields = line.split_whitespace();
            let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else { continue };
            let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else { continue };
                let Ok(value) = value.parse() else { continue };
                let (list, op) = match key {
                    "rbytes" => (&mut stats.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut stats.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut stats.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut stats.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry { major, minor, op: op.into(), value });
            }
        }
        Ok(stats)
    }

    fn kill_all(&self) -> Result<bool> {
        if !self.dir.join("cgroup.kill").exists() {
            return Ok(false);
        }
        write(&self.dir, "cgroup.kill", "1")?;
        Ok(true)
    }

    fn clone_target(&self) -> Option<std::os::fd::OwnedFd> {
        // Failing to open only loses the fast path: the caller then moves the child itself.
        std::fs::File::open(&self.dir).ok().map(std::os::fd::OwnedFd::from)
    }

    fn oom_kills(&self) -> Result<u64> {
        let path = self.dir.join("memory.events");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", path, e))?;
        Ok(parse_flat_keyed(&text).get("oom_kill").copied().unwrap_or(0))
    }

    fn remove(&self) -> Result<()> {
        super::v1::remove_tree(&self.dir, Instant::now() + REMOVE_TIMEOUT)
    }

    fn exists(&self) -> bool {
        self.dir.exists()
    }

    fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        // One hierarchy: the container's cgroup mount is its own directory, not a tmpfs of many.
        vec![(String::new(), self.dir.clone())]
    }
}
