//! A container the shim supervises: its log, whether it has been started, how it ended. Its
//! processes (the init and the execs) are the supervisor's; its files are `<id>/` in the shim's
//! directory (the init's pid file while it is created, `exit.json` once it has exited).

use crate::cri_log::CriLog;
use berth_shim::protocol::{self, Exit, ShimState, Status};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub struct Container {
    pub id: String,
    pub pid: i32,
    pub started: bool,
    pub exit: Option<Exit>,
    pub log: CriLog,
    /// The file whose `oom_kill` counter tells of OOM kills in the container's memory cgroup, and
    /// the counter's value at create.
    oom: Option<(PathBuf, u64)>,
}

impl Container {
    pub fn new(id: &str, pid: i32, log: CriLog) -> Container {
        let oom = oom_counter_file(pid).and_then(|file| read_oom_kills(&file).map(|count| (file, count)));
        Container { id: id.to_string(), pid, started: false, exit: None, log, oom }
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
        exit.oom_killed = self.oom.as_ref().is_some_and(|(file, before)| read_oom_kills(file).is_some_and(|now| now > *before));
        let _ = write_durably(&Path::new(&self.id).join(protocol::EXIT), &serde_json::to_vec(&exit).expect("exits serialize"));
        self.exit.insert(exit)
    }
}

/// Where the kernel counts OOM kills for `pid`'s memory cgroup: `memory.oom_control` on cgroup v1,
/// `memory.events` on v2 (both hold an `oom_kill N` line).
fn oom_counter_file(pid: i32) -> Option<PathBuf> {
    let text = read_small(Path::new(&format!("/proc/{pid}/cgroup")))?;
    let mut v2 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(path).join("memory.oom_control"));
        }
        if controllers.is_empty() {
            v2 = Some(Path::new("/sys/fs/cgroup").join(path).join("memory.events"));
        }
    }
    v2.filter(|file| file.exists())
}

fn read_oom_kills(file: &Path) -> Option<u64> {
    read_small(file)?.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

/// A kernel file of a few lines (bounded, as every read of something a container can grow).
fn read_small(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(64 * 1024).read_to_string(&mut text).ok()?;
    Some(text)
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
