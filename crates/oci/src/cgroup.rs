//! The container's cgroup, as berth-cgroups sees it, from a spec or a recorded container.

use crate::state::Container;
use crate::Result;
use berth_cgroups::Cgroup;
use oci_spec::runtime::{Linux, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};

/// The spec's resources, plus an allow rule for every device in `linux.devices`: a device the config
/// asks the runtime to create is one the container is meant to use (runc does the same).
pub(crate) fn resources_with_spec_devices(linux: &Linux) -> LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    let devices = linux.devices().as_deref().unwrap_or(&[]);
    if devices.is_empty() {
        return resources;
    }
    let mut rules = resources.devices().clone().unwrap_or_default();
    // A fifo is no device to the devices cgroup: it needs no rule.
    for device in devices.iter().filter(|d| d.typ() != LinuxDeviceType::P) {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(device.typ()));
        rule.set_major(Some(device.major()));
        rule.set_minor(Some(device.minor()));
        rule.set_access(Some("rwm".into()));
        rules.push(rule);
    }
    resources.set_devices(Some(rules));
    resources
}

pub(crate) fn for_spec(spec: &Spec, id: &str) -> Result<Box<dyn Cgroup>> {
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().as_deref());
    Ok(berth_cgroups::open(path, id)?)
}

pub fn open(container: &Container) -> Result<Box<dyn Cgroup>> {
    for_spec(&container.config, &container.id)
}
