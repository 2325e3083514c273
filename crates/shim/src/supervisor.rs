//! The shim's one loop: poll over the SIGCHLD signalfd, the control socket, the processes' output
//! and input, and the clients. Nothing in it blocks on a client or a container; the runtime binary
//! is run to completion in place (create, start, kill, exec all return in milliseconds).
//!
//! The container's output goes to the CRI log first and to attached clients second: a client that
//! falls more than [`MAX_CLIENT_BACKLOG`] behind is disconnected, the log loses nothing.

use crate::console::ConsoleSocket;
use crate::cri_log::CriLog;
use crate::process::{set_nonblocking, Plumbing, Process};
use crate::runtime::Runtime;
use crate::Args;
use berth_shim::protocol::{self, Exit, FrameKind, Reply, Request, ShimState, Status};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MAX_CLIENT_BACKLOG: usize = 4 << 20;
/// After a process exits, how long its output may stay open (a daemon it left behind outside a
/// pid namespace) before the shim stops reading it.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

enum Role {
    /// Still sending its request line.
    Request,
    Waiter,
    Attached { exec_id: Option<String> },
}

struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    role: Role,
    /// Close once the output is flushed.
    done: bool,
    /// Not read from while its process's input buffer is full.
    blocked: bool,
    closed: bool,
}

impl Conn {
    fn reply(&mut self, reply: &Reply) {
        serde_json::to_writer(&mut self.output, reply).expect("replies serialize");
        self.output.push(b'\n');
    }

    fn frame(&mut self, kind: FrameKind, payload: &[u8]) {
        protocol::encode(kind, payload, &mut self.output);
        if self.output.len() > MAX_CLIENT_BACKLOG {
            self.closed = true;
        }
    }

    fn attached_to(&self, exec: Option<&str>) -> bool {
        matches!(&self.role, Role::Attached { exec_id } if exec_id.as_deref() == exec)
    }
}

#[derive(Clone, Copy)]
enum Token {
    Signals,
    Listener,
    Output(usize, usize),
    Input(usize),
    Conn(usize),
}

pub struct Supervisor {
    id: String,
    dir: PathBuf,
    runtime: Runtime,
    listener: UnixListener,
    signals: SignalFd,
    log: CriLog,
    /// The init first, then the execs.
    procs: Vec<Process>,
    started: bool,
    conns: Vec<Conn>,
}

