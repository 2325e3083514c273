//! Loading and validating a bundle's config.json. Everything here is hostile input: it is bounded in
//! size, parsed by oci-spec, then checked for what the kernel would otherwise reject half way through.

use crate::{Error, Result};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Process, Spec};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// config.json larger than this is refused before parsing.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A loaded bundle: its directory, the parsed spec, and the rootfs made absolute.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
    /// Per mount (in spec order), the idmap mappings of runtime-spec 1.1, which oci-spec's `Mount`
    /// does not carry.
    pub mount_id_mappings: Vec<MountIdMappings>,
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct MountIdMappings {
    #[serde(default, rename = "uidMappings")]
    pub uid: Option<Vec<LinuxIdMapping>>,
    #[serde(default, rename = "gidMappings")]
    pub gid: Option<Vec<LinuxIdMapping>>,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("bundle", dir, e))?;
        let config_path = dir.join("config.json");
        let text = read_config(&config_path)?;
        let (spec, mount_id_mappings) = parse_config(&config_path, &text)?;
        let root = spec.root().as_ref().ok_or_else(|| Error::config(&config_path, "root is missing"))?;
        let rootfs = dir.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| Error::io("rootfs", &rootfs, e))?;
        if !rootfs.is_dir() {
            return Err(Error::config(&config_path, format!("root.path {} is not a directory", rootfs.display())));
        }
        Ok(Bundle { dir, spec, rootfs, mount_id_mappings })
    }
}

pub fn load_spec(path: &Path) -> Result<Spec> {
    parse_spec(path, &read_config(path)?)
}

fn read_config(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(|e| Error::io("read", path, e))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::config(path, format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(text)
}

/// Everything `create` takes from config.json text, parsed and validated, touching nothing on disk
/// (`path` only names the file in errors). The fuzz target `config_json` drives this.
pub fn parse_config(path: &Path, text: &str) -> Result<(Spec, Vec<MountIdMappings>)> {
    let spec = parse_spec(path, text)?;
    validate(&spec).map_err(|reason| Error::config(path, reason))?;
    #[derive(serde::Deserialize)]
    struct Mounts {
        #[serde(default)]
        mounts: Option<Vec<MountIdMappings>>,
    }
    let mounts: Mounts = serde_json::from_str(text).map_err(|e| Error::config(path, e.to_string()))?;
    Ok((spec, mounts.mounts.unwrap_or_default()))
}

/// A process.json (`exec --process`): parsed, with args present and ids valid.
pub fn parse_process(path: &Path, text: &str) -> Result<Process> {
    let process: Process = serde_json::from_str(text).map_err(|e| Error::config(path, e.to_string()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::config(path, "args must not be empty"));
    }
    validate_process(&process).map_err(|reason| Error::config(path, reason))?;
    Ok(process)
}

/// `uid[:gid]` as `exec --user` takes it: numbers only (names would mean reading the container's
/// /etc/passwd, which is the caller's business). The gid is None when not given.
pub fn parse_user(user: &str) -> std::result::Result<(u32, Option<u32>), String> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let number = |s: &str| s.parse::<u32>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
    let bad = || format!("user {user:?}: expected uid[:gid] as decimal numbers");
    let uid = number(uid).ok_or_else(bad)?;
    let gid = gid.map(|g| number(g).ok_or_else(bad)).transpose()?;
    Ok((uid, gid))
}

/// Parses and version-checks config.json text (`path` only names it in errors).
pub fn parse_spec(path: &Path, text: &str) -> Result<Spec> {
    let spec: Spec = serde_json::from_str(text).map_err(|e| Error::config(path, e.to_string()))?;
    check_version(spec.version()).map_err(|reason| Error::config(path, reason))?;
    Ok(spec)
}

fn check_version(version: &str) -> std::result::Result<(), String> {
    let major = version.split('.').next().unwrap_or("");
    if major != "1" || version.split('.').count() < 2 {
        return Err(format!("unsupported ociVersion {version:?} (this runtime implements 1.x)"));
    }
    Ok(())
}

