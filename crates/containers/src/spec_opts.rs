//! Composable, typed changes to a runtime spec (`oci_spec::runtime::Spec`), as containerd's spec
//! options are: a container's spec is berth-spec's template with a list of [`SpecOpt`]s applied
//! in order. berth.v1's `run` flags (crate::run_spec) and the CRI's ContainerConfig both map their
//! requests onto these; nothing patches untyped JSON.
//!
//! Each option checks what it is given (absolute paths, positive limits, known capabilities) and
//! fails with [`Error::Invalid`] rather than leave the runtime to refuse the spec later.

use crate::passwd::ResolvedUser;
use crate::{Error, Result, UserNamespace};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxIdMapping, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, Mount, Process, Root, Spec, User,
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

/// `privileged`: every device (allowed, and the host's nodes in the container's /dev, as docker,
/// containerd and cri-o give them), no masked or read-only paths, no seccomp filter, and
/// processes may gain privileges (setuid binaries work). Capabilities are set apart
/// ([`with_capabilities`]).
pub fn with_privileged() -> SpecOpt {
    Box::new(|spec| {
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true);
        all.set_access(Some("rwm".into()));
        resources(spec).set_devices(Some(vec![all]));
        let devices = linux(spec).devices_mut().get_or_insert_with(Vec::new);
        // A device the request names keeps its own path and mode.
        let named: std::collections::HashSet<PathBuf> = devices.iter().map(|d| d.path().clone()).collect();
        devices.extend(host_devices(Path::new("/dev"))?.into_iter().filter(|d| !named.contains(d.path())));
        let linux = linux(spec);
        linux.set_masked_paths(Some(Vec::new()));
        linux.set_readonly_paths(Some(Vec::new()));
        linux.set_seccomp(None);
        process(spec).set_no_new_privileges(Some(false));
        Ok(())
    })
}

/// Processes keep no privilege they did not start with.
pub fn with_no_new_privileges(on: bool) -> SpecOpt {
    Box::new(move |spec| {
        process(spec).set_no_new_privileges(Some(on));
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
    with_idmapped_bind(source, destination, options, None)
}

/// [`with_bind`], idmapped through `ids` when given (a file the host's uid 0 owns is the
/// namespace's root's): the runtime-spec's mount `uidMappings`/`gidMappings` and `ridmap`.
pub fn with_idmapped_bind(source: PathBuf, destination: String, mut options: Vec<String>, ids: Option<UserNamespace>) -> SpecOpt {
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
        if let Some(ids) = ids {
            options.push("ridmap".into());
            mount.set_uid_mappings(Some(vec![id_mapping(ids.uids)?]));
            mount.set_gid_mappings(Some(vec![id_mapping(ids.gids)?]));
        }
        mount.set_options(Some(options));
        spec.mounts_mut().get_or_insert_with(Vec::new).push(mount);
        Ok(())
    })
}

