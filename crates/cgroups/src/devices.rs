//! Device rules as both drivers need them: a deny-all, the spec's `linux.resources.devices`, then the
//! devices every container needs (the set runc and crun allow by default). The defaults come last,
//! as in runc, because specs (runc's and ours) start their rules with a deny-all of their own.
//! v1 writes them to devices.allow/deny; v2 compiles them into an eBPF program.

use crate::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    /// 'a' (all), 'b' or 'c'.
    pub kind: char,
    /// None is the wildcard.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// A non-empty subset of "rwm".
    pub access: String,
}

/// (type, major, minor): always allowed, rwm, so /dev/null, ttys and friends work.
const DEFAULT_ALLOWED: &[(char, Option<u32>, Option<u32>)] = &[
    ('c', Some(1), Some(3)),    // null
    ('c', Some(1), Some(5)),    // zero
    ('c', Some(1), Some(7)),    // full
    ('c', Some(1), Some(8)),    // random
    ('c', Some(1), Some(9)),    // urandom
    ('c', Some(5), Some(0)),    // tty
    ('c', Some(5), Some(1)),    // console
    ('c', Some(5), Some(2)),    // ptmx
    ('c', Some(136), None),     // pts/*
    ('c', Some(10), Some(200)), // net/tun
];

/// The full, ordered rule list for a container (the last matching rule decides).
pub(crate) fn rules(spec_rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>> {
    let mut rules = vec![DeviceRule { allow: false, kind: 'a', major: None, minor: None, access: "rwm".into() }];
    for rule in spec_rules {
        rules.push(from_spec(rule)?);
    }
    for (kind, major, minor) in DEFAULT_ALLOWED {
        rules.push(DeviceRule { allow: true, kind: *kind, major: *major, minor: *minor, access: "rwm".into() });
    }
    Ok(rules)
}

fn number(field: &'static str, n: Option<i64>) -> Result<Option<u32>> {
    match n {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None), // -1 is the spec's wildcard
        Some(n) => u32::try_from(n).map(Some).map_err(|_| Error::InvalidResource(field, n.to_string())),
    }
}

fn from_spec(rule: &LinuxDeviceCgroup) -> Result<DeviceRule> {
    let kind = match rule.typ() {
        None | Some(LinuxDeviceType::A) => 'a',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => return Err(Error::InvalidResource("devices.type", "p (fifos are not cgroup devices)".into())),
    };
    let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::InvalidResource("devices.access", access));
    }
    Ok(DeviceRule { allow: rule.allow(), kind, major: number("devices.major", rule.major())?, minor: number("devices.minor", rule.minor())?, access })
}

impl DeviceRule {
    /// The v1 devices.allow/deny line: "c 1:3 rwm", "a *:* rwm".
    pub(crate) fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_all_first_then_spec_then_defaults() {
        let mut spec = LinuxDeviceCgroup::default();
        spec.set_allow(true);
        spec.set_typ(Some(LinuxDeviceType::C));
        spec.set_major(Some(10));
        spec.set_minor(Some(-1));
        spec.set_access(Some("rw".into()));
        let rules = rules(&[spec]).unwrap();
        assert_eq!(rules[0].v1_line(), "a *:* rwm");
        assert_eq!(rules[1].v1_line(), "c 10:* rw");
        assert_eq!(rules.last().unwrap().v1_line(), "c 10:200 rwm");
    }

    #[test]
    fn bad_access_refused() {
        let mut spec = LinuxDeviceCgroup::default();
        spec.set_access(Some("rwx".into()));
        assert!(rules(&[spec]).is_err());
    }
}
