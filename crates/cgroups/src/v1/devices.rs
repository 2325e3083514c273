//! The v1 devices controller: deny everything, then allow the spec's rules plus the devices every
//! container needs (the same set runc and crun allow by default).

use super::write;
use crate::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::path::Path;

/// (type, major, minor, access) rules always allowed, so that /dev/null, a tty and friends work.
const DEFAULT_ALLOWED: &[(char, i64, i64, &str)] = &[
    ('c', 1, 3, "rwm"),   // null
    ('c', 1, 5, "rwm"),   // zero
    ('c', 1, 7, "rwm"),   // full
    ('c', 1, 8, "rwm"),   // random
    ('c', 1, 9, "rwm"),   // urandom
    ('c', 5, 0, "rwm"),   // tty
    ('c', 5, 1, "rwm"),   // console
    ('c', 5, 2, "rwm"),   // ptmx
    ('c', 136, -1, "rwm"), // pts/*
    ('c', 10, 200, "rwm"), // net/tun
];

pub(super) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    write(dir, "devices.deny", "a")?;
    for rule in rules {
        let line = rule_line(rule)?;
        write(dir, if rule.allow() { "devices.allow" } else { "devices.deny" }, &line)?;
    }
    for (kind, major, minor, access) in DEFAULT_ALLOWED {
        write(dir, "devices.allow", &format!("{kind} {major}:{} {access}", number(*minor)))?;
    }
    Ok(())
}

fn number(n: i64) -> String {
    if n < 0 {
        "*".into()
    } else {
        n.to_string()
    }
}

fn rule_line(rule: &LinuxDeviceCgroup) -> Result<String> {
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
    if kind == 'a' && rule.major().is_none() && rule.minor().is_none() {
        return Ok(format!("a *:* {access}"));
    }
    Ok(format!("{kind} {}:{} {access}", number(rule.major().unwrap_or(-1)), number(rule.minor().unwrap_or(-1))))
}