/// Options `--tmpfs` and `--mount type=tmpfs` take (the kernel's tmpfs options and the mount
/// flags that make sense on one).
const TMPFS_OPTIONS: [&str; 16] =
    ["rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "strictatime", "size", "mode", "uid", "gid"];

/// A fresh tmpfs at `destination`: docker's `--tmpfs` defaults (noexec, nosuid, nodev), then
/// `options` (`size=64m`, `mode=1777`, `exec` …) over them.
pub fn with_tmpfs(destination: String, options: Vec<String>) -> SpecOpt {
    Box::new(move |spec| {
        if !destination.starts_with('/') || destination.split('/').any(|c| c == "..") {
            return Err(invalid(format!("tmpfs {destination:?}: the target is an absolute path without '..'")));
        }
        for option in &options {
            let name = option.split_once('=').map_or(option.as_str(), |(name, _)| name);
            let valued = ["size", "mode", "uid", "gid", "nr_inodes"].contains(&name);
            if !(TMPFS_OPTIONS.contains(&name) || name == "nr_inodes")
                || valued != option.contains('=')
                || option.chars().any(|c| c == ',' || c.is_control())
            {
                return Err(invalid(format!("tmpfs {destination}: option {option:?} (take {} and nr_inodes)", TMPFS_OPTIONS.join(", "))));
            }
        }
        let mut mount = Mount::default();
        mount.set_destination(PathBuf::from(&destination));
        mount.set_typ(Some("tmpfs".into()));
        mount.set_source(Some(PathBuf::from("tmpfs")));
        mount.set_options(Some(["noexec", "nosuid", "nodev"].map(String::from).into_iter().chain(options.iter().cloned()).collect()));
        spec.mounts_mut().get_or_insert_with(Vec::new).push(mount);
        Ok(())
    })
}

/// Namespace `typ` is the host's (dropped from the spec), or, with `path`, the one pinned there
/// (a pod's), or a new one (`path` None and `host` false). The host's UTS namespace takes the
/// hostname out of the spec too: a runtime sets one only in a namespace of the container's.
pub fn with_namespace(typ: LinuxNamespaceType, path: Option<PathBuf>, host: bool) -> SpecOpt {
    Box::new(move |spec| {
        if host && typ == LinuxNamespaceType::Uts {
            spec.set_hostname(None);
        }
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

/// Joins the user namespace pinned at `path`, whose maps are `ids` (given too: runc and crun
/// check them against the namespace's).
pub fn with_user_namespace(path: PathBuf, ids: UserNamespace) -> SpecOpt {
    Box::new(move |spec| {
        let (uids, gids) = (id_mapping(ids.uids)?, id_mapping(ids.gids)?);
        let linux = linux(spec);
        linux.set_uid_mappings(Some(vec![uids]));
        linux.set_gid_mappings(Some(vec![gids]));
        let namespaces = linux.namespaces_mut().get_or_insert_with(Vec::new);
        namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::User);
        let mut namespace = LinuxNamespace::default();
        namespace.set_typ(LinuxNamespaceType::User);
        namespace.set_path(Some(path));
        namespaces.push(namespace);
        Ok(())
    })
}

fn id_mapping(range: crate::IdRange) -> Result<LinuxIdMapping> {
    LinuxIdMappingBuilder::default()
        .container_id(range.container_id)
        .host_id(range.host_id)
        .size(range.length)
        .build()
        .map_err(|e| invalid(format!("id mapping: {e}")))
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

/// Whatever `update` sets of cpu, memory, hugepage limits and unified (v2) values replaces the
/// spec's; the rest (devices, pids) stays.
pub fn with_resources(update: LinuxResources) -> SpecOpt {
    Box::new(move |spec| {
        let resources = resources(spec);
        if let Some(cpu) = update.cpu() {
            resources.set_cpu(Some(cpu.clone()));
        }
        if let Some(memory) = update.memory() {
            resources.set_memory(Some(*memory));
        }
        if let Some(hugepages) = update.hugepage_limits() {
            resources.set_hugepage_limits(Some(hugepages.clone()));
        }
        if let Some(unified) = update.unified() {
            resources.set_unified(Some(unified.clone()));
        }
        Ok(())
    })
}

/// The process's OOM score adjustment (-1000..=1000).
pub fn with_oom_score_adj(score: i32) -> SpecOpt {
    Box::new(move |spec| {
        if !(-1000..=1000).contains(&score) {
            return Err(invalid(format!("oom_score_adj {score} is outside -1000..1000")));
        }
        process(spec).set_oom_score_adj(Some(score));
        Ok(())
    })
}

/// The seccomp filter (None: no filter at all).
pub fn with_seccomp(seccomp: Option<oci_spec::runtime::LinuxSeccomp>) -> SpecOpt {
    Box::new(move |spec| {
        linux(spec).set_seccomp(seccomp);
        Ok(())
    })
}

/// Paths masked (made empty or unreadable) and made read-only in the container: absolute each.
pub fn with_masked_and_readonly_paths(masked: Vec<String>, readonly: Vec<String>) -> SpecOpt {
    Box::new(move |spec| {
        if let Some(path) = masked.iter().chain(&readonly).find(|p| !p.starts_with('/')) {
            return Err(invalid(format!("masked or read-only path {path} is not absolute")));
        }
        let linux = linux(spec);
        linux.set_masked_paths(Some(masked));
        linux.set_readonly_paths(Some(readonly));
        Ok(())
    })
}

/// The host's device node `host` at `container` (absolute), allowed in the device cgroup with
/// `permissions` (of `rwm`). It replaces any device already at `container`.
pub fn with_device(host: PathBuf, container: String, permissions: String) -> SpecOpt {
    Box::new(move |spec| {
        if !host.is_absolute() || !container.starts_with('/') || container.split('/').any(|c| c == "..") {
            return Err(invalid(format!("device {}:{container}: both must be absolute paths", host.display())));
        }
        if permissions.is_empty() || !permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(format!("device {}: permissions {permissions:?} are not of rwm", host.display())));
        }
        let meta = std::fs::metadata(&host).map_err(|e| Error::io("look at the device", &host, e))?;
        let device = device_of(&meta, PathBuf::from(&container)).ok_or_else(|| invalid(format!("{} is not a device node", host.display())))?;
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(device.typ()));
        rule.set_major(Some(device.major()));
        rule.set_minor(Some(device.minor()));
        rule.set_access(Some(permissions));
        // In place of a host device a privileged container got at the same path.
        let devices = linux(spec).devices_mut().get_or_insert_with(Vec::new);
        devices.retain(|d| d.path() != device.path());
        devices.push(device);
        resources(spec).devices_mut().get_or_insert_with(Vec::new).push(rule);
        Ok(())
    })
}

/// The node `meta` describes, at `path` in the container; None if it is no character or block
/// device.
fn device_of(meta: &std::fs::Metadata, path: PathBuf) -> Option<oci_spec::runtime::LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let typ = match meta.file_type() {
        t if t.is_char_device() => oci_spec::runtime::LinuxDeviceType::C,
        t if t.is_block_device() => oci_spec::runtime::LinuxDeviceType::B,
        _ => return None,
    };
    let mut device = oci_spec::runtime::LinuxDevice::default();
    device.set_path(path);
    device.set_typ(typ);
    device.set_major(nix::sys::stat::major(meta.rdev()) as i64);
    device.set_minor(nix::sys::stat::minor(meta.rdev()) as i64);
    device.set_file_mode(Some(meta.mode() & 0o7777));
    device.set_uid(Some(meta.uid()));
    device.set_gid(Some(meta.gid()));
    Some(device)
}