/// Checks the parts of the spec the kernel would only reject after we started building the container.
pub fn validate(spec: &Spec) -> std::result::Result<(), String> {
    // Optional (runtime-spec): such a container has namespaces, mounts and a cgroup, and `start`
    // refuses it, there being nothing to start.
    if let Some(process) = spec.process() {
        validate_process(process)?;
    }
    let linux = spec.linux().as_ref().ok_or("linux section is missing")?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = HashSet::new();
    for ns in &namespaces {
        if !seen.insert(ns.typ()) {
            return Err(format!("namespace {:?} is given twice", ns.typ()));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(format!("namespace path {} is not absolute", path.display()));
            }
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    let has_mappings = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_mappings && !has(LinuxNamespaceType::User) {
        return Err("uidMappings/gidMappings need a user namespace".into());
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err("hostname needs a uts namespace".into());
    }
    // Without a mount namespace the container shares the runtime's (as runc and crun allow): the
    // spec's mounts are made there beneath the rootfs and taken down at delete
    // (crate::shared_mounts). What would change the runtime's own mounts is refused, not
    // ignored, as runc refuses masked and read-only paths.
    if !has(LinuxNamespaceType::Mount) {
        if linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty()) || linux.readonly_paths().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err("maskedPaths and readonlyPaths need a mount namespace".into());
        }
        let mounts = spec.mounts().as_deref().unwrap_or(&[]);
        // A bind would join the peer group of its host source: what is mounted on it, or beneath
        // it, would propagate onto the host's own tree.
        if mounts.iter().any(is_bind) {
            return Err("bind mounts need a mount namespace (in the runtime's, a bind joins its host source's peer group)".into());
        }
        // The root of a user namespace may not mount in a mount namespace its parent owns.
        if has(LinuxNamespaceType::User) && !mounts.is_empty() {
            return Err("mounts in a user namespace need a mount namespace".into());
        }
        // Device nodes go on the spec's /dev, which goes at delete, never in the rootfs itself.
        if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) && !mounts.iter().any(|m| m.destination() == Path::new("/dev")) {
            return Err("linux.devices without a mount namespace need a /dev mount".into());
        }
        if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            return Err("a read-only root needs a mount namespace".into());
        }
        if linux.rootfs_propagation().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err("rootfsPropagation needs a mount namespace".into());
        }
    }
    for (key, value) in linux.sysctl().iter().flatten() {
        crate::sysctl::check(key, value, &|t| has(t))?;
    }
    for mount in spec.mounts().iter().flatten() {
        if mount.destination().as_os_str().is_empty() {
            return Err("a mount has an empty destination".into());
        }
    }
    if let Some(hooks) = spec.hooks() {
        for hook in [hooks.prestart(), hooks.create_runtime(), hooks.create_container(), hooks.start_container(), hooks.poststart(), hooks.poststop()]
            .into_iter()
            .flatten()
            .flatten()
        {
            if !hook.path().is_absolute() {
                return Err(format!("hook path {} is not absolute", hook.path().display()));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(format!("hook {} has a timeout that is not positive", hook.path().display()));
            }
        }
    }
    Ok(())
}

/// Whether a spec mount is a bind (its type, or a `bind`/`rbind` option, as runc reads it).
pub(crate) fn is_bind(mount: &oci_spec::runtime::Mount) -> bool {
    mount.typ().as_deref() == Some("bind") || mount.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
}

/// The checks a process gets wherever it comes from: config.json, or `exec`'s flags or --process.
pub fn validate_process(process: &Process) -> std::result::Result<(), String> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args must not be empty".into());
    }
    if !process.cwd().is_absolute() {
        return Err(format!("process.cwd {} is not absolute", process.cwd().display()));
    }
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(format!("process.oomScoreAdj {adj} is outside -1000..1000"));
        }
    }
    let mut rlimit_types = HashSet::new();
    for rlimit in process.rlimits().iter().flatten() {
        if !rlimit_types.insert(format!("{:?}", rlimit.typ())) {
            return Err(format!("rlimit {:?} is given twice", rlimit.typ()));
        }
        if rlimit.soft() > rlimit.hard() {
            return Err(format!("rlimit {:?}: soft {} exceeds hard {}", rlimit.typ(), rlimit.soft(), rlimit.hard()));
        }
    }
    // (uid_t)-1 tells setresuid "leave unchanged": the process would keep running as root
    // (CVE-2024-40635 class: an id that cannot be set must never become 0).
    let user = process.user();
    for (what, id) in
        [("uid", user.uid()), ("gid", user.gid())].into_iter().chain(user.additional_gids().iter().flatten().map(|g| ("additionalGids", *g)))
    {
        if id == u32::MAX {
            return Err(format!("process.user.{what} {id} is not a valid id"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check_version("1.0.2").is_ok());
        assert!(check_version("1.2.0").is_ok());
        assert!(check_version("2.0.0").is_err());
        assert!(check_version("1").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn default_spec_is_valid() {
        validate(&Spec::default()).unwrap();
    }

    #[test]
    fn rejects_bad_processes() {
        let mut spec = Spec::default();
        spec.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        assert!(validate(&spec).is_err());
        let mut spec = Spec::default();
        spec.process_mut().as_mut().unwrap().set_cwd("relative".into());
        assert!(validate(&spec).is_err());
    }

    #[test]
    fn users_are_numbers_only() {
        assert_eq!(parse_user("1000"), Ok((1000, None)));
        assert_eq!(parse_user("0:5"), Ok((0, Some(5))));
        for bad in ["", ":", "1000:", ":5", "+1", "1 ", "root", "1:2:3", "4294967296", "-1"] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
    }
}
