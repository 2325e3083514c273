//! The systemd driver (`--systemd-cgroup`), as runc's: the container's cgroup is a transient scope
//! that systemd makes and owns, named by runc's `slice:prefix:name` cgroupsPath convention
//! (`kubepods-besteffort.slice:cri-containerd:<id>` is `<prefix>-<name>.scope` in that slice).
//!
//! - The scope is started (`StartTransientUnit`, delegated) once the container's init exists,
//!   with it as its process; the resources systemd knows (memory, CPU weight and quota, tasks)
//!   go in as the unit's properties, so `systemctl show` tells the truth, and then every resource
//!   is written to the cgroup files as the cgroupfs driver writes them (devices, hugetlb, the
//!   unified map …), as runc does.
//! - Everything else (processes, freezing, stats, kill) is the cgroupfs driver's on the scope's
//!   directory: systemd delegated it.
//! - Removal stops the unit (`StopUnit`) and waits for its directory to go.

pub mod dbus;

use crate::devices::SystemdDevices;
use crate::path::CgroupPath;
use crate::{Cgroup, Error, FreezerState, Result};
use dbus::{Connection, Value};
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a started scope may take to hold its process, and a stopped one to go.
const UNIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A container's unit: its slice, its scope's name, and its directory below the hierarchy's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    pub slice: String,
    pub scope: String,
    pub path: CgroupPath,
}

/// Characters systemd takes in unit names (besides `\`-escapes, which nobody passes here).
fn valid_unit_part(part: &str) -> bool {
    !part.is_empty() && part.len() <= 200 && part.bytes().all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
}

/// `a-b-c.slice` → `a.slice/a-b.slice/a-b-c.slice` (each dash a level, as systemd nests them);
/// `-.slice` is the root.
fn expand_slice(slice: &str) -> Result<PathBuf> {
    let shown = slice.to_string();
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(Error::InvalidPath(shown, "a systemd slice name ends with .slice"));
    };
    if stem == "-" {
        return Ok(PathBuf::new());
    }
    if !valid_unit_part(slice) || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(Error::InvalidPath(shown, "not a systemd slice name"));
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// runc's `slice:prefix:name` (an empty slice is system.slice); empty altogether, the
/// container's id in system.slice with berth's prefix.
pub(crate) fn parse(cgroups_path: Option<&Path>, id: &str) -> Result<Unit> {
    let text = cgroups_path.map(|p| p.to_string_lossy().into_owned()).filter(|t| !t.is_empty()).unwrap_or_else(|| format!("system.slice:berth:{id}"));
    let parts: Vec<&str> = text.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(Error::InvalidPath(text.clone(), "the systemd driver takes slice:prefix:name"));
    };
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    if name.ends_with(".slice") {
        return Err(Error::InvalidPath(text.clone(), "a container's unit is a scope, not a slice"));
    }
    let scope = if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") };
    if !valid_unit_part(name) || !(prefix.is_empty() || valid_unit_part(prefix)) {
        return Err(Error::InvalidPath(text.clone(), "the prefix and name are letters, digits, : _ . -"));
    }
    let components = expand_slice(slice)?.join(&scope);
    Ok(Unit { slice: slice.to_string(), scope, path: CgroupPath { absolute: true, components } })
}

/// systemd's answer for a unit it does not have (any more).
fn gone(error: &str) -> bool {
    error.contains("NoSuchUnit") || error.contains("not loaded")
}

/// Forgets a failed unit of this name (one whose init was killed stays listed, and a later
/// scope of the same name would be refused); a unit systemd does not have is fine.
pub(crate) fn reset_failed(scope: &str) -> Result<()> {
    let mut connection = Connection::system().map_err(|e| Error::Systemd(format!("ResetFailedUnit {scope}: {e}")))?;
    match connection.call("ResetFailedUnit", &[Value::Str(scope.to_string())]) {
        Err(dbus::DbusError::Remote { name, message }) if gone(&format!("{name} {message}")) => Ok(()),
        other => other.map_err(|e| Error::Systemd(format!("ResetFailedUnit {scope}: {e}"))),
    }
}