/// Most device nodes a privileged container is given, and directories looked into: a host has
/// a few hundred nodes, a large storage host some thousands.
const MAX_HOST_DEVICES: usize = 65536;
const MAX_HOST_DEVICE_DIRS: usize = 8192;

/// The device nodes under `dev` (the host's /dev), at the same paths in the container, as
/// containerd's privileged containers get them: not the container's own pseudo-terminals, shared
/// memory, message queues or fd links, nor the host's console (the container has its own), and
/// no symlink followed.
fn host_devices(dev: &Path) -> Result<Vec<oci_spec::runtime::LinuxDevice>> {
    let mut devices = Vec::new();
    let (mut dirs, mut visited) = (vec![dev.to_path_buf()], 0);
    while let Some(dir) = dirs.pop() {
        visited += 1;
        if visited > MAX_HOST_DEVICE_DIRS {
            return Err(invalid(format!("more than {MAX_HOST_DEVICE_DIRS} directories in {}", dev.display())));
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Unplugged meanwhile (a USB bus's directory, say).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != dev => continue,
            Err(e) => return Err(Error::io("list the host's devices in", &dir, e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let name = entry.file_name();
            if meta.is_dir() {
                if !matches!(name.to_str(), Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")) {
                    dirs.push(path);
                }
                continue;
            }
            if (dir == dev && name == "console") || path.to_str().is_none() {
                continue;
            }
            let Some(device) = device_of(&meta, Path::new("/dev").join(path.strip_prefix(dev).unwrap_or(&path))) else { continue };
            if devices.len() == MAX_HOST_DEVICES {
                return Err(invalid(format!("more than {MAX_HOST_DEVICES} device nodes in {}", dev.display())));
            }
            devices.push(device);
        }
    }
    devices.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(devices)
}

/// A resource limit of the process (`nofile`, `nproc`, … or `RLIMIT_NOFILE`), soft and hard.
pub fn with_rlimit(name: String, soft: u64, hard: u64) -> SpecOpt {
    Box::new(move |spec| {
        let full = if name.starts_with("RLIMIT_") { name.clone() } else { format!("RLIMIT_{}", name.to_ascii_uppercase()) };
        let typ: oci_spec::runtime::PosixRlimitType = full.parse().map_err(|_| invalid(format!("ulimit {name:?}: no such resource limit")))?;
        if soft > hard {
            return Err(invalid(format!("ulimit {name}: the soft limit {soft} is above the hard one {hard}")));
        }
        let limit = oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(|e| invalid(format!("ulimit {name}: {e}")))?;
        let process = spec.process_mut().get_or_insert_with(Default::default);
        let mut limits: Vec<_> = process.rlimits().clone().unwrap_or_default().into_iter().filter(|l| l.typ() != typ).collect();
        limits.push(limit);
        process.set_rlimits(Some(limits));
        Ok(())
    })
}

/// Kernel parameters set in the container's namespaces (the caller checked they are namespaced).
pub fn with_sysctls(sysctls: HashMap<String, String>) -> SpecOpt {
    Box::new(move |spec| {
        linux(spec).sysctl_mut().get_or_insert_with(HashMap::new).extend(sysctls);
        Ok(())
    })
}

pub fn with_annotations(annotations: HashMap<String, String>) -> SpecOpt {
    Box::new(move |spec| {
        spec.annotations_mut().get_or_insert_with(HashMap::new).extend(annotations);
        Ok(())
    })
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Most environment entries a process gets (the kernel's own limit on the whole is a few MiB).
const MAX_ENV: usize = 32 * 1024;

/// The image's `KEY=VALUE` entries, then the caller's (a key given again replaces the earlier
/// entry in place), then PATH, HOSTNAME, HOME (and TERM with a terminal) where absent.
pub fn environment(image: &[String], extra: &[String], hostname: &str, home: &str, tty: bool) -> Result<Vec<String>> {
    if image.len() + extra.len() > MAX_ENV {
        return Err(invalid(format!("{} environment entries are more than the {MAX_ENV} allowed", image.len() + extra.len())));
    }
    let mut env: Vec<String> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut put = |entry: String, env: &mut Vec<String>, replace: bool| -> Result<()> {
        let key = match entry.split_once('=') {
            Some((key, _)) if !key.is_empty() && !entry.contains('\0') => key.to_string(),
            _ => return Err(invalid(format!("environment entry {entry:?} is not KEY=VALUE"))),
        };
        match position.get(&key) {
            Some(&at) if replace => env[at] = entry,
            Some(_) => {}
            None => {
                position.insert(key, env.len());
                env.push(entry);
            }
        }
        Ok(())
    };
    for entry in image.iter().chain(extra) {
        put(entry.clone(), &mut env, true)?;
    }
    let mut defaults = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}"), format!("HOME={home}")];
    if tty {
        defaults.push("TERM=xterm".into());
    }
    for default in defaults {
        put(default, &mut env, false)?;
    }
    Ok(env)
}

/// The capability set of a container: berth's default set with `drop` taken out and `add` put in
/// (names with or without `CAP_`, any case; `ALL` in either), or every capability berthd itself
/// has when privileged.
pub fn capability_set(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let canonical = |name: &str| -> Result<String> {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        if full == "CAP_ALL" || berth_spec::capabilities::ALL.contains(&full.as_str()) {
            Ok(full)
        } else {
            Err(invalid(format!("unknown capability {name:?}")))
        }
    };
    if privileged {
        return Ok(grantable_capabilities());
    }
    let mut caps: Vec<String> = berth_spec::capabilities::DEFAULT.iter().map(|c| c.to_string()).collect();
    for drop in drop {
        let drop = canonical(drop)?;
        caps.retain(|c| drop != "CAP_ALL" && *c != drop);
    }
    for add in add {
        let add = canonical(add)?;
        if add == "CAP_ALL" {
            caps = grantable_capabilities();
        } else if !caps.contains(&add) {
            caps.push(add);
        }
    }
    Ok(caps)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_defaults() {
        let image = ["PATH=/opt/bin".to_string(), "A=1".to_string()];
        let env = environment(&image, &["A=2".into(), "B=x=y".into()], "h", "/root", true).unwrap();
        assert_eq!(env, ["PATH=/opt/bin", "A=2", "B=x=y", "HOSTNAME=h", "HOME=/root", "TERM=xterm"]);
        assert!(environment(&image, &["NOEQUALS".into()], "h", "/", false).is_err());
        assert!(environment(&image, &["=empty".into()], "h", "/", false).is_err());
        // Many entries cost linear time, and too many are refused.
        let many: Vec<String> = (0..MAX_ENV - 2).map(|i| format!("K{i}=v")).collect();
        assert_eq!(environment(&image, &many, "h", "/", false).unwrap().len(), MAX_ENV + 2, "and HOSTNAME and HOME");
        let too_many: Vec<String> = (0..100_000).map(|i| format!("K{i}=v")).collect();
        assert!(environment(&image, &too_many, "h", "/", false).unwrap_err().to_string().contains("more than"));
    }

    #[test]
    fn a_privileged_container_gets_the_hosts_device_nodes_but_not_its_console_or_terminals() {
        let devices = host_devices(Path::new("/dev")).unwrap();
        let null = devices.iter().find(|d| d.path() == Path::new("/dev/null")).expect("/dev/null");
        assert_eq!((null.typ(), null.major(), null.minor()), (oci_spec::runtime::LinuxDeviceType::C, 1, 3));
        for skipped in ["/dev/console", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd"] {
            assert!(!devices.iter().any(|d| d.path().starts_with(skipped)), "{skipped}");
        }
        // A device the request maps to a path of the host's own replaces it, whichever comes first.
        for privileged_first in [true, false] {
            let mut opts = vec![with_device("/dev/zero".into(), "/dev/null".into(), "r".into())];
            opts.insert(if privileged_first { 0 } else { 1 }, with_privileged());
            let spec = build(opts).unwrap();
            let at_null: Vec<_> = spec.linux().as_ref().unwrap().devices().iter().flatten().filter(|d| d.path() == Path::new("/dev/null")).collect();
            assert_eq!(at_null.len(), 1, "privileged first: {privileged_first}");
            assert_eq!(at_null[0].minor(), 5, "privileged first: {privileged_first}");
        }
    }
}
