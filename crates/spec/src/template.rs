//! The starting config.json (`berth-oci spec`, and the base berthd builds containers' specs on):
//! runc's defaults, our seccomp profile, no inheritable or ambient capabilities, devices denied.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = if rootless {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Spec::rootless(uid, gid)
    } else {
        Spec::default()
    };
    // The version runc's `spec` writes: this config uses nothing newer, and older runtimes (crun 1.8
    // refuses "1.2.0") then accept the same bundle, which side-by-side use depends on.
    spec.set_version("1.0.2-dev".to_string());
    spec.set_hostname(Some("berth".into()));
    // Inheritable and ambient capabilities survive execve of unprivileged binaries (CVE-2022-29162
    // class): the default spec grants none.
    if let Some(caps) = spec.process_mut().as_mut().and_then(|p| p.capabilities().clone()) {
        let mut caps = caps;
        caps.set_inheritable(None);
        caps.set_ambient(None);
        spec.process_mut().as_mut().map(|p| p.set_capabilities(Some(caps)));
    }
    // Our default seccomp profile, fitted to the spec's bounding set.
    let bounding = spec.process().as_ref().and_then(|p| p.capabilities().as_ref()).and_then(|c| c.bounding().clone()).unwrap_or_default();
    if let Some(linux) = spec.linux_mut().as_mut() {
        linux.set_seccomp(Some(crate::seccomp::default_profile(&bounding)));
    }
    if !rootless {
        // Deny every device by default; the runtime adds the standard ones back.
        let deny_all = LinuxDeviceCgroup::default();
        let mut deny_all = deny_all;
        deny_all.set_allow(false);
        deny_all.set_typ(Some(LinuxDeviceType::A));
        deny_all.set_access(Some("rwm".into()));
        if let Some(resources) = spec.linux_mut().as_mut().and_then(|l| l.resources_mut().as_mut()) {
            resources.set_devices(Some(vec![deny_all]));
        }
    }
    spec
}
