//! What each request does. The runtime is run in place (it returns in milliseconds); a container's
//! own files live in `<id>/` of the shim's directory, the short-lived ones of a runtime call
//! (console socket, exec process and pid files) in the directory itself, one call at a time.

use crate::console::ConsoleSocket;
use crate::container::Container;
use crate::cri_log::CriLog;
use crate::process::{Plumbing, Process, SyncLimits};
use crate::supervisor::{read_pid, Role, Supervisor};
use berth_shim::protocol::{valid_id, Event, Reply, Request, Status};
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

impl Supervisor {
    pub(crate) fn handle(&mut self, c: usize, request: Request) {
        let reply = match request {
            Request::Create { id, bundle, log, log_max_size, tty, stdin } => {
                self.served = true;
                self.create(&id, &bundle, &log, log_max_size, tty, stdin).map_or_else(Reply::Error, |pid| Reply::Created { pid })
            }
            Request::State { id } => self.container(&id).map_or_else(Reply::Error, |c| Reply::State(c.state())),
            Request::Start { id } => self.start_container(&id).map_or_else(Reply::Error, |()| Reply::Ok),
            Request::Kill { id, signal, all } => self.kill(&id, signal, all).map_or_else(Reply::Error, |()| Reply::Ok),
            Request::Delete { id } => {
                self.served = true;
                self.delete(&id).map_or_else(Reply::Error, |()| Reply::Ok)
            }
            Request::Wait { id } => match self.container(&id) {
                Ok(Container { exit: Some(exit), .. }) => Reply::Exit(exit.clone()),
                Ok(_) => {
                    self.conns[c].role = Role::Waiter(id);
                    return;
                }
                Err(e) => Reply::Error(e),
            },
            Request::Subscribe => {
                let conn = &mut self.conns[c];
                conn.role = Role::Subscriber;
                conn.reply(&Reply::Ok);
                for container in &self.containers {
                    conn.event(&Event::Container(container.state()));
                }
                conn.event(&Event::Synced);
                return;
            }
            Request::Attach { id, stdin } => match self.procs.iter().find(|p| p.is(&id, None)) {
                Some(init) if init.exit.is_some() => Reply::Error(format!("container {id} has exited")),
                Some(init) if stdin && init.input.is_none() => Reply::Error(format!("container {id} was not created with stdin open")),
                Some(_) => {
                    self.conns[c].role = Role::Attached { id, exec_id: None };
                    Reply::Ok
                }
                None => Reply::Error(format!("container {id} has exited")),
            },
            Request::Exec { id, exec_id, process, stdin } => match self.exec(&id, &exec_id, &process, stdin, None) {
                Ok(()) => {
                    self.conns[c].role = Role::Attached { id, exec_id: Some(exec_id) };
                    Reply::Ok
                }
                Err(e) => Reply::Error(e),
            },
            Request::ExecSync { id, exec_id, process, timeout_ms } => {
                let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
                let limits = SyncLimits { deadline, ..Default::default() };
                match self.exec(&id, &exec_id, &process, false, Some(limits)) {
                    Ok(()) => {
                        self.conns[c].role = Role::Attached { id, exec_id: Some(exec_id) };
                        Reply::Ok
                    }
                    Err(e) => Reply::Error(e),
                }
            }
            Request::Resize { id, exec_id, width, height } => match self.procs.iter().find(|p| p.is(&id, exec_id.as_deref())) {
                Some(process) => process.resize(width, height).map_or_else(Reply::Error, |()| Reply::Ok),
                None => Reply::Error(format!("no process {} in container {id}", exec_id.as_deref().unwrap_or("init"))),
            },
            Request::ReopenLog { id } => match self.container(&id) {
                Ok(container) => container.log.reopen().map_or_else(|e| Reply::Error(format!("reopen the log: {e}")), |()| Reply::Ok),
                Err(e) => Reply::Error(e),
            },
        };
        let conn = &mut self.conns[c];
        conn.reply(&reply);
        if !matches!(conn.role, Role::Attached { .. }) || matches!(reply, Reply::Error(_)) {
            conn.done = true;
        }
    }

    fn create(&mut self, id: &str, bundle: &Path, log: &Path, log_max_size: u64, tty: bool, stdin: bool) -> Result<i32, String> {
        if !valid_id(id) {
            return Err(format!("container id {id:?}: use 1-64 letters, digits, - or _"));
        }
        if self.containers.iter().any(|c| c.id == id) {
            return Err(format!("container {id} already exists in this shim"));
        }
        if !bundle.is_absolute() || !log.is_absolute() {
            return Err("the bundle and the log need absolute paths".into());
        }
        let dir = Path::new(id);
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir(dir).map_err(|e| format!("create {id}/: {e}"))?;
        let created = self.run_create(id, bundle, log, log_max_size, tty, stdin);
        if created.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        created
    }

