//! berth-oci: parse the runc command line, call the berth-oci library, map the outcome to runc's
//! exit codes (0 ok, 1 error; `run` and foreground `exec` exit with the container process's status).

mod cli;
mod commands;
mod log;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let logger = log::Logger::new(cli.log.clone(), cli.log_format, cli.debug);
    let code = match dispatch(&cli, &logger) {
        Ok(code) => code,
        Err(e) => {
            logger.error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: &Cli, logger: &log::Logger) -> anyhow::Result<i32> {
    if matches!(cli.command, Command::Create(_) | Command::Run(_) | Command::Exec(_)) && !berth_oci::sys::sealed_exe::running_sealed() {
        // Only returns if the re-exec failed; running on unprotected would expose the binary.
        let error = berth_oci::sys::sealed_exe::reexec_sealed();
        anyhow::bail!("re-executing from a sealed copy of berth-oci (CVE-2019-5736 protection): {error}");
    }
    let root = &cli.state_root()?;
    logger.debug(&format!("root {}", root.display()));
    match &cli.command {
        Command::Spec(args) => commands::spec::run(args),
        Command::Create(args) => commands::lifecycle::create(root, args, cli.systemd_cgroup),
        Command::Start { id } => commands::lifecycle::start(root, id, logger),
        Command::Run(args) => commands::lifecycle::run(root, args, logger, cli.systemd_cgroup),
        Command::State { id } => commands::query::state(root, id),
        Command::Kill { id, signal, all } => commands::lifecycle::kill(root, id, signal.as_deref(), *all),
        Command::Delete { id, force } => commands::lifecycle::delete(root, id, *force, logger),
        Command::List { format, quiet } => commands::query::list(root, format, *quiet),
        Command::Ps { id, format, ps_args } => commands::query::ps(root, id, format, ps_args),
        Command::Exec(args) => commands::exec::run(root, args),
        Command::Pause { id } => berth_oci::manage::pause(root, id).map(|_| 0).map_err(Into::into),
        Command::Resume { id } => berth_oci::manage::resume(root, id).map(|_| 0).map_err(Into::into),
        Command::Update(args) => commands::update::run(root, args),
        Command::Events { id, stats, interval } => commands::query::events(root, id, *stats, interval),
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&berth_oci::features::features())?);
            Ok(0)
        }
    }
}
