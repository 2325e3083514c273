//! A container the shim supervises: its log, whether it has been started, how it ended. Its
//! processes (the init and the execs) are the supervisor's; its files are `<id>/` in the shim's
//! directory (the init's pid file while it is created, `exit.json` once it has exited).

use crate::cri_log::CriLog;
use crate::oom::OomWatch;
use berth_shim::protocol::{self, Exit, ShimState, Status};
use std::io::Write;
use std::path::Path;

pub struct Container {
    pub id: String,
    pub pid: i32,
    pub started: bool,
    pub exit: Option<Exit>,
    pub log: CriLog,
    /// OOM kills in its memory cgroup, watched from the start (when the init is surely in it).
    pub oom: Option<OomWatch>,
}

impl Container {
    pub fn new(id: &str, pid: i32, log: CriLog) -> Container {
        Container { id: id.to_string(), pid, started: false, exit: None, log, oom: None }
    }

    pub fn state(&self) -> ShimState {
        let status = match (&self.exit, self.started) {
            (Some(_), _) => Status::Stopped,
            (None, true) => Status::Running,
            (None, false) => Status::Created,
        };
        ShimState { id: self.id.clone(), pid: self.pid, status, exit: self.exit.clone() }
    }

    /// Records how the init ended (durably: whoever finds the shim gone reads it), with whether
    /// the OOM killer was at work in its cgroup meanwhile.
    pub fn exited(&mut self, mut exit: Exit) -> &Exit {
        exit.oom_killed = self.oom.as_ref().is_some_and(OomWatch::killed_since_start);
        let _ = write_durably(&Path::new(&self.id).join(protocol::EXIT), &serde_json::to_vec(&exit).expect("exits serialize"));
        self.exit.insert(exit)
    }
}

/// Writes `path` so that after a crash it holds either nothing or all of `data`.
pub fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
