//! Composable, typed changes to a runtime spec (`oci_spec::runtime::Spec`), as containerd's spec
//! options are: a container's spec is berth-spec's template with a list of [`SpecOpt`]s applied
//! in order. berth.v1's `run` flags (crate::run_spec) and the CRI's ContainerConfig both map their
//! requests onto these; nothing patches untyped JSON.
//!
//! Each option checks what it is given (absolute paths, positive limits, known capabilities) and
//! fails with [`Error::Invalid`] rather than leave the runtime to refuse the spec later.

use crate::passwd::ResolvedUser;
use crate::{Error, Result};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, Mount, Process, Root, Spec, User,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One change to a spec.
pub type SpecOpt = Box<dyn FnOnce(&mut Spec) -> Result<()> + Send>;

/// berth-spec's template with `opts` applied in order.
pub fn build(opts: Vec<SpecOpt>) -> Result<Spec> {
    let mut spec = berth_spec::template::default_spec(false);
    for opt in opts {
        opt(&mut spec)?;
    }
    Ok(spec)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

fn process(spec: &mut Spec) -> &mut Process {
    spec.process_mut().get_or_insert_with(Process::default)
}

fn linux(spec: &mut Spec) -> &mut oci_spec::runtime::Linux {
    spec.linux_mut().get_or_insert_with(Default::default)
}

fn resources(spec: &mut Spec) -> &mut LinuxResources {
    linux(spec).resources_mut().get_or_insert_with(Default::default)
}

/// The process's argv (never empty).
pub fn with_args(args: Vec<String>) -> SpecOpt {
    Box::new(move |spec| {
        if args.is_empty() {
            return Err(invalid("no command: the image has no Entrypoint or Cmd, give one"));
        }
        process(spec).set_args(Some(args));
        Ok(())
    })
}

/// The process's environment, `KEY=VALUE` each.
pub fn with_env(env: Vec<String>) -> SpecOpt {
    Box::new(move |spec| {
        process(spec).set_env(Some(env));
        Ok(())
    })
}

/// The working directory (absolute).
pub fn with_cwd(cwd: String) -> SpecOpt {
    Box::new(move |spec| {
        if !cwd.starts_with('/') {
            return Err(invalid(format!("working directory {cwd} is not absolute")));
        }
        process(spec).set_cwd(PathBuf::from(cwd));
        Ok(())
    })
}

pub fn with_user(user: &ResolvedUser) -> SpecOpt {
    let (uid, gid, additional) = (user.uid, user.gid, user.additional_gids.clone());
    Box::new(move |spec| {
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids((!additional.is_empty()).then_some(additional));
        process(spec).set_user(user);
        Ok(())
    })
}

/// A terminal for the process, of `size` (width, height) from the start when given.
pub fn with_terminal(size: Option<(u16, u16)>) -> SpecOpt {
    Box::new(move |spec| {
        let process = process(spec);
        process.set_terminal(Some(true));
        if let Some((width, height)) = size {
            let console = oci_spec::runtime::BoxBuilder::default().width(width).height(height).build();
            process.set_console_size(Some(console.map_err(|e| invalid(format!("console size: {e}")))?));
        }
        Ok(())
    })
}

/// Exactly these capabilities (bounding, effective, permitted; never inheritable or ambient),
/// and berth's default seccomp profile fitted to them.
pub fn with_capabilities(names: Vec<String>) -> SpecOpt {
    Box::new(move |spec| {
        // The runtime-spec's names ("CAP_NET_ADMIN"), as the type (de)serializes them.
        let parse = |n: &String| serde_json::from_value::<Capability>(n.as_str().into()).map_err(|_| invalid(format!("unknown capability {n:?}")));
        let set: Capabilities = names.iter().map(parse).collect::<Result<_>>()?;
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set.clone()));
        caps.set_inheritable(None);
        caps.set_ambient(None);
        process(spec).set_capabilities(Some(caps));
        linux(spec).set_seccomp(Some(berth_spec::seccomp::default_profile(&set)));
        Ok(())
    })
}

/// `privileged`: every device, no masked or read-only paths, no seccomp filter, and processes may
/// gain privileges (setuid binaries work). Capabilities are set apart ([`with_capabilities`]).
pub fn with_privileged() -> SpecOpt {
    Box::new(|spec| {
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true);
        all.set_access(Some("rwm".into()));
        resources(spec).set_devices(Some(vec![all]));
        let linux = linux(spec);
        linux.set_masked_paths(Some(Vec::new()));
        linux.set_readonly_paths(Some(Vec::new()));
        linux.set_seccomp(None);
        process(spec).set_no_new_privileges(Some(false));
        Ok(())
    })
}

