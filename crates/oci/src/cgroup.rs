//! The container's cgroup, as berth-cgroups sees it, from a spec or a recorded container.

use crate::state::Container;
use crate::{Error, Result};
use berth_cgroups::{Cgroup, FreezerState};
use oci_spec::runtime::{Linux, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};

/// The spec's resources, plus a mknod rule for every device in `linux.devices`: the init creates
/// those nodes while already in its cgroup (runc applies the rules only after that). Access is the
/// spec's rules' alone, as with runc: `c 1:11 r` leaves such a device read-only. (runc allows
/// mknod of every device by default; this allows it for the spec's only.) The device rules are
/// always set, if only to the defaults: unset, berth-cgroups would leave them as they are.
pub(crate) fn resources_with_spec_devices(linux: &Linux) -> LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    let devices = linux.devices().as_deref().unwrap_or(&[]);
    let mut rules = resources.devices().clone().unwrap_or_default();
    // After an allow of every device that no deny follows, rules for some would only cost (a
    // privileged container lists every host device); a fifo is no device to the devices cgroup.
    let every = |r: &LinuxDeviceCgroup| {
        let any = |n: Option<i64>| n.is_none_or(|n| n < 0);
        r.allow()
            && matches!(r.typ(), None | Some(LinuxDeviceType::A))
            && any(r.major())
            && any(r.minor())
            && r.access().as_deref().is_none_or(|a| a.contains('m'))
    };
    let allows_all = rules.iter().rposition(every).is_some_and(|i| rules[i + 1..].iter().all(|r| r.allow()));
    for device in devices.iter().filter(|d| d.typ() != LinuxDeviceType::P && !allows_all) {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(device.typ()));
        rule.set_major(Some(device.major()));
        rule.set_minor(Some(device.minor()));
        rule.set_access(Some("m".into()));
        rules.push(rule);
    }
    resources.set_devices(Some(rules));
    resources
}

/// Where a container's cgroup came from, which decides what undoing a failed create removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Created,
    Existed,
    /// Rootless without delegation: no cgroup at all.
    None,
}

