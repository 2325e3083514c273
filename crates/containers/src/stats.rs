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

    /// The container's processes: (pid, uid, command line).
    pub async fn top(&self, key: &str) -> Result<Vec<(i32, u32, String)>> {
        let (id, path) = self.cgroup_of(key).await?;
        blocking(move || {
            let cgroup = berth_cgroups::open(Some(&path), &id).map_err(|e| Error::Shim(format!("the container's cgroup: {e}")))?;
            let pids = cgroup.processes().map_err(|e| Error::Shim(format!("the container's processes: {e}")))?;
            Ok(pids.into_iter().filter_map(process_line).collect())
        })
        .await
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

/// What `top` shows of a process (bounded reads of /proc: a container names its own processes).
fn process_line(pid: i32) -> Option<(i32, u32, String)> {
    use std::io::Read;
    let read = |what: &str| -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(format!("/proc/{pid}/{what}")).ok()?.take(64 * 1024).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    };
    let status = String::from_utf8_lossy(&read("status")?).into_owned();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()).and_then(|u| u.parse().ok())?;
    let cmdline = read("cmdline")?;
    let command = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" ");
    Some((pid, uid, command))
}
