//! Exec into and attach to a running container, streamed through its shim. An exec's process is
//! the container's own (env, user, capabilities, cwd from its spec) with the caller's overrides.

use crate::manager::{blocking, Containers};
use crate::record::{ContainerRecord, State};
use crate::{passwd, spec_opts, Error, Result};

/// A name for an exec no other exec of this berthd has: the time alone can repeat when execs
/// start at once (the shim then refuses the second).
fn exec_id(kind: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{kind}-{}-{}", crate::now_ns(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// What `berth exec` may change about the container's process.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub tty: bool,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub console_size: Option<(u16, u16)>,
}

impl Containers {
    /// The container, if it is running (else a wrong-state error).
    pub fn running(&self, key: &str) -> Result<ContainerRecord> {
        let record = self.find(key)?;
        if record.state != State::Running {
            return Err(Error::WrongState(format!("container {} is not running", record.name)));
        }
        Ok(record)
    }

    /// The container's output from now on, and its stdin with `stdin` (if it was created with it
    /// open). A created container may be attached to before it starts.
    pub async fn attach(&self, key: &str, stdin: bool) -> Result<(ContainerRecord, berth_shim::AsyncStream)> {
        let record = self.find(key)?;
        if !record.state.is_live() {
            return Err(Error::WrongState(format!("container {} is not running", record.name)));
        }
        let stream = berth_shim::AsyncClient::new(&self.shim_dir(&record.shim)).attach(&record.id, stdin).await?;
        Ok((record, stream))
    }

    /// Runs a process in a running container (stdin kept open with `stdin`) and streams it.
    pub async fn exec(&self, key: &str, exec: ExecOptions, stdin: bool) -> Result<berth_shim::AsyncStream> {
        let (record, process) = self.exec_process(key, exec).await?;
        let exec_id = exec_id("exec");
        Ok(berth_shim::AsyncClient::new(&self.shim_dir(&record.shim)).exec(&record.id, &exec_id, process, stdin).await?)
    }

    /// Runs a process in a running container to its end (killed at `timeout`), its output kept
    /// up to the shim's cap per stream.
    pub async fn exec_sync(&self, key: &str, exec: ExecOptions, timeout: std::time::Duration) -> Result<berth_shim::ExecOutput> {
        let (record, process) = self.exec_process(key, exec).await?;
        let exec_id = exec_id("exec-sync");
        Ok(berth_shim::AsyncClient::new(&self.shim_dir(&record.shim)).exec_sync(&record.id, &exec_id, process, timeout).await?)
    }

    /// The process for an exec into a running container. Returns the record too (for its shim).
    async fn exec_process(&self, key: &str, exec: ExecOptions) -> Result<(ContainerRecord, serde_json::Value)> {
        let record = self.running(key)?;
        if exec.args.is_empty() {
            return Err(Error::Invalid("exec needs a command".into()));
        }
        let config = self.spec(&record.id).await?;
        let rootfs = self.bundle_dir(&record.id).join("rootfs");
        let process = blocking(move || {
            let mut process = config["process"].clone();
            process["args"] = serde_json::json!(exec.args);
            process["terminal"] = serde_json::json!(exec.tty);
            match (exec.tty, exec.console_size) {
                (true, Some((width, height))) => process["consoleSize"] = serde_json::json!({"width": width, "height": height}),
                _ => {
                    process.as_object_mut().map(|p| p.remove("consoleSize"));
                }
            }
            if let Some(user) = &exec.user {
                let resolved = passwd::resolve(&rootfs, user)?;
                process["user"] = serde_json::json!({"uid": resolved.uid, "gid": resolved.gid, "additionalGids": resolved.additional_gids});
            }
            if let Some(workdir) = &exec.workdir {
                if !workdir.starts_with('/') {
                    return Err(Error::Invalid(format!("working directory {workdir} is not absolute")));
                }
                process["cwd"] = serde_json::json!(workdir);
            }
            let current: Vec<String> = process["env"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
            let hostname = config["hostname"].as_str().unwrap_or_default().to_string();
            process["env"] = serde_json::json!(spec_opts::environment(&current, &exec.env, &hostname, "/", exec.tty)?);
            Ok(process)
        })
        .await?;
        Ok((record, process))
    }
}
