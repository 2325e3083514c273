//! berth: the command line over berthd (berth.v1 on a unix socket). Image verbs are in
//! [`images`], container verbs in [`containers`]; streams to a running container (run, attach,
//! exec) go straight to its shim ([`stream`]). Errors are printed as berthd states them and the
//! exit status is 1 — except where the container's own status is the answer (run, exec, wait).

mod containers;
mod format;
mod images;
mod networks;
mod stream;
mod volumes;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "berth", version, about = "berth: run containers from images")]
struct Cli {
    /// berthd's socket; else $BERTH_HOST or $CONTAINER_HOST (`unix:///path` or a path, as
    /// docker's and podman's clients take them), else the default.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Images(images::ImageCommand),
    #[command(flatten)]
    Containers(Box<containers::ContainerCommand>),
    /// Manage berth's bridge networks.
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    /// Manage named and anonymous volumes.
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Print a shell completion script: `source <(berth completion bash)`, or install it where
    /// the shell looks (scripts/install.sh does).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write berth's man pages (berth.1 and one per verb) into a directory.
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Show containers (or, failing that, images) as a JSON array, one object per name found, as
    /// docker's inspect prints it.
    #[command(after_help = "Examples:\n  berth inspect web | jq '.[0].network.ips'\n  berth inspect --format '{{.state}} {{.pid}}' web db")]
    Inspect {
        /// A Go template applied to each object instead (`{{.state}}`, `{{json .network}}`).
        #[arg(long, short = 'f', value_name = "TEMPLATE", value_parser = format::output)]
        format: Option<format::Output>,
        /// Containers or images by name or id.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// The largest `inspect` answer taken.
const MAX_INSPECT: usize = 64 << 20;

/// Exit status of a usage error (an unknown flag, a bad value), as docker's and podman's.
const USAGE: i32 = 125;

fn main() {
    // Rust ignores SIGPIPE; a CLI whose reader went (`berth logs x | head -1`) should end quietly
    // by it, as docker's and podman's do, not print "Broken pipe".
    // SAFETY: SIG_DFL installs no handler; nothing else runs yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::exit(containers::exit_code_of(&e));
        }
    }
}

/// Where berthd listens: `--socket`, $BERTH_HOST, $CONTAINER_HOST, or the default.
fn socket(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path);
    }
    for variable in ["BERTH_HOST", "CONTAINER_HOST"] {
        let Some(value) = std::env::var_os(variable).filter(|v| !v.is_empty()) else { continue };
        let value = value.to_string_lossy().into_owned();
        match value.strip_prefix("unix://") {
            Some(path) => return Ok(PathBuf::from(path)),
            None if !value.contains("://") => return Ok(PathBuf::from(value)),
            // podman's variable may name a remote podman (ssh://…): not berth's business.
            None if variable == "CONTAINER_HOST" => continue,
            None => anyhow::bail!("{variable}={value}: berthd listens on a unix socket (unix:///path)"),
        }
    }
    Ok(PathBuf::from(berth_api::DEFAULT_SOCKET))
}

/// Applies `op` to every name, as docker does: one that fails (its error printed) does not keep
/// the rest; each that worked prints the line `op` gives (the name, mostly). Exit status 1 if
/// any failed.
pub async fn each(names: Vec<String>, mut op: impl AsyncFnMut(String) -> Result<String, tonic::Status>) -> i32 {
    let mut failed = false;
    for name in names {
        match op(name).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("berth: {:#}", status(e));
                failed = true;
            }
        }
    }
    i32::from(failed)
}

/// The message berthd gave, not the transport's wrapping of it.
pub fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

/// The man pages of the command line as clap knows it: berth.1, then berth-<verb>.1 (and
/// berth-<verb>-<sub>.1 below), as git and podman name theirs.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    fn page(command: &clap::Command, name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
        let command = command.clone().name(name.to_string());
        let mut text = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut text)?;
        std::fs::write(dir.join(format!("{name}.1")), text).with_context(|| format!("write {}", dir.join(name).display()))?;
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            page(sub, &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    page(&<Cli as clap::CommandFactory>::command(), "berth", dir)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    // What needs no berthd.
    match &cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut <Cli as clap::CommandFactory>::command(), "berth", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Man { dir } => return write_man_pages(dir).map(|()| 0),
        _ => {}
    }
    let socket = socket(cli.socket)?;
    let channel = berth_api::connect(&socket).await.with_context(|| format!("connect to berthd at {} (is it running?)", socket.display()))?;
    match cli.command {
        Command::Images(command) => images::run(channel, command).await,
        Command::Containers(command) => containers::run(channel, *command).await,
        Command::Network(command) => networks::run(channel, command).await,
        Command::Volume(command) => volumes::run(channel, command).await,
        Command::Completion { .. } | Command::Man { .. } => Ok(0),
        Command::Inspect { format, names } => {
            // An inspect carries the container's whole spec: as large as an image config may make
            // it (the image service caps configs), above tonic's 4 MiB default.
            let mut client = berth_api::v1::containers_client::ContainersClient::new(channel.clone()).max_decoding_message_size(MAX_INSPECT);
            let (mut shown, mut failed) = (Vec::new(), None);
            for name in &names {
                let inspected = match client.inspect(berth_api::v1::ContainerRef { container: name.clone() }).await {
                    Ok(container) => Ok(containers::container_json(&container.into_inner(), true)),
                    Err(e) if e.code() == tonic::Code::NotFound => images::inspect(channel.clone(), name.clone()).await,
                    Err(e) => Err(status(e)),
                };
                match inspected {
                    Ok(json) => shown.push(json),
                    Err(e) => {
                        if let Some(earlier) = failed.replace(e) {
                            eprintln!("berth: {earlier:#}");
                        }
                    }
                }
            }
            match format {
                Some(format::Output::Template { text, .. }) => format::print_template(&text, false, &shown)?,
                // An array even for one name, and `[]` for none found, as docker prints.
                _ => println!("{}", serde_json::to_string_pretty(&shown)?),
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(0),
            }
        }
    }
}
