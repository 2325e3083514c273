//! Turning the init (or an exec'd process) into the spec's process: limits, scheduling, then at the
//! very end user, capabilities, no_new_privs, seccomp, fd hygiene and execve.

use crate::sync::SyncSocket;
use crate::{Error, Result};
use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, Linux, Process};
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Switches to uid/gid 0 inside a fresh user namespace that maps them.
pub(crate) fn become_root() -> Result<()> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(|e| Error::sys("setresgid(0) in user namespace", e))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|e| Error::sys("setresuid(0) in user namespace", e))
}

pub(crate) fn set_non_dumpable() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::sys("prctl(PR_SET_DUMPABLE, 0)", e))
}

pub(crate) fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`, which outlives the call.
    if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(Error::sys("setdomainname", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn apply_rlimits(process: &Process) -> Result<()> {
    for rlimit in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(rlimit.typ()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let resource = rlimit_resource(&name).ok_or_else(|| Error::Init(format!("unknown rlimit {name}")))?;
        let limit = libc::rlimit { rlim_cur: rlimit.soft(), rlim_max: rlimit.hard() };
        // SAFETY: limit is a valid rlimit struct for the duration of the call.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(Error::sys(
                format!("setrlimit {name} soft {} hard {} (raising a hard limit needs CAP_SYS_RESOURCE)", rlimit.soft(), rlimit.hard()),
                err,
            ));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

pub(crate) fn apply_oom_score_adj(process: &Process) -> Result<()> {
    let Some(adj) = process.oom_score_adj() else { return Ok(()) };
    std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EACCES) { " (lowering it needs CAP_SYS_RESOURCE)" } else { "" };
        Error::Init(format!("set oomScoreAdj {adj}: {e}{hint}"))
    })
}

/// ioPriority and scheduler: what the spec says about how the process is scheduled.
pub(crate) fn apply_scheduling(process: &Process) -> Result<()> {
    if let Some(io) = process.io_priority() {
        let class = match serde_json::to_value(io.class()).ok().and_then(|v| v.as_str().map(str::to_string)).as_deref() {
            Some("IOPRIO_CLASS_RT") => 1,
            Some("IOPRIO_CLASS_BE") => 2,
            Some("IOPRIO_CLASS_IDLE") => 3,
            other => return Err(Error::Init(format!("unknown ioPriority class {other:?}"))),
        };
        if !(0..=7).contains(&io.priority()) {
            return Err(Error::Init(format!("ioPriority.priority {} is outside 0..7", io.priority())));
        }
        crate::sys::set_io_priority(class, io.priority() as u32).map_err(|e| Error::sys("ioprio_set", e))?;
    }
    if let Some(scheduler) = process.scheduler() {
        let policy = serde_json::to_value(scheduler.policy()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let mut attr = crate::sys::SchedAttr {
            policy: match policy.as_str() {
                "SCHED_OTHER" => 0,
                "SCHED_FIFO" => 1,
                "SCHED_RR" => 2,
                "SCHED_BATCH" => 3,
                "SCHED_IDLE" => 5,
                "SCHED_DEADLINE" => 6,
                other => return Err(Error::Init(format!("unknown scheduler policy {other:?}"))),
            },
            nice: scheduler.nice().unwrap_or(0),
            priority: scheduler.priority().unwrap_or(0) as u32,
            runtime: scheduler.runtime().unwrap_or(0),
            deadline: scheduler.deadline().unwrap_or(0),
            period: scheduler.period().unwrap_or(0),
            ..Default::default()
        };
        for flag in scheduler.flags().iter().flatten() {
            let name = serde_json::to_value(flag).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            attr.flags |= match name.as_str() {
                "SCHED_FLAG_RESET_ON_FORK" => 0x01,
                "SCHED_FLAG_RECLAIM" => 0x02,
                "SCHED_FLAG_DL_OVERRUN" => 0x04,
                "SCHED_FLAG_KEEP_POLICY" => 0x08,
                "SCHED_FLAG_KEEP_PARAMS" => 0x10,
                "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
                "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
                other => return Err(Error::Init(format!("unknown scheduler flag {other:?}"))),
            };
        }
        crate::sys::sched_setattr(&mut attr).map_err(|e| Error::sys("sched_setattr", e))?;
    }
    Ok(())
}

/// `linux.memoryPolicy` (runtime-spec 1.3): set_mempolicy(2) for this process, which its
/// children and execve keep. The kernel checks the mode against the nodes (a node the machine
/// lacks, nodes given to MPOL_LOCAL): its refusal fails create, with what was asked.
pub(crate) fn apply_memory_policy(linux: &Linux) -> Result<()> {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let Some(policy) = linux.memory_policy() else { return Ok(()) };
    let mode = match policy.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    let flags = policy.flags().iter().flatten().fold(0, |all, flag| {
        all | match flag {
            F::MpolFNumaBalancing => 1 << 13,
            F::MpolFRelativeNodes => 1 << 14,
            F::MpolFStaticNodes => 1 << 15,
        }
    });
    let nodes = policy.nodes().as_deref().unwrap_or("");
    let mask = node_mask(nodes).map_err(|e| Error::Init(format!("memoryPolicy nodes {nodes:?}: {e}")))?;
    // The kernel reads maxnode - 1 bits (an old off-by-one every caller allows for).
    let max_node = if mask.is_empty() { 0 } else { mask.len() as libc::c_ulong * 64 + 1 };
    let mask_ptr = if mask.is_empty() { std::ptr::null() } else { mask.as_ptr() };
    // SAFETY: set_mempolicy reads max_node - 1 bits from mask_ptr, which holds mask.len() * 64.
    if unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, mask_ptr, max_node) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Init(format!("set memoryPolicy {} nodes {nodes:?}: {e}", policy.mode())));
    }
    Ok(())
}

/// "0-3,5" as a node bit mask, one u64 per 64 nodes; at most 1024 nodes (the kernel's limit).
fn node_mask(nodes: &str) -> std::result::Result<Vec<u64>, String> {
    let mut mask: Vec<u64> = Vec::new();
    for part in nodes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let parse =
            |n: &str| n.trim().parse::<usize>().ok().filter(|n| *n < 1024).ok_or_else(|| format!("{part:?} is not a node or range below 1024"));
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("{part:?} runs backwards"));
        }
        for node in first..=last {
            if mask.len() <= node / 64 {
                mask.resize(node / 64 + 1, 0);
            }
            mask[node / 64] |= 1 << (node % 64);
        }
    }
    Ok(mask)
}

/// Whether the host's kernel enforces AppArmor (what runc reads too).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y")
}

/// Whether the host enforces SELinux: its filesystem is mounted, with a policy (what
/// libselinux's is_selinux_enabled reads). Read once, by [`check_lsm`] in the parent before the
/// init or an exec'd process is cloned, which inherit the answer: inside the container the
/// host's selinuxfs is not mounted, and reading there would leave every label out.
pub(crate) fn selinux_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| Path::new("/sys/fs/selinux/enforce").exists())
}

/// In the parent, before anything is made: an AppArmor profile the host's kernel cannot apply is
/// refused, as runc and crun refuse it, rather than the process running unconfined. SELinux
/// labels where SELinux is not enabled are left out, as crun leaves them (runc fails): there,
/// nothing could label anything, and the tools that write them (containerd, cri-o, podman) write
/// none. (No warning: under a shim the runtime's stderr is the container's.) Where SELinux is
/// enabled they are applied ([`apply_lsm`], `linux.mountLabel` by the mounts), and one the policy
/// refuses fails create.
pub(crate) fn check_lsm(process: Option<&Process>) -> Result<()> {
    // Read here, in the parent, first (see selinux_enabled).
    let selinux = selinux_enabled();
    let set = |value: Option<&String>| value.filter(|v| !v.is_empty()).cloned();
    if let Some(profile) = process.and_then(|p| set(p.apparmor_profile().as_ref())).filter(|_| !apparmor_enabled()) {
        return Err(Error::Unsupported(format!("process.apparmorProfile {profile:?}: AppArmor is not enabled on this host")));
    }
    let both = process.is_some_and(|p| set(p.apparmor_profile().as_ref()).is_some() && set(p.selinux_label().as_ref()).is_some());
    if both && selinux && !Path::new("/proc/self/attr/apparmor").exists() {
        return Err(Error::Unsupported(
            "process.apparmorProfile and process.selinuxLabel: this kernel has one /proc/<pid>/attr/exec for both".into(),
        ));
    }
    Ok(())
}

/// `process.apparmorProfile` and `process.selinuxLabel`: what this process changes to at execve.
/// Written through the container's /proc, checked to be procfs: on any other file (a /proc the
/// image or a volume provides) they would silently not apply.
pub(crate) fn apply_lsm(process: &Process) -> Result<()> {
    if let Some(profile) = process.apparmor_profile().as_deref().filter(|p| !p.is_empty()) {
        // The AppArmor-specific file where LSMs stack (Linux 5.8+), else the shared one.
        let what = format!("AppArmor profile {profile:?}");
        write_exec_attr(&what, &["/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"], &format!("exec {profile}"))?;
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty() && selinux_enabled()) {
        write_exec_attr(&format!("SELinux label {label:?}"), &["/proc/thread-self/attr/exec"], label)?;
    }
    Ok(())
}

/// Writes `value` to the first of `paths` that exists, checked to be on procfs.
fn write_exec_attr(what: &str, paths: &[&str], value: &str) -> Result<()> {
    use std::io::Write;
    let path =
        paths.iter().find(|p| Path::new(p).exists()).ok_or_else(|| Error::Init(format!("{what}: no /proc/thread-self/attr in the container")))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("open", Path::new(path), e))?;
    let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| Error::sys(format!("statfs {path}"), e))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::Init(format!("{what}: {path} is not on procfs")));
    }
    (&file).write_all(value.as_bytes()).map_err(|e| Error::sys(format!("set {what} through {path}"), e))
}

/// The container's execution domain (`linux.personality`), for its init and every exec.
pub(crate) fn apply_personality(linux: &Linux) -> Result<()> {
    if let Some(personality) = linux.personality() {
        let domain = serde_json::to_value(personality.domain()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let persona = match domain.as_str() {
            "LINUX" => 0x0000,
            "LINUX32" => 0x0008,
            other => return Err(Error::Init(format!("unknown personality domain {other:?}"))),
        };
        if personality.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(Error::Unsupported("personality flags are not supported".into()));
        }
        // SAFETY: personality takes an integer persona.
        if unsafe { libc::personality(persona) } == -1 {
            return Err(Error::sys("personality", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// chdir to the process cwd, then find args[0] the way execvp would, with the container's PATH.
pub(crate) fn resolve_executable(process: &Process, env: &[String]) -> Result<CString> {
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| Error::Init(format!("chdir to cwd {}: {e}", cwd.display())))?;
    let arg0 = process.args().as_ref().and_then(|a| a.first()).ok_or_else(|| Error::Init("process.args is empty".into()))?;
    let found = if arg0.contains('/') {
        // A path that is there but cannot be run is execve's EACCES, as runc reports it.
        if !is_executable(Path::new(arg0)) && std::fs::metadata(arg0).is_ok() {
            return Err(Error::Init(format!("exec: {arg0:?}: permission denied")));
        }
        is_executable(Path::new(arg0)).then(|| PathBuf::from(arg0))
    } else {
        let path_var = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        path_var.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(arg0)).find(|p| is_executable(p))
    };
    let found = found.ok_or_else(|| Error::Init(format!("exec: {arg0:?}: executable file not found in $PATH")))?;
    CString::new(found.as_os_str().as_bytes()).map_err(|_| Error::Init(format!("executable path {} contains NUL", found.display())))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn to_caps(set: Option<&Capabilities>, last_cap: u8) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for cap in set.into_iter().flatten() {
        let name = format!("CAP_{cap}");
        let parsed = Cap::from_str(&name).map_err(|_| Error::Init(format!("unknown capability {name}")))?;
        // A capability the kernel does not know cannot be granted; runc skips it the same way.
        if parsed.index() <= last_cap {
            out.insert(parsed);
        }
    }
    Ok(out)
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Becomes the spec's process — fds to close at exec, seccomp, bounding set, user, capabilities,
/// no_new_privs — short of execve. Used by both init and exec; the init does it before it tells
/// `create` it is ready, so that whatever fails here fails `create`. `seccomp` comes with the
/// socket a notify fd is reported on.
pub(crate) fn become_process(process: &Process, seccomp: Option<(&super::SeccompProgram, &SyncSocket)>, preserve_fds: u32) -> Result<()> {
    // Before any seccomp filter: a profile that predates close_range would refuse it.
    crate::sys::cloexec_from(3 + preserve_fds as i32).map_err(|e| Error::sys("close_range", e))?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which we are about to drop.
    if !no_new_privs {
        if let Some((filter, sync)) = seccomp {
            filter.load_and_report(sync)?;
        }
    }
    let last = last_cap();
    let capabilities = process.capabilities().as_ref();
    let bounding = to_caps(capabilities.and_then(|c| c.bounding().as_ref()), last)?;
    for cap in caps::all() {
        if cap.index() <= last && !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| Error::Init(format!("drop bounding {cap}: {e}")))?;
        }
    }
    set_user(process)?;
    let permitted = to_caps(capabilities.and_then(|c| c.permitted().as_ref()), last)?;
    let inheritable = to_caps(capabilities.and_then(|c| c.inheritable().as_ref()), last)?;
    let effective = to_caps(capabilities.and_then(|c| c.effective().as_ref()), last)?;
    let ambient = to_caps(capabilities.and_then(|c| c.ambient().as_ref()), last)?;
    let set_caps = |set: CapSet, value: &CapsHashSet| caps::set(None, set, value).map_err(|e| Error::Init(format!("set {set:?} capabilities: {e}")));
    // Each capset must keep effective ⊆ permitted and may only add inheritable from permitted:
    // inheritable first (permitted still full), then shrink effective, then permitted.
    set_caps(CapSet::Inheritable, &inheritable)?;
    set_caps(CapSet::Effective, &effective)?;
    set_caps(CapSet::Permitted, &permitted)?;
    caps::clear(None, CapSet::Ambient).map_err(|e| Error::Init(format!("clear ambient capabilities: {e}")))?;
    // The kernel raises an ambient capability only if it is both permitted and inheritable;
    // runc and crun skip the others (`runc spec` lists ambient ones and no inheritable ones).
    for cap in ambient.iter().filter(|cap| permitted.contains(cap) && inheritable.contains(cap)) {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| Error::Init(format!("raise ambient {cap}: {e}")))?;
    }
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|e| Error::sys("set no_new_privs", e))?;
        if let Some((filter, sync)) = seccomp {
            filter.load_and_report(sync)?;
        }
    }
    Ok(())
}

/// Signals as a new program expects them, as runc leaves them: none blocked, none ignored.
/// Ignored signals and the mask survive execve, so whatever the shim, berthd or their parents
/// blocked or ignored (SIGCHLD blocked, SIGPIPE and SIGQUIT ignored) would reach the container:
/// `yes | head` would spin on EPIPE, an init reaping on SIGCHLD would never hear of a child.
fn reset_signals() -> Result<()> {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler of ours; numbers the kernel reserves (glibc's
        // SIGRTMIN-1, SIGRTMIN-2) fail with EINVAL and stay as they are, which is fine.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None)
        .map_err(|e| Error::sys("clear the signal mask", e))
}

/// The last step, after [`become_process`]: execve; returns only its error.
pub(crate) fn execve(process: &Process, executable: &CString, env: &[String]) -> Result<Infallible> {
    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Init("an argument contains NUL".into()))?;
    let env: Vec<CString> = env.iter().filter_map(|e| CString::new(e.as_bytes()).ok()).collect();
    reset_signals()?;
    let err = nix::unistd::execve(executable, &args, &env).unwrap_err();
    Err(Error::Init(format!("exec {:?}: {err}", executable)))
}

/// setgroups/setresgid/setresuid with PR_SET_KEEPCAPS, so permitted capabilities survive the switch.
fn set_user(process: &Process) -> Result<()> {
    let user = process.user();
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("set keepcaps", e))?;
    let groups: Vec<nix::unistd::Gid> = user.additional_gids().iter().flatten().map(|g| (*g).into()).collect();
    if let Err(e) = nix::unistd::setgroups(&groups) {
        // A user namespace with setgroups denied (rootless) cannot drop or set groups.
        if !(groups.is_empty() && e == nix::errno::Errno::EPERM) {
            return Err(Error::sys("setgroups", e));
        }
    }
    let (uid, gid) = (user.uid(), user.gid());
    nix::unistd::setresgid(gid.into(), gid.into(), gid.into()).map_err(|e| Error::sys(format!("setresgid {gid}"), e))?;
    nix::unistd::setresuid(uid.into(), uid.into(), uid.into()).map_err(|e| Error::sys(format!("setresuid {uid}"), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("clear keepcaps", e))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(user.umask().unwrap_or(0o022) & 0o777));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::node_mask;

    #[test]
    fn node_lists_become_bit_masks() {
        assert_eq!(node_mask("").unwrap(), Vec::<u64>::new());
        assert_eq!(node_mask("0").unwrap(), vec![1]);
        assert_eq!(node_mask("0-2,5").unwrap(), vec![0b100111]);
        assert_eq!(node_mask("64").unwrap(), vec![0, 1]);
        for bad in ["x", "3-1", "1024", "0-99999999", "-1"] {
            assert!(node_mask(bad).is_err(), "{bad}");
        }
    }
}
