//! create, start, run, kill, delete.

use super::tty::{proxy_until_exit, take_our_size, LocalConsole};
use crate::cli::{CreateArgs, RunArgs};
use crate::log::Logger;
use berth_oci::{CreateOptions, Error};
use std::path::Path;

fn create_options(args: &CreateArgs, foreground: bool, systemd_cgroup: bool) -> CreateOptions {
    CreateOptions {
        systemd_cgroup,
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        preserve_fds: args.preserve_fds,
        foreground,
    }
}

fn report(warnings: Vec<Error>, logger: &Logger) {
    for warning in warnings {
        logger.warn(&warning.full_message());
    }
}

pub fn create(root: &Path, args: &CreateArgs, systemd_cgroup: bool) -> anyhow::Result<i32> {
    berth_oci::create(root, &create_options(args, false, systemd_cgroup))?;
    Ok(0)
}

pub fn start(root: &Path, id: &str, logger: &Logger) -> anyhow::Result<i32> {
    report(berth_oci::start(root, id)?, logger);
    Ok(0)
}

/// create + start; in the foreground wait for the init, then delete unless --keep.
pub fn run(root: &Path, args: &RunArgs, logger: &Logger, systemd_cgroup: bool) -> anyhow::Result<i32> {
    let id = &args.create.id;
    let mut options = create_options(&args.create, !args.detach, systemd_cgroup);
    // A terminal process in the foreground without a console socket gets our own terminal.
    let console = if !args.detach && options.console_socket.is_none() && wants_terminal(&args.create.bundle)? {
        let console = LocalConsole::new(root)?;
        options.console_socket = Some(console.path());
        Some(console)
    } else {
        None
    };
    let container = berth_oci::create(root, &options)?;
    let master = console.as_ref().map(LocalConsole::take_master).transpose();
    let master = match master {
        Ok(master) => master,
        Err(e) => {
            let _ = berth_oci::delete(root, id, true);
            return Err(e);
        }
    };
    if let Some(master) = &master {
        take_our_size(std::os::fd::AsFd::as_fd(master));
    }
    if let Err(e) = berth_oci::start(root, id).map(|w| report(w, logger)) {
        let _ = berth_oci::delete(root, id, true);
        return Err(e.into());
    }
    if args.detach {
        return Ok(0);
    }
    let code = match master {
        Some(master) => proxy_until_exit(master, container.pid),
        None => berth_oci::wait::wait_forwarding(container.pid).map_err(Into::into),
    };
    if !args.keep {
        report(berth_oci::delete(root, id, true)?, logger);
    }
    code
}

fn wants_terminal(bundle: &Path) -> anyhow::Result<bool> {
    let spec = berth_oci::spec::load_spec(&bundle.join("config.json"))?;
    Ok(spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false))
}

pub fn kill(root: &Path, id: &str, signal: Option<&str>, all: bool) -> anyhow::Result<i32> {
    let signal = berth_oci::parse_signal(signal.unwrap_or("SIGTERM"))?;
    berth_oci::kill(root, id, signal, all)?;
    Ok(0)
}

pub fn delete(root: &Path, id: &str, force: bool, logger: &Logger) -> anyhow::Result<i32> {
    report(berth_oci::delete(root, id, force)?, logger);
    Ok(0)
}