/// Opens the spec's cgroup and creates it. A user other than root whom nobody delegated a cgroup
/// to gets none (with a warning) when the spec sets no limits: the container then runs in the
/// caller's cgroup, as with runc's rootless mode.
pub(crate) fn create_for_spec(spec: &Spec, id: &str, driver: berth_cgroups::Driver) -> Result<(Box<dyn Cgroup>, Origin)> {
    let cgroup = for_spec(spec, id, driver)?;
    let origin = if cgroup.exists() { Origin::Existed } else { Origin::Created };
    match cgroup.create() {
        Ok(()) => Ok((cgroup, origin)),
        Err(e) if e.is_permission_denied() && !nix::unistd::geteuid().is_root() => {
            if let Some(limits) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()).filter(|r| sets_limits(r)) {
                let limits = serde_json::to_string(limits).unwrap_or_default();
                return Err(Error::Unsupported(format!("linux.resources {limits} need a cgroup, and none is delegated to this user ({e})")));
            }
            eprintln!("berth-oci: warning: no cgroup for container {id}: none is delegated to this user ({e}); it stays in the caller's cgroup");
            Ok((Box::new(Undelegated { init: 0 }), Origin::None))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `resources` asks for anything but device rules (a rootless container cannot make
/// device nodes anyway, and its spec may still list the defaults).
fn sets_limits(resources: &LinuxResources) -> bool {
    let mut without_devices = resources.clone();
    without_devices.set_devices(None);
    serde_json::to_value(&without_devices).is_ok_and(|v| v.as_object().is_some_and(|o| o.values().any(|v| !v.is_null())))
}

/// The cgroup of a container that has none (see [`create_for_spec`]): its processes are the init
/// and its descendants; nothing can be frozen, limited or counted.
struct Undelegated {
    init: i32,
}

impl Undelegated {
    fn unavailable(&self) -> berth_cgroups::Error {
        berth_cgroups::Error::Unsupported("the container has no cgroup (rootless, and none was delegated)".into())
    }
}

impl Cgroup for Undelegated {
    fn create(&self) -> berth_cgroups::Result<()> {
        Ok(())
    }
    fn apply(&self, resources: &LinuxResources) -> berth_cgroups::Result<()> {
        if sets_limits(resources) {
            return Err(self.unavailable());
        }
        Ok(())
    }
    fn add_process(&self, _pid: i32) -> berth_cgroups::Result<()> {
        Ok(())
    }
    fn sub_cgroup(&self, _paths: &std::collections::BTreeMap<String, String>) -> berth_cgroups::Result<Box<dyn Cgroup>> {
        Err(self.unavailable())
    }
    fn can_join_self(&self) -> bool {
        false
    }
    fn join_self(&self) -> berth_cgroups::Result<()> {
        Ok(())
    }
    fn processes(&self) -> berth_cgroups::Result<Vec<i32>> {
        Ok(crate::proc::descendants(self.init))
    }
    fn freeze(&self, _state: FreezerState) -> berth_cgroups::Result<()> {
        Err(self.unavailable())
    }
    fn freezer_state(&self) -> berth_cgroups::Result<FreezerState> {
        Ok(FreezerState::Thawed)
    }
    fn stats(&self) -> berth_cgroups::Result<berth_cgroups::Stats> {
        Err(self.unavailable())
    }
    fn kill_all(&self) -> berth_cgroups::Result<bool> {
        Ok(false)
    }
    fn clone_target(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }
    fn oom_kills(&self) -> berth_cgroups::Result<u64> {
        Ok(0)
    }
    fn remove(&self) -> berth_cgroups::Result<()> {
        Ok(())
    }
    fn exists(&self) -> bool {
        false
    }
    fn mount_sources(&self) -> Vec<(String, std::path::PathBuf)> {
        Vec::new()
    }
}

pub(crate) fn for_spec(spec: &Spec, id: &str, driver: berth_cgroups::Driver) -> Result<Box<dyn Cgroup>> {
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().as_deref());
    Ok(berth_cgroups::open_with(driver, path, id)?)
}

pub fn open(container: &Container) -> Result<Box<dyn Cgroup>> {
    if container.without_cgroup {
        return Ok(Box::new(Undelegated { init: container.pid }));
    }
    let driver = if container.systemd_cgroup { berth_cgroups::Driver::Systemd } else { berth_cgroups::Driver::Cgroupfs };
    for_spec(&container.config, &container.id, driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(config: serde_json::Value) -> Linux {
        serde_json::from_value(config).unwrap()
    }

    #[test]
    fn a_create_always_sets_device_rules_and_mknod_ones_only_where_needed() {
        let none = resources_with_spec_devices(&linux(serde_json::json!({})));
        assert_eq!(none.devices().as_deref(), Some(&[][..]), "unset, berth-cgroups would keep whatever the cgroup has");
        let fuse = serde_json::json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]);
        let denied =
            resources_with_spec_devices(&linux(serde_json::json!({"devices": fuse, "resources": {"devices": [{"allow": false, "access": "rwm"}]}})));
        let last = denied.devices().as_ref().unwrap().last().unwrap();
        assert_eq!((last.allow(), last.major(), last.minor(), last.access().as_deref()), (true, Some(10), Some(229), Some("m")));
        let privileged =
            resources_with_spec_devices(&linux(serde_json::json!({"devices": fuse, "resources": {"devices": [{"allow": true, "access": "rwm"}]}})));
        assert_eq!(privileged.devices().as_ref().unwrap().len(), 1, "after an allow of every device, nothing more");
        let granted = serde_json::json!([{"allow": true, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"}]);
        let privileged_and_given = resources_with_spec_devices(&linux(serde_json::json!({"devices": fuse, "resources": {"devices": granted}})));
        assert_eq!(privileged_and_given.devices().as_ref().unwrap().len(), 2, "nor after allows that follow it");
        let then_denied = serde_json::json!([{"allow": true, "access": "rwm"}, {"allow": false, "type": "c", "major": 10, "access": "rwm"}]);
        let denied_after = resources_with_spec_devices(&linux(serde_json::json!({"devices": fuse, "resources": {"devices": then_denied}})));
        assert_eq!(denied_after.devices().as_ref().unwrap().len(), 3, "a deny after it brings them back");
    }
}
