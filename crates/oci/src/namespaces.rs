//! Which namespaces a container gets and how: created by clone3's flags where one call can do it, or
//! joined by path / unshared in the child with a second fork where the kernel's ordering rules demand
//! it (joining a user namespace by path, or creating one while joining others).

use crate::{Error, Result};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub(crate) fn flag(typ: LinuxNamespaceType) -> libc::c_int {
    match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80, // CLONE_NEWTIME
    }
}

/// The namespace plan for one container, computed before anything is created.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Created by clone3 itself (fast path).
    pub clone_flags: libc::c_int,
    /// Joined by the parent before cloning (pid: only affects children).
    pub parent_joins: Vec<PathBuf>,
    /// The parent unshares a time namespace before cloning, so offsets can be set before init enters it.
    pub parent_new_time: bool,
    /// Joined by the child, user namespace first.
    pub child_joins: Vec<(libc::c_int, PathBuf)>,
    /// Created by the child with unshare(2), after its joins.
    pub child_unshare: libc::c_int,
    /// The child unshares a user namespace and asks the parent for id maps.
    pub child_new_user: bool,
    /// A second fork is needed: the child's own pid namespace does not change, only its children's.
    pub fork: bool,
    pub new_user: bool,
    pub new_cgroup: bool,
    pub new_uts: bool,
    pub new_net: bool,
    /// A mount namespace of its own, new or joined: without one the container shares ours and
    /// its rootfs is not set up.
    pub mount_ns: bool,
}

impl Plan {
    pub(crate) fn new(linux: &Linux) -> Result<Plan> {
        let mut plan = Plan::default();
        let namespaces = linux.namespaces().clone().unwrap_or_default();
        let mut new = 0;
        let mut joins = Vec::new();
        for ns in &namespaces {
            let f = flag(ns.typ());
            match ns.path() {
                Some(path) => {
                    if ns.typ() == LinuxNamespaceType::Pid {
                        plan.parent_joins.push(path.clone());
                    } else {
                        joins.push((f, path.clone()));
                    }
                }
                None => new |= f,
            }
        }
        plan.new_user = new & libc::CLONE_NEWUSER != 0;
        plan.new_cgroup = new & libc::CLONE_NEWCGROUP != 0;
        plan.new_uts = new & libc::CLONE_NEWUTS != 0;
        plan.new_net = new & libc::CLONE_NEWNET != 0;
        plan.mount_ns = namespaces.iter().any(|ns| ns.typ() == LinuxNamespaceType::Mount);
        plan.parent_new_time = new & 0x80 != 0;
        // Cgroup namespaces are unshared by the child once it is in its cgroup; time by the parent.
        let clonable = new & !(libc::CLONE_NEWCGROUP | 0x80);
        let joins_user = joins.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER);
        if !joins_user && (!plan.new_user || joins.is_empty()) {
            plan.clone_flags = clonable;
        } else {
            plan.child_new_user = plan.new_user;
            plan.child_unshare = clonable & !libc::CLONE_NEWUSER;
            plan.fork = clonable & libc::CLONE_NEWPID != 0;
        }
        joins.sort_by_key(|(f, _)| *f != libc::CLONE_NEWUSER);
        plan.child_joins = joins;
        if plan.new_user && linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
            return Err(Error::Unsupported("a new user namespace needs uidMappings and gidMappings".into()));
        }
        Ok(plan)
    }

    /// Whether the init creates or joins a user namespace.
    pub(crate) fn enters_user_namespace(&self) -> bool {
        self.new_user || self.child_joins.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER)
    }
}

pub(crate) fn setns_path(path: &Path, nstype: libc::c_int) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
    // SAFETY: setns takes an fd we own for the duration of the call and an integer.
    if unsafe { libc::setns(file.as_raw_fd(), nstype) } != 0 {
        return Err(Error::io("join namespace", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn unshare(flags: libc::c_int) -> Result<()> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: unshare takes only flags; berth-oci is single-threaded as a user namespace requires.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(Error::sys(format!("unshare({flags:#x})"), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes `/proc/<pid>/{uid,gid}_map` for a freshly created user namespace. Root writes them
/// itself. Any other user may map only its own ids, and gid_map only once setgroups is denied;
/// wider maps (subordinate ids from /etc/subuid) go through the setuid newuidmap/newgidmap.
pub(crate) fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    write_maps(pid, linux.uid_mappings().as_deref().unwrap_or(&[]), linux.gid_mappings().as_deref().unwrap_or(&[]))
}

fn write_maps(pid: i32, uid_mappings: &[LinuxIdMapping], gid_mappings: &[LinuxIdMapping]) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        write_map(pid, "uid_map", uid_mappings)?;
        return write_map(pid, "gid_map", gid_mappings);
    }
    if maps_only(uid_mappings, nix::unistd::geteuid().as_raw()) {
        write_map(pid, "uid_map", uid_mappings)?;
    } else {
        run_id_map_helper("newuidmap", pid, uid_mappings)?;
    }
    if maps_only(gid_mappings, nix::unistd::getegid().as_raw()) {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, "deny").map_err(|e| Error::io("deny setgroups", path, e))?;
        write_map(pid, "gid_map", gid_mappings)
    } else {
        run_id_map_helper("newgidmap", pid, gid_mappings)
    }
}

fn write_map(pid: i32, file: &str, mappings: &[LinuxIdMapping]) -> Result<()> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let text: String = mappings.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect();
    std::fs::write(&path, text).map_err(|e| Error::io("write id map", path, e))
}

