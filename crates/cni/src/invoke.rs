//! One plugin call: the binary found in the bin dirs, run with a clean environment (the CNI_*
//! variables and a fixed PATH, nothing of berthd's), the config on stdin, stdout read up to a cap,
//! stderr kept up to a cap (the rest drained), the whole call under a timeout that kills the
//! plugin's process group. A plugin is a program from the node's config: it gets no more trust
//! than an image.

use crate::error::PluginFailure;
use crate::result::{CniResult, Output, PluginError};
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Bounds on one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes of stdout read (a result is a few KiB).
    pub max_output: usize,
    /// Bytes of stderr kept for the error message.
    pub max_stderr: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { timeout: Duration::from_secs(60), max_output: 1 << 20, max_stderr: 8 << 10 }
    }
}

/// The plugins' PATH: they run iptables, ip, and the like from the node, never from berthd's PATH.
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The CNI_* environment of one call.
pub(crate) struct Call<'a> {
    pub command: &'static str,
    pub container_id: Option<&'a str>,
    pub netns: Option<&'a Path>,
    pub ifname: Option<&'a str>,
    pub args: &'a [(String, String)],
}

pub(crate) fn find(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .ok_or_else(|| Error::PluginNotFound { plugin: plugin.into(), dirs: dirs.to_vec() })
}

/// Runs `plugin` with `stdin`; its parsed result when `want_result` (ADD, VERSION), else its
/// stdout ignored.
pub(crate) async fn run(plugin: &str, dirs: &[PathBuf], limits: Limits, call: &Call<'_>, stdin: &Value, want_result: bool) -> Result<Option<Value>> {
    let binary = find(plugin, dirs)?;
    let cni_path = std::env::join_paths(dirs).map_err(|e| Error::Invalid(format!("bin dirs: {e}")))?;
    let mut command = tokio::process::Command::new(&binary);
    command
        .env_clear()
        .env("PATH", PLUGIN_PATH)
        .env("CNI_COMMAND", call.command)
        .env("CNI_PATH", cni_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a timeout kills what it started too.
        .process_group(0);
    if let Some(id) = call.container_id {
        command.env("CNI_CONTAINERID", id);
    }
    if let Some(netns) = call.netns.filter(|n| !n.as_os_str().is_empty()) {
        command.env("CNI_NETNS", netns);
    }
    if let Some(ifname) = call.ifname {
        command.env("CNI_IFNAME", ifname);
    }
    if !call.args.is_empty() {
        // Plugins refuse args they do not know unless told to ignore them (as every runtime does:
        // the K8S_POD_* ones are for the few plugins that read them).
        let ignore = (!call.args.iter().any(|(k, _)| k == "IgnoreUnknown")).then(|| "IgnoreUnknown=1".to_string());
        let args: Vec<String> = ignore.into_iter().chain(call.args.iter().map(|(k, v)| format!("{k}={v}"))).collect();
        command.env("CNI_ARGS", args.join(";"));
    }
    let mut child = command.spawn().map_err(|e| Error::io("run CNI plugin", &binary, e))?;
    let pid = child.id();
    let input = serde_json::to_vec(stdin).expect("a JSON value serialises");
    let (mut child_in, child_out, child_err) =
        (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let work = async {
        // A plugin that does not read its stdin must not block us: write alongside the reads.
        let write = async move {
            let _ = child_in.write_all(&input).await;
            drop(child_in);
        };
        // Past the output cap the plugin is killed at once (a flood ends in milliseconds, not at
        // the timeout); stderr past its cap is drained and dropped.
        let (_, out, err) =
            tokio::join!(write, read_capped(child_out, limits.max_output, || kill_group(pid)), read_capped(child_err, limits.max_stderr, || ()));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(limits.timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            kill_group(pid);
            return Err(Error::Timeout { plugin: plugin.into(), command: call.command, seconds: limits.timeout.as_secs() });
        }
    };
    let (out, over) = out.map_err(|e| Error::io("read the output of", &binary, e))?;
    if over {
        return Err(Error::OutputTooLarge { plugin: plugin.into(), command: call.command, limit: limits.max_output });
    }
    let stderr = String::from_utf8_lossy(&err.map(|(e, _)| e).unwrap_or_default()).trim().to_string();
    let status = status.map_err(|e| Error::io("wait for", &binary, e))?;
    if !status.success() {
        let (code, msg, details) = match serde_json::from_slice::<PluginError>(&out) {
            Ok(e) => (e.code, e.msg, e.details),
            Err(_) => (None, format!("exited with {status}"), String::from_utf8_lossy(&out).trim().to_string()),
        };
        return Err(Error::Plugin(Box::new(PluginFailure { plugin: plugin.into(), command: call.command, code, msg, details, stderr })));
    }
    if !want_result {
        return Ok(None);
    }
    let value = serde_json::from_slice(&out).map_err(|e| Error::BadOutput { plugin: plugin.into(), command: call.command, reason: e.to_string() })?;
    Ok(Some(value))
}

/// Reads up to `cap` bytes; past it calls `over` once and drains the rest (so the writer never
/// blocks on a full pipe); says whether there was more.
async fn read_capped(mut from: impl AsyncRead + Unpin, cap: usize, over: impl FnOnce()) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    (&mut from).take(cap as u64 + 1).read_to_end(&mut kept).await?;
    if kept.len() <= cap {
        return Ok((kept, false));
    }
    over();
    kept.truncate(cap);
    tokio::io::copy(&mut from, &mut tokio::io::sink()).await?;
    Ok((kept, true))
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// An ADD result as both JSON and typed.
pub(crate) fn output(plugin: &str, raw: Value) -> Result<Output> {
    let result: CniResult =
        serde_json::from_value(raw.clone()).map_err(|e| Error::BadOutput { plugin: plugin.into(), command: "ADD", reason: e.to_string() })?;
    Ok(Output { raw, result })
}
