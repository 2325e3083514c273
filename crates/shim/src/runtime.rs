//! The OCI runtime binary, driven through runc's command line (so berth-oci, runc and crun are
//! interchangeable). Its own messages go to a JSON log file, as containerd arranges it, so they
//! never mix with the container's stdio; a failure is reported with the log's last error.

use crate::console::ConsoleSocket;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Runtime {
    binary: PathBuf,
    root: Option<PathBuf>,
    log: PathBuf,
}

/// The container's stdio for `create` and `exec` (the runtime passes it on to the process).
pub struct Stdio3 {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl Stdio3 {
    pub fn null() -> Stdio3 {
        Stdio3 { stdin: Stdio::null(), stdout: Stdio::null(), stderr: Stdio::null() }
    }
}

impl Runtime {
    pub fn new(binary: &Path, root: Option<&Path>, dir: &Path) -> Runtime {
        Runtime { binary: binary.to_path_buf(), root: root.map(Path::to_path_buf), log: dir.join("runtime.log") }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn command(&self, args: &[&std::ffi::OsStr]) -> Command {
        let mut command = Command::new(&self.binary);
        if let Some(root) = &self.root {
            command.arg("--root").arg(root);
        }
        command.arg("--log").arg(&self.log).arg("--log-format").arg("json").args(args);
        command
    }

    /// Runs the runtime to completion with `stdio`, taking the pty master it sends to `console`
    /// meanwhile (create and exec with a terminal).
    pub fn run(&self, args: &[&std::ffi::OsStr], stdio: Stdio3, console: Option<&ConsoleSocket>) -> Result<Option<OwnedFd>, String> {
        let _ = std::fs::remove_file(&self.log);
        let mut child = self
            .command(args)
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr)
            .spawn()
            .map_err(|e| format!("run {}: {e}", self.binary.display()))?;
        let master = match console {
            Some(console) => console.receive(&mut child),
            None => Ok(None),
        };
        let status = child.wait().map_err(|e| format!("wait for {}: {e}", self.binary.display()))?;
        if !status.success() {
            // The runtime's own words when it left some, after its name and verb; the whole
            // command line (for whoever debugs it) only when it said nothing.
            return Err(match self.last_error() {
                Some(message) => {
                    let name = self.binary.file_name().unwrap_or(self.binary.as_os_str()).to_string_lossy();
                    let verb = args.first().map(|a| a.to_string_lossy()).unwrap_or_default();
                    format!("{name} {verb}: {message}")
                }
                None => {
                    let what = args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
                    format!("{} {what}: {status}", self.binary.display())
                }
            });
        }
        master
    }

    /// A runtime command that takes no stdio (start, kill, delete).
    pub fn simple(&self, args: &[&str]) -> Result<(), String> {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        self.run(&args, Stdio3::null(), None).map(|_| ())
    }

    /// The message of the last line of the runtime's JSON log at level error (or any last line).
    fn last_error(&self) -> Option<String> {
        let text = std::fs::read(&self.log).ok()?;
        let text = String::from_utf8_lossy(&text[text.len().saturating_sub(64 * 1024)..]).into_owned();
        let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let pick = lines.iter().rev().find(|l| l["level"] == "error").or(lines.last())?;
        pick["msg"].as_str().map(str::to_string)
    }
}