/// The properties systemd owns of `resources`, named for the hierarchy (`v2`, or v1's names).
fn properties(resources: &LinuxResources, v2: bool) -> Vec<(String, Value)> {
    let mut properties = Vec::new();
    let mut set = |name: &str, value: u64| properties.push((name.to_string(), Value::U64(value)));
    // -1 is "no limit" in the spec; systemd's is u64::MAX ("infinity").
    let limit = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    if let Some(memory) = resources.memory() {
        if let Some(max) = memory.limit() {
            set(if v2 { "MemoryMax" } else { "MemoryLimit" }, limit(max));
        }
        if let (Some(low), true) = (memory.reservation(), v2) {
            set("MemoryLow", limit(low));
        }
        // The spec's swap is memory plus swap; v2's swap limit is the swap alone.
        if let (Some(swap), Some(max), true) = (memory.swap(), memory.limit(), v2) {
            set("MemorySwapMax", if swap < 0 { u64::MAX } else { swap.saturating_sub(max).max(0) as u64 });
        }
    }
    if let Some(cpu) = resources.cpu() {
        if let Some(shares) = cpu.shares() {
            match v2 {
                true => set("CPUWeight", crate::v2::shares_to_weight(shares)),
                false => set("CPUShares", shares),
            }
        }
        if let Some(quota) = cpu.quota().filter(|q| *q > 0) {
            let period = cpu.period().filter(|p| *p > 0).unwrap_or(100_000);
            // systemd keeps a per-second quota, in whole 10 ms (as runc rounds it, up).
            let per_second = (quota as u64 * 1_000_000 / period).next_multiple_of(10_000);
            set("CPUQuotaPerSecUSec", per_second);
            // Only when not the kernel's default: systemd before 242 refuses the property.
            if period != 100_000 {
                set("CPUQuotaPeriodUSec", period);
            }
        }
    }
    if let Some(pids) = resources.pids() {
        set("TasksMax", if pids.limit() <= 0 { u64::MAX } else { pids.limit() as u64 });
    }
    // The same rules the cgroup files get (a bad rule is refused there), when they are given: an
    // empty DeviceAllow first clears what an earlier call gave the unit.
    if let Some(Ok(rules)) = resources.devices().as_deref().map(crate::devices::rules) {
        let (policy, entries) = match crate::devices::for_systemd(&rules, v2) {
            SystemdDevices::AllowAll => ("auto", None),
            SystemdDevices::Strict(entries) => ("strict", Some(entries)),
        };
        properties.push(("DevicePolicy".to_string(), Value::Str(policy.to_string())));
        properties.push(("DeviceAllow".to_string(), Value::DeviceAllow(Vec::new())));
        properties.extend(entries.map(|e| ("DeviceAllow".to_string(), Value::DeviceAllow(e))));
    }
    properties
}

pub(crate) struct SystemdCgroup {
    unit: Unit,
    /// The scope's directory, as the cgroupfs driver drives it.
    fs: Box<dyn Cgroup>,
    /// The directory systemd makes for the scope and removes when it stops it: on v1 the one in
    /// its own (name=systemd) hierarchy; the hierarchies it does not manage are `fs`'s to remove.
    scope_dir: PathBuf,
    v2: bool,
    /// Resources given before the scope exists (create applies them before the init runs).
    pending: Mutex<Option<LinuxResources>>,
}

impl SystemdCgroup {
    pub(crate) fn new(unit: Unit, fs: Box<dyn Cgroup>, scope_dir: PathBuf, v2: bool) -> SystemdCgroup {
        SystemdCgroup { unit, fs, scope_dir, v2, pending: Mutex::new(None) }
    }

    fn call(&self, member: &str, args: &[Value]) -> Result<()> {
        let mut connection = Connection::system().map_err(|e| self.error(member, e))?;
        connection.call(member, args).map_err(|e| self.error(member, e))
    }

    fn error(&self, member: &str, e: dbus::DbusError) -> Error {
        Error::Systemd(format!("{member} {}: {e}", self.unit.scope))
    }

