//! The container's cgroup, as berth-cgroups sees it, from a spec or a recorded container.

use crate::state::Container;
use crate::Result;
use berth_cgroups::Cgroup;
use oci_spec::runtime::Spec;

pub(crate) fn for_spec(spec: &Spec, id: &str) -> Result<Box<dyn Cgroup>> {
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().as_deref());
    Ok(berth_cgroups::open(path, id)?)
}

pub fn open(container: &Container) -> Result<Box<dyn Cgroup>> {
    for_spec(&container.config, &container.id)
}
