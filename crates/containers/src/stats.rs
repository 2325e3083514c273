//! `top` and `stats`: the runtime's own `ps` and `events --stats` for a running container.
//! (These are the runtime runs left outside the shim; cgroup reads will replace them.)

use crate::manager::{blocking, Containers};
use crate::record::ContainerRecord;
use crate::{Error, Result};

impl Containers {
    /// Runs the container's runtime binary (with its root) and returns what it printed.
    fn runtime_command(&self, record: &ContainerRecord, args: &[&str]) -> Result<Vec<u8>> {
        let runtime = self.runtime_binary(&record.runtime)?;
        let output = std::process::Command::new(&runtime)
            .arg("--root")
            .arg(self.paths.runtime_root.join(&record.runtime))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io("run", &runtime, e))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(Error::Shim(format!("{} {}: {}", runtime.display(), args.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
        }
    }

    /// The container's processes: (pid, uid, command line), from the runtime's `ps`.
    pub async fn top(&self, key: &str) -> Result<Vec<(i32, u32, String)>> {
        let record = self.running(key)?;
        let this = self.clone();
        blocking(move || {
            let listed = this.runtime_command(&record, &["ps", "--format", "json", &record.id])?;
            let pids: Vec<i32> = serde_json::from_slice(&listed).map_err(|e| Error::Shim(format!("the runtime's ps: {e}")))?;
            Ok(pids.into_iter().filter_map(process_line).collect())
        })
        .await
    }

    /// One sample of the runtime's `events --stats` (runc's JSON shape), its `data` object.
    pub async fn stats(&self, key: &str) -> Result<serde_json::Value> {
        let record = self.running(key)?;
        let this = self.clone();
        blocking(move || {
            let sample = this.runtime_command(&record, &["events", "--stats", &record.id])?;
            let event: serde_json::Value = serde_json::from_slice(&sample).map_err(|e| Error::Shim(format!("the runtime's stats: {e}")))?;
            Ok(event["data"].clone())
        })
        .await
    }
}

fn process_line(pid: i32) -> Option<(i32, u32, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()).and_then(|u| u.parse().ok())?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let command = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" ");
    Some((pid, uid, command))
}
