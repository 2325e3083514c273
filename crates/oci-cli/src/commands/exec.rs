//! `exec`: build the process (from --process, or from the container's own process with the flags
//! applied, as runc does), start it, and in the foreground wait for it.

use super::tty::{proxy_until_exit, LocalConsole};
use crate::cli::ExecArgs;
use anyhow::{bail, Context};
use berth_oci::state::Container;
use berth_oci::ExecOptions;
use oci_spec::runtime::{Capability, Process};
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

/// A process.json larger than this is refused.
const MAX_PROCESS_JSON: u64 = 4 << 20;

/// runc's `--cgroup [CONTROLLER[,CONTROLLER…]:]PATH`, each given once: controller ("" for every
/// one) to path.
fn sub_cgroups(specs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut paths = std::collections::BTreeMap::new();
    for spec in specs {
        let (controllers, path) = spec.split_once(':').unwrap_or(("", spec));
        if path.is_empty() {
            anyhow::bail!("--cgroup {spec:?}: use [CONTROLLER[,CONTROLLER...]:]PATH");
        }
        for controller in controllers.split(',') {
            if paths.insert(controller.to_string(), path.to_string()).is_some() {
                anyhow::bail!("--cgroup {spec:?}: controller {controller:?} is given twice");
            }
        }
    }
    Ok(paths)
}

pub fn run(root: &Path, args: &ExecArgs) -> anyhow::Result<i32> {
    let process = build_process(root, args)?;
    let terminal = process.terminal().unwrap_or(false);
    let console = if terminal && !args.detach && args.console_socket.is_none() { Some(LocalConsole::new(root)?) } else { None };
    let options = ExecOptions {
        process,
        console_socket: args.console_socket.clone().or_else(|| console.as_ref().map(LocalConsole::path)),
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
        ignore_paused: args.ignore_paused,
        sub_cgroup: sub_cgroups(&args.cgroup)?,
    };
    let pid = berth_oci::exec(root, &args.id, &options)?;
    if args.detach {
        return Ok(0);
    }
    match console {
        Some(console) => proxy_until_exit(console.take_master()?, pid),
        None => Ok(berth_oci::wait::wait_forwarding(pid)?),
    }
}

fn build_process(root: &Path, args: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut text = String::new();
        file.take(MAX_PROCESS_JSON + 1).read_to_string(&mut text).with_context(|| format!("read {}", path.display()))?;
        if text.len() as u64 > MAX_PROCESS_JSON {
            bail!("{} is larger than {MAX_PROCESS_JSON} bytes", path.display());
        }
        return Ok(berth_oci::spec::parse_process(path, &text)?);
    }
    if args.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let container = Container::load(root, &args.id)?;
    let mut process = container.config.process().clone().context("the container has no process")?;
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut env = process.env().clone().unwrap_or_default();
    for entry in &args.env {
        let key = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(user) = &args.user {
        let (uid, gid) = berth_oci::spec::parse_user(user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
        process.user_mut().set_uid(uid);
        let gid = gid.unwrap_or(process.user().gid());
        process.user_mut().set_gid(gid);
    }
    if !args.additional_gids.is_empty() {
        process.user_mut().set_additional_gids(Some(args.additional_gids.clone()));
    }
    if let Some(label) = &args.process_label {
        process.set_selinux_label(Some(label.clone()));
    }
    if let Some(profile) = &args.apparmor {
        process.set_apparmor_profile(Some(profile.clone()));
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !args.cap.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        for name in &args.cap {
            let bare = name.strip_prefix("CAP_").unwrap_or(name);
            let cap = Capability::from_str(bare).map_err(|_| anyhow::anyhow!("unknown capability {name}"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        process.set_capabilities(Some(caps));
    }
    Ok(process)
}
