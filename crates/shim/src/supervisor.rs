//! The shim's one loop: poll over the SIGCHLD signalfd, the control socket, the processes' output
//! and input, and the clients. Nothing in it blocks on a client or a container; the runtime binary
//! is run to completion in place (create, start, kill, exec all return in milliseconds). What each
//! request does is in crate::requests.
//!
//! A container's output goes to its CRI log first and to attached clients second: a client that
//! falls more than [`MAX_CLIENT_BACKLOG`] behind is disconnected, the log loses nothing. An
//! `exec_sync`'s output has no log: its process is not read while its client is behind.

use crate::container::Container;
use crate::cri_log::Stream;
use crate::process::{set_nonblocking, Process};
use crate::runtime::Runtime;
use crate::Args;
use berth_shim::protocol::{self, Event, Exit, FrameKind, Reply};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

pub const MAX_CLIENT_BACKLOG: usize = 4 << 20;
/// After a process exits, how long its output may stay open (a daemon it left behind outside a
/// pid namespace) before the shim stops reading it.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// A shim nobody asks anything of (its starter died before creating a container) goes after this.
const IDLE_EXIT: Duration = Duration::from_secs(60);

pub enum Role {
    /// Still sending its request line.
    Request,
    Waiter(String),
    Subscriber,
    Attached {
        id: String,
        exec_id: Option<String>,
    },
}

pub struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    pub output: Vec<u8>,
    pub role: Role,
    /// Close once the output is flushed.
    pub done: bool,
    /// Not read from while its process's input buffer is full.
    blocked: bool,
    pub closed: bool,
}

impl Conn {
    pub fn reply(&mut self, reply: &Reply) {
        serde_json::to_writer(&mut self.output, reply).expect("replies serialize");
        self.output.push(b'\n');
    }

    pub fn frame(&mut self, kind: FrameKind, payload: &[u8]) {
        protocol::encode(kind, payload, &mut self.output);
        if self.output.len() > MAX_CLIENT_BACKLOG {
            self.closed = true;
        }
    }

    pub fn event(&mut self, event: &Event) {
        serde_json::to_writer(&mut self.output, event).expect("events serialize");
        self.output.push(b'\n');
        // A subscriber this far behind has stopped reading: it resyncs when it subscribes again.
        if self.output.len() > MAX_CLIENT_BACKLOG {
            self.closed = true;
        }
    }

    pub fn attached_to(&self, container: &str, exec: Option<&str>) -> bool {
        matches!(&self.role, Role::Attached { id, exec_id } if id == container && exec_id.as_deref() == exec)
    }
}

#[derive(Clone, Copy)]
enum Token {
    Signals,
    Listener,
    Output(usize, usize),
    Input(usize),
    Conn(usize),
    Oom(usize),
}

pub struct Supervisor {
    pub runtime: Runtime,
    listener: UnixListener,
    signals: SignalFd,
    pub containers: Vec<Container>,
    /// Inits and execs of every container.
    pub procs: Vec<Process>,
    pub conns: Vec<Conn>,
    /// Set by the first request that created or deleted a container; cleared by none.
    pub served: bool,
    started_at: Instant,
}

