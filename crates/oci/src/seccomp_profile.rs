//! berth's default seccomp profile: what `berth-oci spec` writes and, later, the CRI's
//! RuntimeDefault. The intent is the one the widely used container default has: everything an
//! ordinary program needs is allowed, and what reaches kernel state shared with the host (keyrings,
//! modules, clocks, eBPF, mounts, namespaces, io_uring) is refused with EPERM unless the container
//! holds the capability that would make the call legitimate anyway.
//!
//! The lists are ours, written from the syscall table and the capabilities(7) page. A name this
//! kernel or libseccomp does not know is skipped when the filter is built, so one list serves
//! every architecture the profile names.

use oci_spec::runtime::{Capabilities, Capability, LinuxSeccomp};
use serde_json::json;

/// What any process may call: file and socket I/O, memory, signals, time reads, scheduling of
/// itself, SysV and POSIX IPC (namespaced), credentials (checked by the kernel against its caps).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Calls that are legitimate only with a capability; allowed when the container's bounding set
/// holds it (the kernel still checks the effective set).
const WITH_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "finit_module", "init_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &["kcmp", "pidfd_getfd", "process_madvise"]),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (Capability::SysTime, &["clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday", "stime"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
];

/// The namespace flags of clone(2); without CAP_SYS_ADMIN a container may not create namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// personality(2) values that only select an ABI flavour (PER_LINUX, PER_LINUX32, UNAME26 and
/// their mix, and the 0xffffffff query); the others disable address space randomisation and such.
const HARMLESS_PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const AF_VSOCK: u64 = 40;

/// This machine's architecture and the ones its kernel runs as compat (32-bit binaries in an
/// image): each listed architecture costs compile time, and one the CPU cannot run is dead weight.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCHITECTURES: &[&str] = &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCHITECTURES: &[&str] = &[];

/// The default profile for a container whose bounding capability set is `bounding`.
pub fn default_profile(bounding: &Capabilities) -> LinuxSeccomp {
    let mut rules = vec![json!({ "names": ALLOWED, "action": "SCMP_ACT_ALLOW" })];
    let mut granted: Vec<&str> =
        WITH_CAPABILITY.iter().filter(|(capability, _)| bounding.contains(capability)).flat_map(|(_, names)| names.iter().copied()).collect();
    granted.sort_unstable();
    granted.dedup();
    if !granted.is_empty() {
        rules.push(json!({ "names": granted, "action": "SCMP_ACT_ALLOW" }));
    }
    if bounding.contains(&Capability::SysAdmin) {
        rules.push(json!({ "names": ["clone"], "action": "SCMP_ACT_ALLOW" }));
    } else {
        rules.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }],
        }));
        // clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes libc fall back
        // to clone(2), which the rule above can judge.
        rules.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS }));
    }
    for persona in HARMLESS_PERSONALITIES {
        rules.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": persona, "op": "SCMP_CMP_EQ" }],
        }));
    }
    // vsock reaches the hypervisor's host, outside every network namespace.
    rules.push(json!({
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE" }],
    }));
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": NATIVE_ARCHITECTURES,
        "syscalls": rules,
    });
    serde_json::from_value(profile).expect("the default seccomp profile matches the runtime-spec schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_loadable_filter_with_and_without_capabilities() {
        let none = Capabilities::new();
        let all: Capabilities = WITH_CAPABILITY.iter().map(|(c, _)| *c).collect();
        for bounding in [none, all] {
            let profile = default_profile(&bounding);
            let cache = std::env::temp_dir().join(format!("berth-seccomp-test-{}", std::process::id()));
            let compiled = crate::init::compile_seccomp(&profile, &cache);
            let cached = crate::init::compile_seccomp(&profile, &cache);
            std::fs::remove_dir_all(&cache).unwrap();
            compiled.expect("the default profile compiles");
            cached.expect("and reads back from the cache");
        }
    }

    #[test]
    fn namespaces_and_host_state_need_capabilities() {
        let profile = serde_json::to_string(&default_profile(&Capabilities::new())).unwrap();
        for refused in ["\"unshare\"", "\"setns\"", "\"mount\"", "\"keyctl\"", "\"bpf\"", "\"add_key\"", "\"io_uring_setup\""] {
            let allowed_anywhere = profile.contains(refused);
            // clone3 appears only with its ENOSYS rule; the rest must not appear at all.
            assert!(!allowed_anywhere, "{refused} is allowed without capabilities");
        }
    }
}