/// Whether `mappings` is the single id `host_id` (what an unprivileged user may write itself).
fn maps_only(mappings: &[LinuxIdMapping], host_id: u32) -> bool {
    matches!(mappings, [m] if m.host_id() == host_id && m.size() == 1)
}

fn run_id_map_helper(helper: &str, pid: i32, mappings: &[LinuxIdMapping]) -> Result<()> {
    let mut command = std::process::Command::new(helper);
    command.arg(pid.to_string());
    for m in mappings {
        command.args([m.container_id().to_string(), m.host_id().to_string(), m.size().to_string()]);
    }
    let output = command.output().map_err(|e| Error::Unsupported(format!("{helper} (package uidmap) is needed for these id mappings: {e}")))?;
    if !output.status.success() {
        return Err(Error::Unsupported(format!(
            "{helper} refused the id mappings (see /etc/subuid, /etc/subgid): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// An fd on a new user namespace with these mappings and no process left in it: what an
/// idmapped mount needs. A child is cloned into the namespace only long enough to map it.
pub(crate) fn user_namespace_fd(uid_mappings: &[LinuxIdMapping], gid_mappings: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (hold_read, hold_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))?;
    let (cloned, _) = crate::sys::clone3(libc::CLONE_NEWUSER as u64, None).map_err(|e| Error::sys("clone3 a user namespace", e))?;
    let pid = match cloned {
        crate::sys::CloneResult::Child => {
            drop(hold_write);
            // Wait for the parent to be done with us: read returns once it closes its end.
            let _ = nix::unistd::read(hold_read.as_raw_fd(), &mut [0u8; 1]);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        crate::sys::CloneResult::Parent { pid } => pid,
    };
    drop(hold_read);
    let opened = write_maps(pid, uid_mappings, gid_mappings).and_then(|_| {
        let path = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&path).map(OwnedFd::from).map_err(|e| Error::io("open user namespace", path, e))
    });
    drop(hold_write);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    opened
}

/// The host id that `container_id` maps to, if the mappings cover it.
pub(crate) fn host_id(mappings: Option<&Vec<LinuxIdMapping>>, container_id: u32) -> Option<u32> {
    mappings.into_iter().flatten().find_map(|m| {
        let offset = container_id.checked_sub(m.container_id())?;
        (offset < m.size()).then(|| m.host_id().checked_add(offset)).flatten()
    })
}

/// Whether `mappings` maps container id 0 (the init then switches to root inside its namespace).
pub(crate) fn maps_root(mappings: Option<&Vec<LinuxIdMapping>>) -> bool {
    mappings.into_iter().flatten().any(|m| m.container_id() == 0 && m.size() > 0)
}

/// Whether the user namespace this process is in maps id 0 (read from its uid_map: one joined
/// by path comes with maps the spec need not repeat).
pub(crate) fn self_maps_root() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.lines().any(|line| matches!(line.split_whitespace().collect::<Vec<_>>()[..], ["0", _, count] if count != "0"))
}

/// Writes the time namespace offsets (monotonic/boottime) for a namespace nobody has entered yet.
pub(crate) fn write_time_offsets(linux: &Linux) -> Result<()> {
    let Some(offsets) = linux.time_offsets() else { return Ok(()) };
    let mut text = String::new();
    for (clock, value) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::Unsupported(format!("time offset for clock {clock:?}")));
        }
        // The spec's object ({"secs": …, "nanosecs": …}); the kernel wants "clock secs nanosecs".
        let (secs, nanosecs) = (value.secs().unwrap_or(0), value.nanosecs().unwrap_or(0));
        if nanosecs >= 1_000_000_000 {
            return Err(Error::Unsupported(format!("time offset for {clock}: {nanosecs} nanoseconds is a second or more")));
        }
        text.push_str(&format!("{clock} {secs} {nanosecs}\n"));
    }
    std::fs::write("/proc/self/timens_offsets", text).map_err(|e| Error::io("write", "/proc/self/timens_offsets", e))
}
