//! The runtime spec (config.json) of a container: `berth-oci spec`'s template, then the image's
//! config, then the user's options, in that order of precedence — as `docker run` composes them.
//! Edited as JSON: the runtime validates the result, and the template's types stay the runtime's.

use crate::image_config::RunConfig;
use crate::options::{CreateOptions, Network};
use crate::passwd::ResolvedUser;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container gets unless it asks otherwise: the capabilities docker and podman grant (more
/// than runc's template, which breaks chown, su and ping in ordinary images).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability this kernel generation knows, in the order of their numbers (for
/// `--privileged` and `--cap-add ALL`, which get those of them berthd itself may hold).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub options: &'a CreateOptions,
    pub image: &'a RunConfig,
    pub user: &'a ResolvedUser,
    pub hostname: &'a str,
    /// Files berthd wrote for the container (hosts, hostname, resolv.conf), bound read-only.
    pub etc_files: &'a [(String, std::path::PathBuf)],
}

/// The process's argv: entrypoint + command, with the user's overrides.
pub fn command(options: &CreateOptions, image: &RunConfig) -> Result<Vec<String>> {
    let (entrypoint, cmd) = match &options.entrypoint {
        Some(entrypoint) => (entrypoint.clone(), options.args.clone()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            if options.args.is_empty() { image.cmd.clone().unwrap_or_default() } else { options.args.clone() },
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(Error::Invalid("no command: the image has no Entrypoint or Cmd, give one".into()));
    }
    Ok(argv)
}

/// Image env, then the user's `KEY=VALUE` (same key replaces), then PATH/HOSTNAME/HOME/TERM
/// defaults where absent.
pub fn environment(options: &CreateOptions, image: &RunConfig, hostname: &str, home: &str) -> Result<Vec<String>> {
    let mut env: Vec<String> = Vec::new();
    for entry in image.env.iter().flatten().chain(&options.env) {
        let Some((key, _)) = entry.split_once('=') else {
            return Err(Error::Invalid(format!("environment entry {entry:?} has no '='")));
        };
        if key.is_empty() || key.contains('\0') || entry.contains('\0') {
            return Err(Error::Invalid(format!("environment entry {entry:?} is not KEY=VALUE")));
        }
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(entry.clone());
    }
    let mut defaults = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}"), format!("HOME={home}")];
    if options.tty {
        defaults.push("TERM=xterm".into());
    }
    for default in defaults {
        let key = default.split_once('=').map(|(k, _)| k).unwrap_or_default().to_string();
        if !env.iter().any(|e| e.split_once('=').map(|(k, _)| k) == Some(key.as_str())) {
            env.push(default);
        }
    }
    Ok(env)
}

/// The capabilities in berthd's own bounding set: a container cannot be given more (here, for
/// one, root lacks CAP_SYS_RESOURCE).
fn grantable() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(u64::MAX);
    ALL_CAPABILITIES.iter().enumerate().filter(|(bit, _)| bounding & (1 << bit) != 0).map(|(_, c)| c.to_string()).collect()
}

fn capabilities(options: &CreateOptions) -> Result<Vec<String>> {
    let canonical = |name: &str| -> Result<String> {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        if full == "CAP_ALL" || ALL_CAPABILITIES.contains(&full.as_str()) {
            Ok(full)
        } else {
            Err(Error::Invalid(format!("unknown capability {name:?}")))
        }
    };
    if options.privileged {
        return Ok(grantable());
    }
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    for drop in &options.cap_drop {
        let drop = canonical(drop)?;
        caps.retain(|c| drop != "CAP_ALL" && *c != drop);
    }
    for add in &options.cap_add {
        let add = canonical(add)?;
        if add == "CAP_ALL" {
            caps = grantable();
        } else if !caps.contains(&add) {
            caps.push(add);
        }
    }
    Ok(caps)
}

