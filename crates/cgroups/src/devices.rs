//! Device rules as both drivers need them: a deny-all, the spec's `linux.resources.devices`, then the
//! devices every container needs (the set runc and crun allow by default). The defaults come last,
//! as in runc, because specs (runc's and ours) start their rules with a deny-all of their own.
//! v1 writes them to devices.allow/deny; v2 compiles them into an eBPF program.

use crate::{Cgroup, Error, FreezerState, Result};
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

/// Runs `rewrite`, a v1 rewrite of the cgroup's device rules (berth's or systemd's, which start
/// over: every device denied, or allowed, then each exception), with the cgroup's processes
/// frozen if any run, so that none of their opens fails in between (runc's systemd driver freezes
/// too). Never with the caller inside, which nothing would thaw. A freeze that fails is undone
/// and the rewrite goes on.
pub(crate) fn frozen_while<T>(cgroup: &dyn Cgroup, rewrite: impl FnOnce() -> Result<T>) -> Result<T> {
    let me = std::process::id() as i32;
    let running =
        cgroup.freezer_state().is_ok_and(|s| s == FreezerState::Thawed) && cgroup.processes().is_ok_and(|p| !p.is_empty() && !p.contains(&me));
    let thaw = running && {
        let frozen = cgroup.freeze(FreezerState::Frozen);
        if frozen.is_err() {
            // A freeze that timed out stays FREEZING.
            let _ = cgroup.freeze(FreezerState::Thawed);
        }
        frozen.is_ok()
    };
    let result = rewrite();
    if thaw {
        // Tried twice: a container left frozen is worse than a failed update. Where both fail,
        // the rewrite's error says more.
        let thawed = cgroup.freeze(FreezerState::Thawed).or_else(|_| cgroup.freeze(FreezerState::Thawed));
        return result.and_then(|r| thawed.map(|()| r));
    }
    result
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

/// What systemd is told of a rule list (`DevicePolicy=`, `DeviceAllow=`), as runc tells it: its
/// view of the unit then tells the truth, and what it writes to the scope's cgroup itself (its
/// own eBPF program on v2 after a daemon-reload, devices.allow on v1 at each property change)
/// keeps the container's rules. systemd takes allow lists only, so the list is each allowed
/// (type, major, minor) left after the rules in order, read as the hierarchy reads them:
/// - v1: a rule of type `a` is every device, whatever its numbers; a deny takes its access away
///   from the entry of exactly its type and numbers (the kernel's exceptions);
/// - v2 (berth's eBPF program): a rule matches a request whose access bits are all in its own,
///   so a deny ends an entry it covers only when its access holds all of the entry's.
///
/// Where that cannot be said exactly, it says more, never less: an entry a deny only partly
/// takes stays whole, denies after an allow-all leave no list at all (`auto`), and a `*:N`
/// entry, which systemd has no name for, becomes its type's wildcard. berth's own rules (v1's
/// files, v2's eBPF program) are written after systemd's, at create and at each update (on v1,
/// the rules in force before, where an update gives none).
#[derive(Debug, PartialEq)]
pub(crate) enum SystemdDevices {
    /// `DevicePolicy=auto`, no `DeviceAllow=`: every device.
    AllowAll,
    /// `DevicePolicy=strict` and these (path or `char-N`/`block-*` group, access).
    Strict(Vec<(String, String)>),
}

pub(crate) fn for_systemd(rules: &[DeviceRule], v2: bool) -> SystemdDevices {
    let mut allow_all = false;
    let mut allowed: Vec<DeviceRule> = Vec::new();
    for rule in rules {
        let full = "rwm".chars().all(|c| rule.access.contains(c));
        let everything = rule.kind == 'a' && (!v2 || (rule.major.is_none() && rule.minor.is_none() && full));
        if everything {
            allow_all = rule.allow;
            allowed.clear();
            continue;
        }
        if rule.allow {
            let kinds: &[char] = if rule.kind == 'a' { &['c', 'b'] } else { &[rule.kind] };
            for kind in kinds {
                allowed.push(DeviceRule { kind: *kind, ..rule.clone() });
            }
            continue;
        }
        for entry in &mut allowed {
            if v2 {
                let covers = (rule.kind == 'a' || rule.kind == entry.kind)
                    && (rule.major.is_none() || rule.major == entry.major)
                    && (rule.minor.is_none() || rule.minor == entry.minor);
                if covers && entry.access.chars().all(|c| rule.access.contains(c)) {
                    entry.access.clear();
                }
            } else if (rule.kind, rule.major, rule.minor) == (entry.kind, entry.major, entry.minor) {
                entry.access.retain(|c| !rule.access.contains(c));
            }
        }
        allowed.retain(|entry| !entry.access.is_empty());
    }
    if allow_all {
        return SystemdDevices::AllowAll;
    }
    let mut entries: Vec<(String, String)> = Vec::new();
    for entry in allowed {
        let group = if entry.kind == 'b' { "block" } else { "char" };
        let name = match (entry.major, entry.minor) {
            (Some(major), Some(minor)) => format!("/dev/{group}/{major}:{minor}"),
            (Some(major), None) => format!("{group}-{major}"),
            (None, _) => format!("{group}-*"),
        };
        // systemd keeps one entry per name, the last one given: one name's accesses are merged.
        match entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, access)) => *access = "rwm".chars().filter(|c| access.contains(*c) || entry.access.contains(*c)).collect(),
            None => entries.push((name, entry.access)),
        }
    }
    SystemdDevices::Strict(entries)
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

    fn spec_rule(allow: bool, typ: LinuxDeviceType, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(allow);
        rule.set_typ(Some(typ));
        rule.set_major(Some(major));
        rule.set_minor(Some(minor));
        rule.set_access(Some(access.into()));
        rule
    }

    #[test]
    fn systemd_is_told_the_allowed_devices_never_fewer() {
        let strict = |rules: &[LinuxDeviceCgroup], v2: bool| match for_systemd(&self::rules(rules).unwrap(), v2) {
            SystemdDevices::Strict(entries) => entries,
            SystemdDevices::AllowAll => panic!("allow-all for {rules:?}"),
        };
        let entry = |name: &str, access: &str| (name.to_string(), access.to_string());
        for v2 in [true, false] {
            let plain = strict(&[spec_rule(true, LinuxDeviceType::C, 10, 229, "rw"), spec_rule(true, LinuxDeviceType::B, 8, -1, "r")], v2);
            assert_eq!(plain[..2], [entry("/dev/char/10:229", "rw"), entry("block-8", "r")]);
            assert!(plain.contains(&entry("/dev/char/1:3", "rwm")) && plain.contains(&entry("char-136", "rwm")), "the defaults: {plain:?}");
            // A deny that takes only part of an entry's access, or covers it without being it
            // (v1), leaves it whole: more, never less.
            let partly = strict(&[spec_rule(true, LinuxDeviceType::C, 10, 229, "rwm"), spec_rule(false, LinuxDeviceType::C, 10, -1, "wm")], v2);
            assert!(partly.contains(&entry("/dev/char/10:229", "rwm")), "{partly:?}");
            // A deny that takes all of it ends it.
            let gone = strict(&[spec_rule(true, LinuxDeviceType::C, 10, 229, "r"), spec_rule(false, LinuxDeviceType::A, -1, -1, "r")], v2);
            assert!(!gone.iter().any(|(n, _)| n == "/dev/char/10:229"), "{gone:?}");
            // A deny narrower than an allowed wildcard leaves the wildcard.
            let wider = strict(&[spec_rule(true, LinuxDeviceType::C, -1, -1, "rwm"), spec_rule(false, LinuxDeviceType::C, 1, 3, "rwm")], v2);
            assert!(wider.contains(&entry("char-*", "rwm")), "{wider:?}");
            // Two entries of one name (systemd keeps the last) are one, with both accesses.
            let merged = strict(&[spec_rule(true, LinuxDeviceType::C, 10, 229, "wm"), spec_rule(true, LinuxDeviceType::C, 10, 229, "r")], v2);
            assert_eq!(merged.iter().filter(|(n, _)| n == "/dev/char/10:229").collect::<Vec<_>>(), [&entry("/dev/char/10:229", "rwm")]);
            // An allow-all, with or without denies after it: no list.
            let mut all = spec_rule(true, LinuxDeviceType::A, -1, -1, "rwm");
            all.set_typ(None);
            assert_eq!(for_systemd(&rules(&[all.clone()]).unwrap(), v2), SystemdDevices::AllowAll);
            assert_eq!(for_systemd(&rules(&[all, spec_rule(false, LinuxDeviceType::C, 1, 3, "rwm")]).unwrap(), v2), SystemdDevices::AllowAll);
        }
        // v1 takes access from an exact entry, and reads type a as every device.
        let exact = strict(&[spec_rule(true, LinuxDeviceType::C, 10, 229, "rwm"), spec_rule(false, LinuxDeviceType::C, 10, 229, "wm")], false);
        assert!(exact.contains(&entry("/dev/char/10:229", "r")), "{exact:?}");
        let a_numbered = rules(&[spec_rule(true, LinuxDeviceType::A, 10, 200, "r")]).unwrap();
        assert_eq!(for_systemd(&a_numbered, false), SystemdDevices::AllowAll);
        assert!(matches!(for_systemd(&a_numbered, true), SystemdDevices::Strict(e) if e.contains(&entry("/dev/block/10:200", "r"))));
    }

    #[test]
    fn bad_access_refused() {
        let mut spec = LinuxDeviceCgroup::default();
        spec.set_access(Some("rwx".into()));
        assert!(rules(&[spec]).is_err());
    }
}