    /// The scope, holding `pid`, with the properties of the pending resources; returns once
    /// systemd has moved `pid` into it.
    fn start(&self, pid: i32) -> Result<()> {
        let resources = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut props = vec![
            ("Description".to_string(), Value::Str(format!("berth container {}", self.unit.scope))),
            ("Slice".to_string(), Value::Str(self.unit.slice.clone())),
            ("Delegate".to_string(), Value::Bool(true)),
            // Stopped with its slice, not ordered against shutdown's targets.
            ("DefaultDependencies".to_string(), Value::Bool(false)),
            ("PIDs".to_string(), Value::U32s(vec![pid as u32])),
        ];
        props.extend(resources.as_ref().map(|r| properties(r, self.v2)).unwrap_or_default());
        let args = [Value::Str(self.unit.scope.clone()), Value::Str("replace".into()), Value::Properties(props), Value::NoAuxUnits];
        match self.call("StartTransientUnit", &args) {
            // A failed scope of this name is still listed (an earlier container of the same
            // id): forgotten, then asked again, as runc does.
            Err(Error::Systemd(e)) if e.contains("UnitExists") => {
                reset_failed(&self.unit.scope)?;
                self.call("StartTransientUnit", &args)?;
            }
            other => other?,
        }
        // The reply comes once the job is queued; the move follows when it runs.
        let wanted = format!("/{}", self.unit.path.components.display());
        let deadline = Instant::now() + UNIT_TIMEOUT;
        loop {
            let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if cgroups.lines().any(|l| l.split(':').nth(2) == Some(wanted.as_str())) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Systemd(format!("{}: process {pid} not moved into it within {} s", self.unit.scope, UNIT_TIMEOUT.as_secs())));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.v2 {
            // systemd on v1 makes the scope in the hierarchies it manages only (cpu, memory,
            // pids, devices, blkio): the others (freezer, cpuset, hugetlb …) are made and joined
            // here, as runc joins them.
            self.fs.create()?;
            self.fs.add_process(pid)?;
        }
        match resources {
            Some(resources) => self.fs.apply(&resources),
            None => Ok(()),
        }
    }
}

impl Cgroup for SystemdCgroup {
    /// Nothing yet: systemd makes the scope when it has a process to hold ([`Cgroup::add_process`]).
    fn create(&self) -> Result<()> {
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        if !self.scope_dir.exists() {
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(resources.clone());
            return Ok(());
        }
        let props = properties(resources, self.v2);
        if props.is_empty() {
            return self.fs.apply(resources);
        }
        let set = || self.call("SetUnitProperties", &[Value::Str(self.unit.scope.clone()), Value::Bool(true), Value::Properties(props.clone())]);
        if self.v2 {
            set()?;
            return self.fs.apply(resources);
        }
        // On v1 systemd rewrites the devices cgroup from its own view of the rules (never
        // narrower, sometimes wider) whenever a property changes. berth's exact rules follow in
        // the same freeze: the new ones, or those in force before when none are given.
        let devices = self.fs.mount_sources().into_iter().find(|(name, _)| name == "devices").map(|(_, dir)| dir);
        crate::devices::frozen_while(&*self.fs, || {
            let before = match (&devices, resources.devices()) {
                (Some(dir), None) => crate::v1::devices::current(dir)?,
                _ => None,
            };
            set()?;
            self.fs.apply(resources)?;
            match (&devices, before) {
                (Some(dir), Some(list)) => crate::v1::devices::restore(dir, &list),
                _ => Ok(()),
            }
        })
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        match self.scope_dir.exists() {
            false => self.start(pid),
            true => self.fs.add_process(pid),
        }
    }

    fn can_join_self(&self) -> bool {
        false
    }

    fn join_self(&self) -> Result<()> {
        Err(Error::Unsupported("the systemd driver moves processes through systemd".into()))
    }

    fn processes(&self) -> Result<Vec<i32>> {
        self.fs.processes()
    }

    fn freeze(&self, state: FreezerState) -> Result<()> {
        self.fs.freeze(state)
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        self.fs.freezer_state()
    }

    fn stats(&self) -> Result<crate::Stats> {
        self.fs.stats()
    }

    fn kill_all(&self) -> Result<bool> {
        self.fs.kill_all()
    }

    /// The init is moved by systemd, not cloned into a directory that does not exist yet.
    fn clone_target(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }

    fn oom_kills(&self) -> Result<u64> {
        self.fs.oom_kills()
    }

