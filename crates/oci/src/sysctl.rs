//! Sysctls a container may set: only those its own namespaces isolate, with values that cannot
//! smuggle a second assignment (the CVE-2022-0811 class).

use oci_spec::runtime::LinuxNamespaceType;
use std::path::PathBuf;

const IPC_KEYS: &[&str] =
    &["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];

/// Checks one sysctl against the namespaces the container has.
pub fn check(key: &str, value: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<(), String> {
    if key.is_empty() || key.contains("..") || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
        return Err(format!("sysctl {key:?}: invalid name"));
    }
    if value.contains(['\n', '\0', '=', '+']) {
        return Err(format!("sysctl {key}: value {value:?} contains a separator"));
    }
    let key = key.replace('/', ".");
    let needs = if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(format!("sysctl {key} is not namespaced and cannot be set in a container"));
    };
    if !has(needs) {
        return Err(format!("sysctl {key} needs its own {needs:?} namespace"));
    }
    Ok(())
}

/// Where a (checked) sysctl lives under /proc/sys.
pub fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_only() {
        let all = |_: LinuxNamespaceType| true;
        let none = |_: LinuxNamespaceType| false;
        assert!(check("net.ipv4.ip_forward", "1", &all).is_ok());
        assert!(check("net.ipv4.ip_forward", "1", &none).is_err());
        assert!(check("kernel.shmmax", "100", &all).is_ok());
        assert!(check("kernel.core_pattern", "|/x", &all).is_err());
        assert!(check("vm.swappiness", "1", &all).is_err());
    }

    #[test]
    fn injection_refused() {
        let all = |_: LinuxNamespaceType| true;
        assert!(check("kernel.shm_rmid_forced", "1+kernel.core_pattern=|/evil", &all).is_err());
        assert!(check("net.ipv4.ip_forward", "1\nkernel.core_pattern=x", &all).is_err());
        assert!(check("net/../kernel/core_pattern", "x", &all).is_err());
    }
}
