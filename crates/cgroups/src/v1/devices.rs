//! The v1 devices controller: the rule list written line by line to devices.deny/devices.allow.

use super::write;
use crate::devices::rules;
use crate::Result;
use oci_spec::runtime::LinuxDeviceCgroup;
use std::path::Path;

pub(super) fn apply(dir: &Path, spec_rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for rule in rules(spec_rules)? {
        write(dir, if rule.allow { "devices.allow" } else { "devices.deny" }, &rule.v1_line())?;
    }
    Ok(())
}

/// The rules the kernel lists: `a *:* rwm` alone where every device is allowed (the exceptions
/// denied then go unlisted), else each allowed entry. None where the cgroup is gone.
pub(crate) fn current(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("devices.list");
    match std::fs::read_to_string(&path) {
        Ok(list) => Ok(Some(list)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::Error::io("read", path, e)),
    }
}

/// Brings the rules back to `before`, a [`current`] list, after systemd rewrote them from its own
/// view: the entries that differ are denied or allowed one by one. "All" is written only where
/// the default itself changed: the kernel refuses it in a cgroup with children (a container that
/// runs containers of its own). Where every device is allowed, the exceptions denied are not
/// listed, so not restored either.
pub(crate) fn restore(dir: &Path, before: &str) -> Result<()> {
    let Some(now) = current(dir)? else { return Ok(()) };
    let allows_all = |list: &str| list.lines().any(|l| l.starts_with("a "));
    let entries = |list: &str| list.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>();
    let (wanted, found) = (entries(before), entries(&now));
    match (allows_all(before), allows_all(&now)) {
        (true, true) => Ok(()),
        (true, false) => write(dir, "devices.allow", "a"),
        (false, true) => {
            write(dir, "devices.deny", "a")?;
            wanted.iter().try_for_each(|entry| write(dir, "devices.allow", entry))
        }
        (false, false) => {
            // Extra ones first: a deny takes its access from an entry of the same device, which
            // the allow after it then makes whole again.
            found.iter().filter(|e| !wanted.contains(e)).try_for_each(|entry| write(dir, "devices.deny", entry))?;
            wanted.iter().filter(|e| !found.contains(e)).try_for_each(|entry| write(dir, "devices.allow", entry))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A devices cgroup of this test's own, with a child; removed however the test ends.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0.join("child"));
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no arguments and cannot fail.
        unsafe { libc::geteuid() }
    }

    fn sorted(list: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = list.lines().collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn a_restore_puts_back_each_entry_without_writing_all_in_a_cgroup_with_children() {
        let root = Path::new("/sys/fs/cgroup/devices");
        if !root.join("devices.list").exists() || euid() != 0 {
            eprintln!("skipped: no cgroup v1 devices hierarchy to write to");
            return;
        }
        let scratch = Scratch(root.join(format!("berth-test-restore-{}", std::process::id())));
        std::fs::create_dir(&scratch.0).unwrap();
        let dir = scratch.0.as_path();
        write(dir, "devices.deny", "a").unwrap();
        for entry in ["c *:229 rw", "c 1:3 rwm", "c 1:5 rwm"] {
            write(dir, "devices.allow", entry).unwrap();
        }
        std::fs::create_dir(dir.join("child")).unwrap();
        let before = current(dir).unwrap().unwrap();
        // What systemd makes of it: a wider entry, one gone, one with less access.
        write(dir, "devices.allow", "c *:* rw").unwrap();
        write(dir, "devices.deny", "c *:229 rw").unwrap();
        write(dir, "devices.deny", "c 1:5 m").unwrap();
        assert!(write(dir, "devices.deny", "a").is_err(), "the kernel refuses \"all\" with a child");
        restore(dir, &before).unwrap();
        assert_eq!(sorted(&current(dir).unwrap().unwrap()), sorted(&before));
        assert_eq!(current(&dir.join("gone")).unwrap(), None);
    }
}
