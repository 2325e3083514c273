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