impl Supervisor {
    /// Becomes the container's supervisor and has the runtime create it.
    pub fn start(args: &Args) -> Result<Supervisor, String> {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        // Sockets are bound by name here: the directory's path may be too long for an address.
        std::env::set_current_dir(&args.dir).map_err(|e| format!("chdir {}: {e}", args.dir.display()))?;
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("become a subreaper: {e}"))?;
        std::fs::write(args.dir.join(protocol::SHIM_PID), std::process::id().to_string()).map_err(|e| format!("write {}: {e}", protocol::SHIM_PID))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(|e| format!("block SIGCHLD: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
        let log = CriLog::open(&args.dir.join(protocol::LOG), args.log_max_size).map_err(|e| format!("open the log: {e}"))?;
        let runtime = Runtime::new(&args.runtime, args.runtime_root.as_deref(), &args.dir);

        let Plumbing { theirs, outputs, input } = Plumbing::new(args.tty, args.stdin)?;
        let console = if args.tty { Some(ConsoleSocket::bind("console.sock")?) } else { None };
        let pid_file = args.dir.join("init.pid");
        let mut create: Vec<&std::ffi::OsStr> = vec!["create".as_ref(), "--bundle".as_ref(), args.bundle.as_os_str(), "--pid-file".as_ref(), pid_file.as_os_str()];
        if let Some(console) = &console {
            create.extend(["--console-socket".as_ref(), console.path().as_os_str()]);
        }
        create.push(args.id.as_ref());
        let master = runtime.run(&create, theirs, console.as_ref())?;
        drop(console);
        let pid = read_pid(&pid_file)?;
        if args.tty && master.is_none() {
            return Err("the runtime created the container without sending its terminal".into());
        }
        let init = Process::new(None, pid, outputs, input, master, args.stdin)?;

        let _ = std::fs::remove_file(protocol::SOCKET);
        let listener = UnixListener::bind(protocol::SOCKET).map_err(|e| format!("bind {}: {e}", args.dir.join(protocol::SOCKET).display()))?;
        listener.set_nonblocking(true).map_err(|e| format!("control socket: {e}"))?;
        Ok(Supervisor { id: args.id.clone(), dir: args.dir.clone(), runtime, listener, signals, log, procs: vec![init], started: false, conns: Vec::new() })
    }

    pub fn init_pid(&self) -> i32 {
        self.procs[0].pid
    }

    pub fn run(mut self) -> ! {
        loop {
            let ready = self.poll();
            for (token, events) in ready {
                match token {
                    Token::Signals => self.reap(),
                    Token::Listener => self.accept(),
                    Token::Output(p, o) => self.read_output(p, o),
                    Token::Input(p) => self.write_input(p),
                    Token::Conn(c) => self.serve(c, events),
                }
            }
            self.close_outputs();
            for p in (1..self.procs.len()).rev() {
                if self.procs[p].finished() {
                    let exec = self.procs.remove(p);
                    self.announce_exit(exec.exec_id.as_deref(), exec.exit.as_ref().map(|e| &e.0));
                }
            }
            if self.procs[0].finished() {
                self.finish();
            }
            self.conns.retain(|c| !c.closed);
        }
    }

    /// Waits for something to do; returns what is ready.
    fn poll(&self) -> Vec<(Token, PollFlags)> {
        let mut tokens = vec![Token::Signals, Token::Listener];
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN), PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        for (p, process) in self.procs.iter().enumerate() {
            for (o, output) in process.outputs.iter().enumerate() {
                tokens.push(Token::Output(p, o));
                fds.push(PollFd::new(output.fd.as_fd(), PollFlags::POLLIN));
            }
            if let (Some(input), false) = (&process.input, process.pending_input.is_empty()) {
                tokens.push(Token::Input(p));
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLOUT));
            }
        }
        for (c, conn) in self.conns.iter().enumerate() {
            let mut events = PollFlags::empty();
            if !conn.blocked && !conn.done {
                events |= PollFlags::POLLIN;
            }
            if !conn.output.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            if !events.is_empty() {
                tokens.push(Token::Conn(c));
                fds.push(PollFd::new(conn.stream.as_fd(), events));
            }
        }
        let deadline = self.procs.iter().filter(|p| !p.outputs.is_empty()).filter_map(|p| p.exit.as_ref().map(|e| e.1 + OUTPUT_GRACE)).min();
        let timeout = match deadline {
            Some(at) => PollTimeout::try_from(at.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::NONE),
            None => PollTimeout::NONE,
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => tokens.into_iter().zip(fds.iter()).filter_map(|(t, fd)| fd.revents().filter(|r| !r.is_empty()).map(|r| (t, r))).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), Exit { code, signal: None, exited_at: now_ns() }),
                Ok(WaitStatus::Signaled(pid, signal, _)) => (pid.as_raw(), Exit { code: 128 + signal as i32, signal: Some(signal as i32), exited_at: now_ns() }),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if let Some(process) = self.procs.iter_mut().find(|p| p.pid == pid && p.exit.is_none()) {
                process.exit = Some((exit, Instant::now()));
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if set_nonblocking(&stream).is_ok() {
                self.conns.push(Conn { stream, input: Vec::new(), output: Vec::new(), role: Role::Request, done: false, blocked: false, closed: false });
            }
        }
    }

    fn read_output(&mut self, p: usize, o: usize) {
        let mut buf = [0u8; 32 * 1024];
        let process = &mut self.procs[p];
        let output = &process.outputs[o];
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&output.fd), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => process.outputs[o].ended = true,
            Ok(n) => {
                let (stream, exec_id) = (output.stream, process.exec_id.clone());
                if p == 0 {
                    // A full disk must not stop the container: the bytes still go to clients.
                    let _ = self.log.write(stream, &buf[..n]);
                }
                let kind = match stream {
                    crate::cri_log::Stream::Stdout => FrameKind::Stdout,
                    crate::cri_log::Stream::Stderr => FrameKind::Stderr,
                };
                for conn in self.conns.iter_mut().filter(|c| c.attached_to(exec_id.as_deref())) {
                    conn.frame(kind, &buf[..n]);
                }
            }
            Err(_) => {}
        }
    }

    /// Drops the outputs that ended, and those of processes that exited more than the grace
    /// period ago; the init's unfinished log lines are written out.
    fn close_outputs(&mut self) {
        for (p, process) in self.procs.iter_mut().enumerate() {
            let expired = process.exit.as_ref().is_some_and(|e| e.1.elapsed() >= OUTPUT_GRACE);
            let log = &mut self.log;
            process.outputs.retain(|output| {
                let keep = !output.ended && !expired;
                if !keep && p == 0 {
                    let _ = log.flush(output.stream);
                }
                keep
            });
        }
    }

    fn write_input(&mut self, p: usize) {
        let process = &mut self.procs[p];
        process.drain_input();
        if process.pending_input.len() < crate::process::MAX_PENDING_INPUT {
            let exec_id = process.exec_id.clone();
            for conn in self.conns.iter_mut().filter(|c| c.attached_to(exec_id.as_deref())) {
                conn.blocked = false;
            }
        }
    }

    fn serve(&mut self, c: usize, events: PollFlags) {
        if events.contains(PollFlags::POLLOUT) {
            let conn = &mut self.conns[c];
            match conn.stream.write(&conn.output) {
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => conn.closed = true,
            }
            if conn.done && conn.output.is_empty() {
                conn.closed = true;
            }
        }
        if events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) && !self.conns[c].done {
            let mut buf = [0u8; 32 * 1024];
            let conn = &mut self.conns[c];
            match conn.stream.read(&mut buf) {
                Ok(0) => conn.closed = true,
                Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => conn.closed = true,
            }
            self.consume(c);
        }
    }

    /// Acts on what a client has sent so far.
    fn consume(&mut self, c: usize) {
        match &self.conns[c].role {
            Role::Request => {
                let conn = &mut self.conns[c];
                let Some(newline) = conn.input.iter().position(|&b| b == b'\n') else {
                    if conn.input.len() > protocol::MAX_LINE {
                        conn.closed = true;
                    }
                    return;
                };
                let line: Vec<u8> = conn.input.drain(..=newline).collect();
                match serde_json::from_slice::<Request>(&line) {
                    Ok(request) => self.handle(c, request),
                    Err(e) => {
                        conn.reply(&Reply::Error(format!("bad request: {e}")));
                        conn.done = true;
                    }
                }
                // Frames may have followed the request in the same read.
                if matches!(self.conns[c].role, Role::Attached { .. }) && !self.conns[c].input.is_empty() {
                    self.consume(c);
                }
            }
            Role::Waiter => self.conns[c].input.clear(),
            Role::Attached { exec_id } => {
                let exec_id = exec_id.clone();
                let Some(p) = self.procs.iter().position(|p| p.exec_id == exec_id) else { return };
                loop {
                    let conn = &mut self.conns[c];
                    let (frame, used) = match protocol::decode(&conn.input) {
                        Ok(Some(decoded)) => decoded,
                        Ok(None) => break,
                        Err(_) => {
                            conn.closed = true;
                            break;
                        }
                    };
                    conn.input.drain(..used);
                    let process = &mut self.procs[p];
                    match frame.kind {
                        FrameKind::Stdin if !process.queue_input(&frame.payload) => self.conns[c].blocked = true,
                        FrameKind::StdinClose => process.close_input = true,
                        FrameKind::Resize => {
                            if let Some((width, height)) = protocol::parse_resize(&frame.payload) {
                                let _ = process.resize(width, height);
                            }
                        }
                        _ => {}
                    }
                    self.procs[p].drain_input();
                }
            }
        }
    }

    fn handle(&mut self, c: usize, request: Request) {
        let reply = match request {
            Request::State => {
                let status = match (&self.procs[0].exit, self.started) {
                    (Some(_), _) => Status::Stopped,
                    (None, true) => Status::Running,
                    (None, false) => Status::Created,
                };
                Reply::State(ShimState { id: self.id.clone(), pid: self.procs[0].pid, status })
            }
            Request::Start if self.started => Reply::Error(format!("container {} is already started", self.id)),
            Request::Start => match self.runtime.simple(&["start", &self.id]) {
                Ok(()) => {
                    self.started = true;
                    Reply::Ok
                }
                Err(e) => Reply::Error(e),
            },
            Request::Kill { signal, all } => {
                let signal = signal.to_string();
                let mut args = vec!["kill"];
                if all {
                    args.push("--all");
                }
                args.extend([self.id.as_str(), signal.as_str()]);
                self.runtime.simple(&args).map_or_else(Reply::Error, |()| Reply::Ok)
            }
            Request::Wait => {
                self.conns[c].role = Role::Waiter;
                return;
            }
            Request::Attach { stdin } => {
                if stdin && self.procs[0].input.is_none() {
                    Reply::Error(format!("container {} was not created with stdin open", self.id))
                } else {
                    self.conns[c].role = Role::Attached { exec_id: None };
                    Reply::Ok
                }
            }
            Request::Exec { exec_id, process, stdin } => match self.exec(&exec_id, &process, stdin) {
                Ok(()) => {
                    self.conns[c].role = Role::Attached { exec_id: Some(exec_id) };
                    Reply::Ok
                }
                Err(e) => Reply::Error(e),
            },
            Request::Resize { exec_id, width, height } => match self.procs.iter().find(|p| p.exec_id == exec_id) {
                Some(process) => process.resize(width, height).map_or_else(Reply::Error, |()| Reply::Ok),
                None => Reply::Error(format!("no exec {}", exec_id.unwrap_or_default())),
            },
        };
        let conn = &mut self.conns[c];
        conn.reply(&reply);
        if !matches!(conn.role, Role::Attached { .. }) || matches!(reply, Reply::Error(_)) {
            conn.done = true;
        }
    }

    fn exec(&mut self, exec_id: &str, process: &serde_json::Value, stdin: bool) -> Result<(), String> {
        if !protocol::valid_exec_id(exec_id) {
            return Err(format!("exec id {exec_id:?}: use 1-64 letters, digits, - or _"));
        }
        if self.procs.iter().any(|p| p.exec_id.as_deref() == Some(exec_id)) {
            return Err(format!("exec id {exec_id} is in use"));
        }
        if !self.started || self.procs[0].exit.is_some() {
            return Err(format!("container {} is not running", self.id));
        }
        let tty = process["terminal"].as_bool().unwrap_or(false);
        let process_file = self.dir.join(format!("exec-{exec_id}.json"));
        let pid_file = self.dir.join(format!("exec-{exec_id}.pid"));
        let json = serde_json::to_vec(process).map_err(|e| format!("exec process: {e}"))?;
        std::fs::write(&process_file, json).map_err(|e| format!("write {}: {e}", process_file.display()))?;
        let Plumbing { theirs, outputs, input } = Plumbing::new(tty, stdin)?;
        let console = if tty { Some(ConsoleSocket::bind(&format!("exec-{exec_id}.sock"))?) } else { None };
        let mut args: Vec<&std::ffi::OsStr> = vec!["exec".as_ref(), "--detach".as_ref(), "--pid-file".as_ref(), pid_file.as_os_str(), "--process".as_ref(), process_file.as_os_str()];
        if let Some(console) = &console {
            args.extend(["--console-socket".as_ref(), console.path().as_os_str()]);
        }
        args.push(self.id.as_ref());
        let ran = self.runtime.run(&args, theirs, console.as_ref());
        let _ = std::fs::remove_file(&process_file);
        let started = ran.and_then(|master| Ok((read_pid(&pid_file)?, master)));
        let _ = std::fs::remove_file(&pid_file);
        let (pid, master) = started?;
        self.procs.push(Process::new(Some(exec_id.to_string()), pid, outputs, input, master, stdin)?);
        Ok(())
    }

    /// An exec ended: its client gets the exit frame.
    fn announce_exit(&mut self, exec_id: Option<&str>, exit: Option<&Exit>) {
        let payload = exit.map(|e| serde_json::to_vec(e).expect("exits serialize")).unwrap_or_default();
        for conn in self.conns.iter_mut().filter(|c| c.attached_to(exec_id)) {
            conn.frame(FrameKind::Exit, &payload);
            conn.done = true;
        }
    }

    /// The container has exited: record it durably, delete it from the runtime, tell every
    /// client, and go.
    fn finish(mut self) -> ! {
        let exit = self.procs[0].exit.clone().map(|e| e.0).expect("finished means exited");
        // The record first: whoever finds the socket gone must find the exit.
        let recorded = write_durably(&self.dir.join(protocol::EXIT), &serde_json::to_vec(&exit).expect("exits serialize"));
        let _ = std::fs::remove_file(self.dir.join(protocol::SOCKET));
        let _ = self.runtime.simple(&["delete", "--force", &self.id]);
        for conn in &mut self.conns {
            match conn.role {
                Role::Waiter => conn.reply(&Reply::Exit(exit.clone())),
                Role::Attached { exec_id: None } => conn.frame(FrameKind::Exit, &serde_json::to_vec(&exit).expect("exits serialize")),
                Role::Request => conn.reply(&Reply::Error(format!("container {} has exited", self.id))),
                Role::Attached { .. } => {}
            }
            let _ = conn.stream.set_nonblocking(false);
            let _ = conn.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = conn.stream.write_all(&conn.output);
        }
        std::process::exit(if recorded.is_ok() { 0 } else { 1 })
    }
}

fn read_pid(path: &std::path::Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    text.trim().parse().map_err(|_| format!("{} holds no pid: {text:?}", path.display()))
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Writes `path` so that after a crash it holds either nothing or all of `data`.
fn write_durably(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
