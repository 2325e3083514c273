//! runtime-spec seccomp → a BPF program. Compiled in the parent (so a bad profile fails `create`
//! before anything exists) and loaded by the init right before execve.
//!
//! libseccomp takes tens of milliseconds for a full profile, more than the rest of `create`, so
//! the compiled program is cached under the state root, keyed by a SHA-256 of the profile, the
//! libseccomp version and the architecture: a container with a profile seen before just reads
//! the program back.

use crate::sync::{Message, SyncSocket};
use crate::{Error, Result};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
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
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
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
fn build(profile: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut filter = ScmpFilterContext::new_filter(default).map_err(fail)?;
    // We set no_new_privs ourselves, when the spec asks for it, and not as a side effect of loading.
    filter.set_ctl_nnp(false).map_err(fail)?;
    for arch in profile.architectures().iter().flatten() {
        let name = spec_name(arch);
        let arch = ScmpArch::from_str(&name).map_err(|_| fail(format!("unknown architecture {name:?}")))?;
        filter.add_arch(arch).map_err(fail)?;
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

/// Whether any rule hands its syscall to a listener (SCMP_ACT_NOTIFY), after checking that such a
/// profile can work: a listener to send the notify fd to, and no notify on what sends it.
fn notifies(profile: &LinuxSeccomp) -> Result<bool> {
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(fail("SCMP_ACT_NOTIFY as the default action would stop the runtime itself before it can hand over the notify fd"));
    }
    let rules = profile.syscalls().iter().flatten().filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    let mut any = false;
    for rule in rules {
        any = true;
        // The notify fd itself travels by sendmsg: notifying on it would wait for a listener that has no fd yet.
        if rule.names().iter().any(|n| n == "sendmsg") {
            return Err(fail("SCMP_ACT_NOTIFY on sendmsg is refused: the runtime sends the notify fd with it"));
        }
    }
    if any && profile.listener_path().is_none() {
        return Err(fail("SCMP_ACT_NOTIFY needs a listenerPath"));
    }
    Ok(any)
}

/// The kernel's flags for loading, from the profile's `flags`.
fn load_flags(profile: &LinuxSeccomp) -> Result<libc::c_ulong> {
    let mut flags = if notifies(profile)? { libc::SECCOMP_FILTER_FLAG_NEW_LISTENER } else { 0 };
    for flag in profile.flags().iter().flatten() {
        flags |= match spec_name(flag).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            other => return Err(fail(format!("unsupported flag {other:?}"))),
        };
    }
    Ok(flags)
}

/// A compiled filter, ready to load.
pub(crate) struct SeccompProgram {
    instructions: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl SeccompProgram {
    /// Loads the program; a notify fd goes to the runtime on the other end of `sync`, which passes
    /// it to the profile's listener. The fd is close-on-exec: the container never holds it.
    pub(crate) fn load_and_report(&self, sync: &SyncSocket) -> Result<()> {
        let notify_fd = crate::sys::load_seccomp_filter(&self.instructions, self.flags).map_err(|e| Error::sys("load seccomp filter", e))?;
        if let Some(fd) = notify_fd {
            sync.send_with_fd(&Message::SeccompFd, &fd)?;
        }
        Ok(())
    }
}

/// Size of one `struct sock_filter`; BPF_MAXINSNS bounds a program.
const INSTRUCTION_SIZE: usize = 8;
const MAX_INSTRUCTIONS: usize = 4096;

fn decode(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSTRUCTION_SIZE) || bytes.len() / INSTRUCTION_SIZE > MAX_INSTRUCTIONS {
        return None;
    }
    let instructions = bytes
        .chunks_exact(INSTRUCTION_SIZE)
        .map(|i| libc::sock_filter { code: u16::from_ne_bytes([i[0], i[1]]), jt: i[2], jf: i[3], k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]) })
        .collect();
    Some(instructions)
}

fn cache_key(profile: &LinuxSeccomp) -> Result<String> {
    use sha2::Digest;
    let version = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let mut hasher = sha2::Sha256::new();
    hasher.update(serde_json::to_vec(profile).map_err(|e| fail(format!("serialize profile: {e}")))?);
    hasher.update(format!("\0{version}\0{}", std::env::consts::ARCH));
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// How many programs the cache keeps before starting over; each is a few KiB.
const CACHE_ENTRIES: usize = 256;

/// Compiles `profile`, or reads it back from `cache_dir` where an earlier container left it.
pub(crate) fn compile(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<SeccompProgram> {
    let flags = load_flags(profile)?;
    let path = cache_dir.join(format!("{}.bpf", cache_key(profile)?));
    if let Some(instructions) = std::fs::read(&path).ok().and_then(|bytes| decode(&bytes)) {
        return Ok(SeccompProgram { instructions, flags });
    }
    let filter = build(profile)?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(cache_dir).map_err(|e| Error::io("create seccomp cache", cache_dir, e))?;
    if std::fs::read_dir(cache_dir).map(|d| d.count()).unwrap_or(0) >= CACHE_ENTRIES {
        for entry in std::fs::read_dir(cache_dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // Written aside and renamed, so a concurrent create never reads half a program.
    let partial = cache_dir.join(format!(".{}.{}", std::process::id(), path.file_name().unwrap_or_default().to_string_lossy()));
    let mut file = std::fs::File::create(&partial).map_err(|e| Error::io("write seccomp cache", &partial, e))?;
    filter.export_bpf(&mut file).map_err(|e| fail(format!("export BPF: {e}")))?;
    drop(file);
    let bytes = std::fs::read(&partial).map_err(|e| Error::io("read seccomp cache", &partial, e))?;
    let instructions = decode(&bytes).ok_or_else(|| fail(format!("libseccomp produced a program of {} bytes", bytes.len())));
    match &instructions {
        Ok(_) => std::fs::rename(&partial, &path).map_err(|e| Error::io("commit seccomp cache", &path, e))?,
        Err(_) => {
            let _ = std::fs::remove_file(&partial);
        }
    }
    Ok(SeccompProgram { instructions: instructions?, flags })
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::Capabilities;

    #[test]
    fn the_default_profile_compiles_with_and_without_capabilities() {
        let all: Capabilities = berth_spec::capabilities::ALL.iter().map(|c| serde_json::from_value(serde_json::json!(c)).unwrap()).collect();
        for bounding in [Capabilities::new(), all] {
            let profile = berth_spec::seccomp::default_profile(&bounding);
            let cache = std::env::temp_dir().join(format!("berth-seccomp-test-{}", std::process::id()));
            let compiled = super::compile(&profile, &cache);
            let cached = super::compile(&profile, &cache);
            std::fs::remove_dir_all(&cache).unwrap();
            compiled.expect("the default profile compiles");
            cached.expect("and reads back from the cache");
        }
    }
}
