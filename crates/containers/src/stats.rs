//! `top` and `stats`: read from the container's cgroup (its processes; runc's `events --stats`
//! figures), found where its spec put it. No runtime binary runs here: the shim is the one
//! program that runs the OCI runtime.

use crate::manager::{blocking, Containers};
use crate::{Error, Result};
use std::path::PathBuf;

impl Containers {
    /// The container's cgroup, as its spec names it.
    async fn cgroup_of(&self, key: &str) -> Result<(String, PathBuf)> {
        let record = self.running(key)?;
        let spec = self.spec(&record.id).await?;
        let path = spec["linux"]["cgroupsPath"].as_str().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(format!("/{}", record.id)));
        Ok((record.id, path))
    }

    /// The container's processes as the host's `ps` shows them with `ps_args` (-ef when none),
    /// as docker's top: ps's column titles, and its rows whose PID is in the container's cgroup.
    pub async fn top(&self, key: &str, ps_args: Vec<String>) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let (id, path) = self.cgroup_of(key).await?;
        let pids = blocking(move || {
            let cgroup = berth_cgroups::open(Some(&path), &id).map_err(|e| Error::Shim(format!("the container's cgroup: {e}")))?;
            cgroup.processes().map_err(|e| Error::Shim(format!("the container's processes: {e}")))
        })
        .await?;
        let args = if ps_args.is_empty() { vec!["-ef".to_string()] } else { ps_args };
        use tokio::io::AsyncReadExt;
        let mut command = tokio::process::Command::new("ps");
        command.args(&args).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = command.kill_on_drop(true).spawn().map_err(|e| Error::io("run", std::path::Path::new("ps"), e))?;
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        // Bounded reads: a container's command lines are in ps's output, and they can be long.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read = async {
            if let Some(mut stdout) = stdout.take() {
                (&mut stdout).take(PS_MAX as u64).read_to_end(&mut out).await?;
                // Past the bound, ps's next write ends it (SIGPIPE) rather than waiting on us.
                drop(stdout);
            }
            if let Some(stderr) = stderr.as_mut() {
                stderr.take(64 << 10).read_to_end(&mut err).await?;
            }
            child.wait().await
        };
        let status = tokio::time::timeout(PS_TIMEOUT, read)
            .await
            .map_err(|_| Error::Invalid(format!("ps {}: no answer within {} s", args.join(" "), PS_TIMEOUT.as_secs())))?
            .map_err(|e| Error::io("run", std::path::Path::new("ps"), e))?;
        if !status.success() {
            let said = String::from_utf8_lossy(&err);
            return Err(Error::Invalid(format!("ps {}: {}", args.join(" "), said.trim().chars().take(512).collect::<String>())));
        }
        ps_rows(&String::from_utf8_lossy(&out), &pids)
    }

    /// Changes the running container's resources in its cgroup (unset ones keep their values).
    pub async fn update_resources(&self, key: &str, resources: oci_spec::runtime::LinuxResources) -> Result<()> {
        let (id, path) = self.cgroup_of(key).await?;
        blocking(move || {
            let cgroup = berth_cgroups::open(Some(&path), &id).map_err(|e| Error::Shim(format!("the container's cgroup: {e}")))?;
            cgroup.apply(&resources).map_err(|e| Error::Invalid(format!("update the container's resources: {e}")))
        })
        .await
    }

    /// The container's shim reopens its log file (after the kubelet rotated it).
    pub async fn reopen_log(&self, key: &str) -> Result<()> {
        let record = self.running(key)?;
        Ok(berth_shim::AsyncClient::new(&self.shim_dir(&record.shim)).reopen_log(&record.id).await?)
    }

    /// One sample of the container's resource use, in the shape of runc's `events --stats` data.
    pub async fn stats(&self, key: &str) -> Result<berth_cgroups::Stats> {
        let (id, path) = self.cgroup_of(key).await?;
        blocking(move || {
            let cgroup = berth_cgroups::open(Some(&path), &id).map_err(|e| Error::Shim(format!("the container's cgroup: {e}")))?;
            cgroup.stats().map_err(|e| Error::Shim(format!("the container's stats: {e}")))
        })
        .await
    }
}

/// How long `ps` may take, and the most of its output read.
const PS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const PS_MAX: usize = 16 << 20;

/// ps's titles, and the rows whose PID column names one of `pids` (the last column keeps its
/// spaces: a command line).
fn ps_rows(text: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = text.lines();
    let titles: Vec<String> = lines.next().unwrap_or_default().split_whitespace().map(str::to_string).collect();
    let Some(pid_column) = titles.iter().position(|t| t == "PID") else {
        return Err(Error::Invalid(format!("ps's output has no PID column (titles {titles:?}): keep pid among its columns")));
    };
    let tail = titles.len() - 1;
    let rows = lines
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() <= tail {
                return words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
            }
            // What follows the first `tail` words, spaces kept.
            let mut rest = line;
            for _ in 0..tail {
                rest = rest.trim_start();
                rest = &rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..];
            }
            words[..tail].iter().map(|w| w.to_string()).chain([rest.trim().to_string()]).collect()
        })
        .filter(|fields| fields.get(pid_column).and_then(|p| p.parse::<i32>().ok()).is_some_and(|pid| pids.contains(&pid)))
        .collect();
    Ok((titles, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_keep_the_containers_processes_and_whole_commands() {
        let text = "UID          PID    PPID  C STIME TTY          TIME CMD\nroot           1       0  0 10:00 ?        00:00:01 /sbin/init splash\nroot        4242       1  0 10:01 ?        00:00:00 sleep 100 --flag\n";
        let (titles, rows) = ps_rows(text, &[4242]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(rows, [["root", "4242", "1", "0", "10:01", "?", "00:00:00", "sleep 100 --flag"]]);
        assert!(ps_rows("USER COMMAND\nroot init\n", &[1]).is_err(), "no PID column");
    }
}