/// Processes keep no privilege they did not start with.
pub fn with_no_new_privileges() -> SpecOpt {
    Box::new(|spec| {
        process(spec).set_no_new_privileges(Some(true));
        Ok(())
    })
}

pub fn with_hostname(hostname: String) -> SpecOpt {
    Box::new(move |spec| {
        if hostname.is_empty() || hostname.len() > 64 || !hostname.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(invalid(format!("hostname {hostname:?}: use letters, digits, - and .")));
        }
        spec.set_hostname(Some(hostname));
        Ok(())
    })
}

/// The root filesystem at `path` (relative to the bundle), read-only when asked.
pub fn with_root(path: &str, readonly: bool) -> SpecOpt {
    let path = PathBuf::from(path);
    Box::new(move |spec| {
        let mut root = Root::default();
        root.set_path(path);
        root.set_readonly(Some(readonly));
        spec.set_root(Some(root));
        Ok(())
    })
}

/// A bind mount of host `source` at `destination` (both absolute; the source must exist).
pub fn with_bind(source: PathBuf, destination: String, options: Vec<String>) -> SpecOpt {
    Box::new(move |spec| {
        if !source.is_absolute() || !destination.starts_with('/') {
            return Err(invalid(format!("bind {}:{destination}: source and target must be absolute paths", source.display())));
        }
        if !source.exists() {
            return Err(invalid(format!("volume source {} does not exist", source.display())));
        }
        let mut mount = Mount::default();
        mount.set_destination(PathBuf::from(destination));
        mount.set_typ(Some("bind".into()));
        mount.set_source(Some(source));
        mount.set_options(Some(options));
        spec.mounts_mut().get_or_insert_with(Vec::new).push(mount);
        Ok(())
    })
}

/// Namespace `typ` is the host's (dropped from the spec), or, with `path`, the one pinned there
/// (a pod's), or a new one (`path` None and `host` false).
pub fn with_namespace(typ: LinuxNamespaceType, path: Option<PathBuf>, host: bool) -> SpecOpt {
    Box::new(move |spec| {
        let namespaces = linux(spec).namespaces_mut().get_or_insert_with(Vec::new);
        namespaces.retain(|ns| ns.typ() != typ);
        if !host {
            let mut namespace = LinuxNamespace::default();
            namespace.set_typ(typ);
            namespace.set_path(path);
            namespaces.push(namespace);
        }
        Ok(())
    })
}

/// The container's cgroup: `/berth/<id>`, or under a pod's parent.
pub fn with_cgroups_path(path: PathBuf) -> SpecOpt {
    Box::new(move |spec| {
        linux(spec).set_cgroups_path(Some(path));
        Ok(())
    })
}

/// Resource limits: memory in bytes, CPUs as a fraction of one (quota over a 100 ms period),
/// processes. Each must be positive.
pub fn with_limits(memory: Option<i64>, cpus: Option<f64>, pids: Option<i64>) -> SpecOpt {
    Box::new(move |spec| {
        let resources = resources(spec);
        if let Some(memory) = memory {
            if memory <= 0 {
                return Err(invalid(format!("memory limit {memory} must be positive")));
            }
            let mut limit = LinuxMemory::default();
            limit.set_limit(Some(memory));
            resources.set_memory(Some(limit));
        }
        if let Some(cpus) = cpus {
            if !(cpus > 0.0 && cpus <= 4096.0) {
                return Err(invalid(format!("cpus {cpus} must be above 0")));
            }
            let mut cpu = LinuxCpu::default();
            cpu.set_quota(Some((cpus * 100_000.0) as i64));
            cpu.set_period(Some(100_000));
            resources.set_cpu(Some(cpu));
        }
        if let Some(pids) = pids {
            if pids <= 0 {
                return Err(invalid(format!("pids limit {pids} must be positive")));
            }
            let mut limit = LinuxPids::default();
            limit.set_limit(pids);
            resources.set_pids(Some(limit));
        }
        Ok(())
    })
}

pub fn with_annotations(annotations: HashMap<String, String>) -> SpecOpt {
    Box::new(move |spec| {
        spec.annotations_mut().get_or_insert_with(HashMap::new).extend(annotations);
        Ok(())
    })
}

/// The capabilities in this process's own bounding set: a container cannot be given more (here,
/// for one, root lacks CAP_SYS_RESOURCE).
pub fn grantable_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(u64::MAX);
    let all = berth_spec::capabilities::ALL.iter().enumerate();
    all.filter(|(bit, _)| bounding & (1 << bit) != 0).map(|(_, c)| c.to_string()).collect()
}

/// Writes `spec` as the bundle's config.json.
pub fn write(spec: &Spec, bundle: &Path) -> Result<()> {
    let config = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(spec).map_err(|e| invalid(format!("the spec: {e}")))?;
    std::fs::write(&config, json).map_err(|e| Error::io("write", &config, e))
}