impl Supervisor {
    /// Becomes a supervisor: own session, subreaper, in its directory, listening.
    pub fn start(args: &Args) -> Result<Supervisor, String> {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        // Sockets are bound by name here: the directory's path may be too long for an address.
        std::env::set_current_dir(&args.dir).map_err(|e| format!("chdir {}: {e}", args.dir.display()))?;
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("become a subreaper: {e}"))?;
        std::fs::write(protocol::SHIM_PID, std::process::id().to_string()).map_err(|e| format!("write {}: {e}", protocol::SHIM_PID))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(|e| format!("block SIGCHLD: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
        let runtime = Runtime::new(&args.runtime, args.runtime_root.as_deref(), &args.dir);
        let _ = std::fs::remove_file(protocol::SOCKET);
        let listener = UnixListener::bind(protocol::SOCKET).map_err(|e| format!("bind {}: {e}", args.dir.join(protocol::SOCKET).display()))?;
        listener.set_nonblocking(true).map_err(|e| format!("control socket: {e}"))?;
        Ok(Supervisor {
            runtime,
            listener,
            signals,
            containers: Vec::new(),
            procs: Vec::new(),
            conns: Vec::new(),
            served: false,
            started_at: Instant::now(),
        })
    }

    pub fn container(&mut self, id: &str) -> Result<&mut Container, String> {
        self.containers.iter_mut().find(|c| c.id == id).ok_or_else(|| format!("no container {id} in this shim"))
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
                    Token::Oom(c) => {
                        if self.containers.get_mut(c).and_then(|c| c.oom.as_mut()).is_some_and(|oom| oom.notified()) {
                            self.announce_oom(c);
                        }
                    }
                }
            }
            for c in 0..self.containers.len() {
                if self.containers[c].oom.as_mut().is_some_and(|oom| oom.recheck_until.is_some() && oom.recheck()) {
                    self.announce_oom(c);
                }
            }
            self.enforce_deadlines();
            self.close_outputs();
            for p in (0..self.procs.len()).rev() {
                if self.procs[p].finished() {
                    let process = self.procs.remove(p);
                    self.process_ended(process);
                }
            }
            self.conns.retain(|c| !c.closed);
            let idle = !self.served && self.started_at.elapsed() >= IDLE_EXIT;
            if (self.served || idle) && self.containers.is_empty() {
                self.shut_down();
            }
        }
    }

    /// Waits for something to do; returns what is ready.
    fn poll(&self) -> Vec<(Token, PollFlags)> {
        let mut tokens = vec![Token::Signals, Token::Listener];
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN), PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        for (p, process) in self.procs.iter().enumerate() {
            if process.sync.is_none() || !self.client_behind(process) {
                for (o, output) in process.outputs.iter().enumerate() {
                    tokens.push(Token::Output(p, o));
                    fds.push(PollFd::new(output.fd.as_fd(), PollFlags::POLLIN));
                }
            }
            if let (Some(input), false) = (&process.input, process.pending_input.is_empty()) {
                tokens.push(Token::Input(p));
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLOUT));
            }
        }
        for (c, container) in self.containers.iter().enumerate().filter(|(_, c)| c.exit.is_none()) {
            if let Some(oom) = &container.oom {
                tokens.push(Token::Oom(c));
                fds.push(PollFd::new(oom.fd(), PollFlags::POLLIN));
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
        let grace = self.procs.iter().filter(|p| !p.outputs.is_empty()).filter_map(|p| p.exit.as_ref().map(|e| e.1 + OUTPUT_GRACE));
        let sync = self.procs.iter().filter(|p| p.exit.is_none()).filter_map(|p| p.sync.as_ref().and_then(|s| s.deadline));
        let idle = (!self.served).then_some(self.started_at + IDLE_EXIT);
        let oom = self.containers.iter().filter_map(|c| c.oom.as_ref()?.recheck_until.map(|_| Instant::now() + crate::oom::RECHECK_EVERY));
        let timeout = match grace.chain(sync).chain(idle).chain(oom).min() {
            Some(at) => {
                let millis = at.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32 + 1;
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::NONE)
            }
            None => PollTimeout::NONE,
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => tokens.into_iter().zip(fds.iter()).filter_map(|(t, fd)| fd.revents().filter(|r| !r.is_empty()).map(|r| (t, r))).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn client_behind(&self, process: &Process) -> bool {
        self.conns.iter().any(|c| c.attached_to(&process.container, process.exec_id.as_deref()) && c.output.len() > MAX_CLIENT_BACKLOG / 2)
    }

    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), Exit { code, exited_at: now_ns(), ..Default::default() }),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid.as_raw(), Exit { code: 128 + signal as i32, signal: Some(signal as i32), exited_at: now_ns(), ..Default::default() })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if let Some(process) = self.procs.iter_mut().find(|p| p.pid == pid && p.exit.is_none()) {
                process.exit = Some((exit, Instant::now()));
            }
        }
    }

    /// The OOM killer was at work in a container's cgroup: subscribers are told.
    fn announce_oom(&mut self, c: usize) {
        let event = Event::Oom { id: self.containers[c].id.clone() };
        for conn in self.conns.iter_mut().filter(|c| matches!(c.role, Role::Subscriber)) {
            conn.event(&event);
        }
    }

    /// `exec_sync` processes past their deadline are killed (their exit says so).
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        for process in self.procs.iter_mut().filter(|p| p.exit.is_none()) {
            if let Some(sync) = process.sync.as_mut().filter(|s| s.deadline.is_some_and(|d| d <= now) && !s.timed_out) {
                sync.timed_out = true;
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid), Signal::SIGKILL);
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if set_nonblocking(&stream).is_ok() {
                self.conns.push(Conn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    role: Role::Request,
                    done: false,
                    blocked: false,
                    closed: false,
                });
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
                let stream = output.stream;
                let mut data = &buf[..n];
                if process.exec_id.is_none() {
                    if let Some(container) = self.containers.iter_mut().find(|c| c.id == process.container) {
                        // A full disk must not stop the container: the bytes still go to clients.
                        let _ = container.log.write(stream, data);
                    }
                }
                if let Some(sync) = process.sync.as_mut() {
                    data = &data[..sync.allow(stream, data.len())];
                }
                let kind = match stream {
                    Stream::Stdout => FrameKind::Stdout,
                    Stream::Stderr => FrameKind::Stderr,
                };
                let (container, exec_id) = (&process.container, process.exec_id.as_deref());
                for conn in self.conns.iter_mut().filter(|c| c.attached_to(container, exec_id)) {
                    if !data.is_empty() {
                        conn.frame(kind, data);
                    }
                }
            }
            Err(_) => {}
        }
    }

    /// Drops the outputs that ended, and those of processes that exited more than the grace
    /// period ago; an init's unfinished log lines are written out.
    fn close_outputs(&mut self) {
        for process in &mut self.procs {
            let expired = process.exit.as_ref().is_some_and(|e| e.1.elapsed() >= OUTPUT_GRACE);
            let mut log = match process.exec_id {
                None => self.containers.iter_mut().find(|c| c.id == process.container).map(|c| &mut c.log),
                Some(_) => None,
            };
            process.outputs.retain(|output| {
                let keep = !output.ended && !expired;
                if let (false, Some(log)) = (keep, log.as_mut()) {
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
            let (container, exec_id) = (&process.container, process.exec_id.as_deref());
            for conn in self.conns.iter_mut().filter(|c| c.attached_to(container, exec_id)) {
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
                match serde_json::from_slice(&line) {
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
            Role::Waiter(_) | Role::Subscriber => self.conns[c].input.clear(),
            Role::Attached { id, exec_id } => {
                let Some(p) = self.procs.iter().position(|p| p.is(id, exec_id.as_deref())) else { return };
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

    /// A process has exited and its output is read: its clients get the exit frame; an init's
    /// exit is recorded and pushed to subscribers and waiters.
    fn process_ended(&mut self, process: Process) {
        let Some((mut exit, _)) = process.exit else { return };
        if let Some(sync) = &process.sync {
            (exit.timed_out, exit.truncated) = (sync.timed_out, sync.truncated);
        }
        let exec_id = process.exec_id.as_deref();
        if exec_id.is_none() {
            let Ok(container) = self.container(&process.container) else { return };
            exit = container.exited(exit).clone();
            let event = Event::Exit { id: process.container.clone(), exit: exit.clone() };
            for conn in &mut self.conns {
                match &conn.role {
                    Role::Subscriber => conn.event(&event),
                    Role::Waiter(id) if *id == process.container => {
                        conn.reply(&Reply::Exit(exit.clone()));
                        conn.done = true;
                    }
                    _ => {}
                }
            }
        }
        let payload = serde_json::to_vec(&exit).expect("exits serialize");
        for conn in self.conns.iter_mut().filter(|c| c.attached_to(&process.container, exec_id)) {
            conn.frame(FrameKind::Exit, &payload);
            conn.done = true;
        }
    }

    /// Nothing left to supervise: the socket and pid file go first (whoever is told of the last
    /// delete may remove the directory), then every client gets what it is owed, and the shim exits.
    fn shut_down(mut self) -> ! {
        let _ = std::fs::remove_file(protocol::SOCKET);
        let _ = std::fs::remove_file(protocol::SHIM_PID);
        let _ = std::fs::remove_file(self.runtime.log_path());
        for conn in &mut self.conns {
            let _ = conn.stream.set_nonblocking(false);
            let _ = conn.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = conn.stream.write_all(&conn.output);
        }
        std::process::exit(0)
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub fn read_pid(path: &std::path::Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    text.trim().parse().map_err(|_| format!("{} holds no pid: {text:?}", path.display()))
}
