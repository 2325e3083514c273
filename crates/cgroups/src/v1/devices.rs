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

/// The rules in force, as the kernel lists them: `a *:* rwm` alone when every device is allowed,
/// else each allowed entry.
pub(crate) fn current(dir: &Path) -> Result<String> {
    let path = dir.join("devices.list");
    std::fs::read_to_string(&path).map_err(|e| crate::Error::io("read", path, e))
}

/// Puts back what [`current`] read (after systemd rewrote the rules from its own view of them).
pub(crate) fn restore(dir: &Path, list: &str) -> Result<()> {
    if list.lines().any(|l| l.starts_with("a ")) {
        return write(dir, "devices.allow", "a");
    }
    write(dir, "devices.deny", "a")?;
    list.lines().filter(|l| !l.trim().is_empty()).try_for_each(|line| write(dir, "devices.allow", line))
}