    /// Stops the unit (systemd ends what is left in it and removes its directories) and waits
    /// for its directory to go; a unit systemd no longer has is gone already. Then what systemd
    /// does not remove: on v1, the hierarchies it does not manage, made by [`Self::start`].
    fn remove(&self) -> Result<()> {
        let scope = Value::Str(self.unit.scope.clone());
        let stopped = match self.call("StopUnit", &[scope.clone(), Value::Str("replace".into())]) {
            Err(Error::Systemd(e)) if gone(&e) => Ok(()),
            other => other,
        };
        let deadline = Instant::now() + UNIT_TIMEOUT;
        while stopped.is_ok() && self.scope_dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A scope that failed (a process had to be killed) stays listed until reset.
        let _ = self.call("ResetFailedUnit", &[scope]);
        let removed = self.fs.remove();
        stopped.and(removed)
    }

    /// Whether systemd has the scope: on v1, hierarchies made by hand and left by a crash do not
    /// make a later container's scope count as someone else's ([`Self::remove`] takes them too).
    fn exists(&self) -> bool {
        self.scope_dir.exists()
    }

    fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        self.fs.mount_sources()
    }

    fn sub_cgroup(&self, paths: &std::collections::BTreeMap<String, String>) -> Result<Box<dyn Cgroup>> {
        self.fs.sub_cgroup(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    #[test]
    fn runc_style_paths_name_a_scope_in_its_slice() {
        let unit = parse(Some(Path::new("kubepods-besteffort-pod12.slice:cri-containerd:abc")), "abc").unwrap();
        assert_eq!((unit.slice.as_str(), unit.scope.as_str()), ("kubepods-besteffort-pod12.slice", "cri-containerd-abc.scope"));
        assert_eq!(
            unit.path.components,
            PathBuf::from("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope")
        );
        let default = parse(None, "x1").unwrap();
        assert_eq!((default.slice.as_str(), default.scope.as_str()), ("system.slice", "berth-x1.scope"));
        assert_eq!(parse(Some(Path::new(":p:n")), "n").unwrap().path.components, PathBuf::from("system.slice/p-n.scope"));
        assert_eq!(parse(Some(Path::new("-.slice:p:n")), "n").unwrap().path.components, PathBuf::from("p-n.scope"));
        for bad in
            ["/berth/x", "a:b", "a.slice:p:n:m", "x:p:n", "a--b.slice:p:n", "-a.slice:p:n", "a.slice:p:../x", "a.slice:p:y.slice", "a/b.slice:p:n"]
        {
            assert!(parse(Some(Path::new(bad)), "n").is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_become_the_properties_systemd_owns() {
        let resources = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).swap(96i64 << 20).build().unwrap())
            .cpu(LinuxCpuBuilder::default().shares(1024u64).quota(50_000i64).period(100_000u64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        let v2: std::collections::BTreeMap<String, Value> = properties(&resources, true).into_iter().collect();
        assert_eq!(v2["MemoryMax"], Value::U64(64 << 20));
        assert_eq!(v2["MemorySwapMax"], Value::U64(32 << 20), "v2's swap is the swap alone");
        assert_eq!(v2["CPUWeight"], Value::U64(39));
        assert_eq!(v2["CPUQuotaPerSecUSec"], Value::U64(500_000));
        assert_eq!(v2["TasksMax"], Value::U64(u64::MAX), "-1 is infinity");
        // No device rules given, none sent: the unit keeps those it has.
        let device_properties =
            |resources: &LinuxResources| -> Vec<_> { properties(resources, true).into_iter().filter(|(n, _)| n.starts_with("Device")).collect() };
        assert_eq!(device_properties(&resources), []);
        // Given (none but the defaults): strict, cleared, then what the files get.
        let mut resources = resources;
        resources.set_devices(Some(Vec::new()));
        let devices = device_properties(&resources);
        assert_eq!(devices[0], ("DevicePolicy".to_string(), Value::Str("strict".into())));
        assert_eq!(devices[1], ("DeviceAllow".to_string(), Value::DeviceAllow(Vec::new())));
        let Value::DeviceAllow(allowed) = &devices[2].1 else { panic!("{devices:?}") };
        assert!(allowed.contains(&("/dev/char/1:3".into(), "rwm".into())), "{allowed:?}");
        let v1: std::collections::BTreeMap<String, Value> = properties(&resources, false).into_iter().collect();
        assert_eq!((v1.get("MemoryLimit"), v1.get("CPUShares"), v1.get("MemoryMax")), (Some(&Value::U64(64 << 20)), Some(&Value::U64(1024)), None));
    }
}