pub fn build(inputs: &SpecInputs) -> Result<Value> {
    let SpecInputs { id, options, image, user, hostname, etc_files } = inputs;
    let mut spec = serde_json::to_value(berth_oci::template::default_spec(false)).map_err(|e| Error::Invalid(format!("template spec: {e}")))?;
    let argv = command(options, image)?;
    let process = &mut spec["process"];
    process["args"] = json!(argv);
    process["env"] = json!(environment(options, image, hostname, &user.home)?);
    process["cwd"] = json!(options.workdir.clone().or_else(|| image.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()));
    if !process["cwd"].as_str().unwrap_or("/").starts_with('/') {
        return Err(Error::Invalid(format!("working directory {} is not absolute", process["cwd"])));
    }
    process["user"] = json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    process["terminal"] = json!(options.tty);
    if let (true, Some((width, height))) = (options.tty, options.console_size) {
        process["consoleSize"] = json!({"width": width, "height": height});
    }
    let caps = capabilities(options)?;
    process["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    // Processes keep no privilege they did not start with (setuid binaries excepted only when privileged).
    process["noNewPrivileges"] = json!(!options.privileged);

    spec["hostname"] = json!(hostname);
    spec["root"] = json!({"path": "rootfs", "readonly": options.read_only});
    let mounts = spec["mounts"].as_array_mut().expect("the template has mounts");
    for (target, source) in etc_files.iter() {
        mounts.push(json!({"destination": target, "type": "bind", "source": source, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
    }
    for volume in &options.volumes {
        if !volume.source.starts_with('/') || !volume.target.starts_with('/') {
            return Err(Error::Invalid(format!("volume {}:{}: source and target must be absolute paths", volume.source, volume.target)));
        }
        if !Path::new(&volume.source).exists() {
            return Err(Error::Invalid(format!("volume source {} does not exist", volume.source)));
        }
        let mut opts = vec!["rbind", "rprivate"];
        opts.push(if volume.read_only { "ro" } else { "rw" });
        mounts.push(json!({"destination": volume.target, "type": "bind", "source": volume.source, "options": opts}));
    }

    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(format!("/berth/{id}"));
    if options.network == Network::Host {
        if let Some(namespaces) = linux["namespaces"].as_array_mut() {
            namespaces.retain(|ns| ns["type"] != "network");
        }
    }
    let mut resources = json!({"devices": linux["resources"]["devices"].clone()});
    if let Some(memory) = options.memory {
        if memory <= 0 {
            return Err(Error::Invalid(format!("memory limit {memory} must be positive")));
        }
        resources["memory"] = json!({"limit": memory});
    }
    if let Some(cpus) = options.cpus {
        if !(cpus > 0.0 && cpus <= 4096.0) {
            return Err(Error::Invalid(format!("cpus {cpus} must be above 0")));
        }
        resources["cpu"] = json!({"quota": (cpus * 100_000.0) as i64, "period": 100_000});
    }
    if let Some(pids) = options.pids_limit {
        if pids <= 0 {
            return Err(Error::Invalid(format!("pids limit {pids} must be positive")));
        }
        resources["pids"] = json!({"limit": pids});
    }
    if options.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        linux.as_object_mut().expect("linux is an object").remove("seccomp");
    } else {
        let bounding: oci_spec::runtime::Capabilities =
            serde_json::from_value(json!(caps)).map_err(|e| Error::Invalid(format!("capabilities: {e}")))?;
        linux["seccomp"] = serde_json::to_value(berth_oci::seccomp_profile::default_profile(&bounding))
            .map_err(|e| Error::Invalid(format!("seccomp profile: {e}")))?;
    }
    linux["resources"] = resources;
    let mut annotations = serde_json::Map::new();
    for (key, value) in &options.labels {
        annotations.insert(format!("berth.label.{key}"), json!(value));
    }
    spec["annotations"] = Value::Object(annotations);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Volume;

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            env: Some(vec!["PATH=/opt/bin".into(), "A=1".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn command_precedence() {
        let mut options = CreateOptions::default();
        assert_eq!(command(&options, &image()).unwrap(), ["/entry", "serve"]);
        options.args = vec!["other".into()];
        assert_eq!(command(&options, &image()).unwrap(), ["/entry", "other"]);
        options.entrypoint = Some(vec!["/bin/sh".into()]);
        options.args.clear();
        assert_eq!(command(&options, &image()).unwrap(), ["/bin/sh"]);
        assert!(command(&CreateOptions::default(), &RunConfig::default()).is_err());
    }

    #[test]
    fn environment_overrides_and_defaults() {
        let options = CreateOptions { env: vec!["A=2".into(), "B=x=y".into()], tty: true, ..Default::default() };
        let env = environment(&options, &image(), "h", "/root").unwrap();
        assert_eq!(env, ["PATH=/opt/bin", "A=2", "B=x=y", "HOSTNAME=h", "HOME=/root", "TERM=xterm"]);
        let bad = CreateOptions { env: vec!["NOEQUALS".into()], ..Default::default() };
        assert!(environment(&bad, &image(), "h", "/").is_err());
    }

    #[test]
    fn options_shape_the_spec() {
        let options = CreateOptions {
            cap_drop: vec!["all".into()],
            cap_add: vec!["net_admin".into()],
            network: Network::Host,
            memory: Some(64 << 20),
            read_only: true,
            volumes: vec![Volume { source: "/tmp".into(), target: "/data".into(), read_only: true }],
            ..Default::default()
        };
        let user = ResolvedUser { uid: 33, gid: 33, additional_gids: vec![4], home: "/var/www".into() };
        let spec = build(&SpecInputs { id: "abc", options: &options, image: &image(), user: &user, hostname: "h", etc_files: &[] }).unwrap();
        assert_eq!(spec["process"]["capabilities"]["bounding"], json!(["CAP_NET_ADMIN"]));
        assert!(spec["linux"]["namespaces"].as_array().unwrap().iter().all(|ns| ns["type"] != "network"));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], json!(64 << 20));
        assert_eq!(spec["root"]["readonly"], json!(true));
        assert_eq!(spec["process"]["user"], json!({"uid": 33, "gid": 33, "additionalGids": [4]}));
        assert!(spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/data" && m["options"].as_array().unwrap().contains(&json!("ro"))));
        assert!(spec["linux"]["seccomp"].is_object());
        let missing =
            CreateOptions { volumes: vec![Volume { source: "/nonexistent/x".into(), target: "/x".into(), read_only: false }], ..Default::default() };
        let err = build(&SpecInputs { id: "abc", options: &missing, image: &image(), user: &user, hostname: "h", etc_files: &[] }).unwrap_err();
        assert!(err.to_string().contains("volume source /nonexistent/x does not exist"));
        let relative =
            CreateOptions { volumes: vec![Volume { source: "/tmp".into(), target: "data".into(), read_only: false }], ..Default::default() };
        assert!(build(&SpecInputs { id: "abc", options: &relative, image: &image(), user: &user, hostname: "h", etc_files: &[] })
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        let bad_cap = CreateOptions { cap_add: vec!["CAP_NOPE".into()], ..Default::default() };
        assert!(build(&SpecInputs { id: "abc", options: &bad_cap, image: &image(), user: &user, hostname: "h", etc_files: &[] }).is_err());
    }
}
