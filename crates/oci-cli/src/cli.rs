//! The command line, flag for flag as runc's, so containerd, podman/conmon and cri-o can drive it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "berth-oci", version, about = "berth's OCI runtime (runc-compatible command line)")]
pub struct Cli {
    /// Root directory for container state [default: /run/berth-oci, or $XDG_RUNTIME_DIR/berth-oci
    /// for a user other than root].
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Append log messages (and errors) to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Let systemd make the cgroup: a transient scope named by a slice:prefix:name cgroupsPath.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility; rootless mode is detected.
    #[arg(long, hide = true)]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility (checkpointing is not supported).
    #[arg(long, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The state root: as given, else root's system-wide one, else the user's runtime directory
    /// (rootless: a user cannot write /run, and must not share state with root).
    pub fn state_root(&self) -> anyhow::Result<PathBuf> {
        if let Some(root) = &self.root {
            return Ok(root.clone());
        }
        if nix::unistd::geteuid().is_root() {
            return Ok(PathBuf::from("/run/berth-oci"));
        }
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => Ok(PathBuf::from(dir).join("berth-oci")),
            None => anyhow::bail!("running as a user other than root: set XDG_RUNTIME_DIR or pass --root"),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new specification file (config.json).
    Spec(SpecArgs),
    /// Create a container (it waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container; in the foreground, exit with its status.
    Run(RunArgs),
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init.
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it holds.
    Delete {
        id: String,
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the processes running in a container.
    Ps {
        id: String,
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Options passed to ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a running container's resource limits.
    Update(UpdateArgs),
    /// Print container statistics (and events).
    Events {
        id: String,
        /// Print one set of statistics and exit.
        #[arg(long)]
        stats: bool,
        /// Statistics interval, e.g. 5s or 500ms.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Print the runtime-spec features document.
    Features,
}

#[derive(Args)]
pub struct SpecArgs {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for running as an unprivileged user (user namespace, no cgroups, no net namespace).
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Args, Clone)]
pub struct CreateArgs {
    pub id: String,
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A JSON file with a runtime-spec process.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    #[arg(short, long = "cap")]
    pub cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The SELinux label the process runs with (left out where SELinux is not enabled, as crun
    /// leaves it).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// The AppArmor profile the process changes to (refused where AppArmor is not enabled).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Exec into a paused container too (the process is frozen until `resume`).
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Run in a sub-cgroup of the container's that exists: [CONTROLLER[,CONTROLLER…]:]PATH
    /// (cgroup v1: per controller; without one, every controller; v2: PATH only). Repeatable.
    #[arg(long = "cgroup")]
    pub cgroup: Vec<String>,
}

/// `-1` means "unlimited" for several of these, as a value of its own (`--cpu-quota -1`).
#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct UpdateArgs {
    pub id: String,
    /// A JSON file (or - for stdin) with runtime-spec linux.resources.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "kernel-memory", hide = true)]
    pub kernel_memory: Option<String>,
}
