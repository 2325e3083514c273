//! runtime-spec seccomp → a libseccomp filter. Compiled in the parent (so a bad profile fails
//! `create` before anything exists) and loaded by the init right before execve.

use crate::{Error, Result};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};
use std::str::FromStr;

fn fail(what: impl std::fmt::Display) -> Error {
    Error::Init(format!("seccomp: {what}"))
}

/// The spec's name of a value that serde names as the spec does (SCMP_ARCH_*, SECCOMP_FILTER_FLAG_*).
fn spec_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno_ret.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno_ret.unwrap_or(libc::EPERM as u32) as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(Error::Unsupported("seccomp SCMP_ACT_NOTIFY is not supported yet".into())),
    })
}

fn compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(arg.value()),
    };
    let datum = match arg.op() {
        LinuxSeccompOperator::ScmpCmpMaskedEq => arg.value_two().unwrap_or(0),
        _ => arg.value(),
    };
    ScmpArgCompare::new(arg.index() as u32, op, datum)
}

/// Builds the filter. Unknown syscall names are skipped (as runc and crun do: profiles name syscalls
/// newer or older than this kernel and libseccomp).
pub(crate) fn check(profile: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut filter = ScmpFilterContext::new_filter(default).map_err(fail)?;
    // We set no_new_privs ourselves, when the spec asks for it, and not as a side effect of loading.
    filter.set_ctl_nnp(false).map_err(fail)?;
    for arch in profile.architectures().iter().flatten() {
        let name = spec_name(arch);
        let arch = ScmpArch::from_str(&name).map_err(|_| fail(format!("unknown architecture {name:?}")))?;
        filter.add_arch(arch).map_err(fail)?;
    }
    for flag in profile.flags().iter().flatten() {
        match spec_name(flag).as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => filter.set_ctl_log(true).map_err(fail)?,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => filter.set_ctl_ssb(true).map_err(fail)?,
            "SECCOMP_FILTER_FLAG_TSYNC" => filter.set_ctl_tsync(true).map_err(fail)?,
            other => return Err(fail(format!("unsupported flag {other:?}"))),
        }
    }
    for rule in profile.syscalls().iter().flatten() {
        let rule_action = action(rule.action(), rule.errno_ret())?;
        if rule_action == default {
            continue; // libseccomp refuses rules that repeat the default action
        }
        let args = rule.args().clone().unwrap_or_default();
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else { continue };
            if args.is_empty() {
                filter.add_rule(rule_action, syscall).map_err(|e| fail(format!("{name}: {e}")))?;
                continue;
            }
            let conditions: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
            let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
            indexes.sort_unstable();
            indexes.dedup();
            if indexes.len() == args.len() {
                filter.add_rule_conditional(rule_action, syscall, &conditions).map_err(|e| fail(format!("{name}: {e}")))?;
            } else {
                // libseccomp cannot AND two conditions on one argument; runc's semantics are then OR.
                for condition in conditions {
                    filter.add_rule_conditional(rule_action, syscall, &[condition]).map_err(|e| fail(format!("{name}: {e}")))?;
                }
            }
        }
    }
    Ok(filter)
}