    fn run_create(&mut self, id: &str, bundle: &Path, log: &Path, log_max_size: u64, tty: bool, stdin: bool) -> Result<i32, String> {
        let log = CriLog::open(log, log_max_size).map_err(|e| format!("open the log {}: {e}", log.display()))?;
        let Plumbing { theirs, outputs, input } = Plumbing::new(tty, stdin)?;
        let console = if tty { Some(ConsoleSocket::bind("console.sock")?) } else { None };
        let pid_file = Path::new(id).join("init.pid");
        let pid_file = std::env::current_dir().map_err(|e| format!("cwd: {e}"))?.join(pid_file);
        let mut args: Vec<&OsStr> = vec!["create".as_ref(), "--bundle".as_ref(), bundle.as_os_str(), "--pid-file".as_ref(), pid_file.as_os_str()];
        if let Some(console) = &console {
            args.extend(["--console-socket".as_ref(), console.path().as_os_str()]);
        }
        args.push(id.as_ref());
        let master = self.runtime.run(&args, theirs, console.as_ref())?;
        drop(console);
        let created = read_pid(&pid_file).and_then(|pid| {
            if tty && master.is_none() {
                return Err("the runtime created the container without sending its terminal".to_string());
            }
            Ok((pid, Process::new(id, None, pid, outputs, input, master, stdin)?))
        });
        let _ = std::fs::remove_file(&pid_file);
        let (pid, init) = match created {
            Ok(created) => created,
            Err(e) => {
                let _ = self.runtime.simple(&["delete", "--force", id]);
                return Err(e);
            }
        };
        self.procs.push(init);
        self.containers.push(Container::new(id, pid, log));
        Ok(pid)
    }

    fn start_container(&mut self, id: &str) -> Result<(), String> {
        let container = self.container(id)?;
        if container.started || container.exit.is_some() {
            return Err(format!("container {id} is already started"));
        }
        // Watched before the start: nothing runs yet that could be killed, and the init is in its
        // cgroup by now.
        let container = self.container(id)?;
        container.oom = crate::oom::OomWatch::new(container.pid);
        self.runtime.simple(&["start", id])?;
        self.container(id)?.started = true;
        Ok(())
    }

    fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<(), String> {
        if self.container(id)?.exit.is_some() {
            return Err(format!("container {id} has exited"));
        }
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        self.runtime.simple(&args)
    }

    /// An exited (or never started) container leaves the runtime and the shim.
    fn delete(&mut self, id: &str) -> Result<(), String> {
        let state = self.container(id)?.state();
        if state.status == Status::Running {
            return Err(format!("container {id} is running: kill it first"));
        }
        // A created container's init still waits for `start`: --force kills it.
        self.runtime.simple(&["delete", "--force", id])?;
        // What the init wrote last is in the log before the log is closed.
        for process in self.procs.iter_mut().filter(|p| p.container == id) {
            if process.exec_id.is_none() {
                if let Some(container) = self.containers.iter_mut().find(|c| c.id == id) {
                    for output in &process.outputs {
                        let _ = container.log.flush(output.stream);
                    }
                }
            }
        }
        self.procs.retain(|p| p.container != id);
        self.containers.retain(|c| c.id != id);
        for conn in self.conns.iter_mut() {
            if matches!(&conn.role, Role::Waiter(w) if w == id) || matches!(&conn.role, Role::Attached { id: a, .. } if a == id) {
                conn.closed = true;
            }
        }
        std::fs::remove_dir_all(id).map_err(|e| format!("remove {id}/: {e}"))
    }

    fn exec(&mut self, id: &str, exec_id: &str, process: &serde_json::Value, stdin: bool, sync: Option<SyncLimits>) -> Result<(), String> {
        if !valid_id(exec_id) {
            return Err(format!("exec id {exec_id:?}: use 1-64 letters, digits, - or _"));
        }
        let container = self.container(id)?;
        if !container.started || container.exit.is_some() {
            return Err(format!("container {id} is not running"));
        }
        if self.procs.iter().any(|p| p.is(id, Some(exec_id))) {
            return Err(format!("exec id {exec_id} is in use"));
        }
        let tty = sync.is_none() && process["terminal"].as_bool().unwrap_or(false);
        let cwd = std::env::current_dir().map_err(|e| format!("cwd: {e}"))?;
        let (process_file, pid_file) = (cwd.join("exec.json"), cwd.join("exec.pid"));
        let mut process = process.clone();
        if sync.is_some() {
            process["terminal"] = false.into();
        }
        let json = serde_json::to_vec(&process).map_err(|e| format!("exec process: {e}"))?;
        std::fs::write(&process_file, json).map_err(|e| format!("write {}: {e}", process_file.display()))?;
        let Plumbing { theirs, outputs, input } = Plumbing::new(tty, stdin)?;
        let console = if tty { Some(ConsoleSocket::bind("exec-console.sock")?) } else { None };
        let mut args: Vec<&OsStr> =
            vec!["exec".as_ref(), "--detach".as_ref(), "--pid-file".as_ref(), pid_file.as_os_str(), "--process".as_ref(), process_file.as_os_str()];
        if let Some(console) = &console {
            args.extend(["--console-socket".as_ref(), console.path().as_os_str()]);
        }
        args.push(id.as_ref());
        let ran = self.runtime.run(&args, theirs, console.as_ref());
        let _ = std::fs::remove_file(&process_file);
        let started = ran.and_then(|master| Ok((read_pid(&pid_file)?, master)));
        let _ = std::fs::remove_file(&pid_file);
        let (pid, master) = started?;
        let mut exec = Process::new(id, Some(exec_id.to_string()), pid, outputs, input, master, stdin)?;
        exec.sync = sync;
        self.procs.push(exec);
        Ok(())
    }
}
