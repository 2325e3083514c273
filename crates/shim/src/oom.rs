//! Noticing OOM kills in a container's memory cgroup while it runs, whichever process the kernel
//! picked (the init may survive). On cgroup v1 an eventfd registered for `memory.oom_control`
//! through `cgroup.event_control`; on v2 an inotify watch of `memory.events`. Either fd becomes
//! readable on the poll loop, and the `oom_kill` counter in the same file says whether a kill
//! happened. v1 signals when the cgroup runs out of memory, before the kernel has chosen and
//! killed: a notification the counter does not show yet is looked at again for a while.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long after a notification the counter is looked at again (every [`RECHECK_EVERY`]).
const RECHECK_FOR: Duration = Duration::from_secs(2);
pub const RECHECK_EVERY: Duration = Duration::from_millis(50);

pub struct OomWatch {
    /// `memory.oom_control` (v1) or `memory.events` (v2): both hold an `oom_kill N` line.
    counter: PathBuf,
    at_start: u64,
    seen: u64,
    fd: OwnedFd,
    v2: bool,
    /// A notification not yet seen in the counter: looked at again until then.
    pub recheck_until: Option<Instant>,
}

impl OomWatch {
    /// A watch on the memory cgroup of process `pid`, if it has one this shim can watch.
    pub fn new(pid: i32) -> Option<OomWatch> {
        let (counter, v2) = counter_file(pid)?;
        let at_start = read_oom_kills(&counter)?;
        let fd = if v2 { inotify(&counter)? } else { eventfd(&counter)? };
        Some(OomWatch { counter, at_start, seen: at_start, fd, v2, recheck_until: None })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Takes a notification; true when the kernel has OOM-killed in the cgroup since last told.
    pub fn notified(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let len = if self.v2 { buf.len() } else { 8 };
        // Drained whatever it holds (an eventfd's counter, inotify events): the file says the rest.
        while nix::unistd::read(self.fd.as_raw_fd(), &mut buf[..len]).is_ok_and(|n| n > 0) {}
        self.recheck_until = Some(Instant::now() + RECHECK_FOR);
        self.recheck()
    }

    /// True when the counter shows kills not told yet (then nothing is pending any more).
    pub fn recheck(&mut self) -> bool {
        match read_oom_kills(&self.counter) {
            Some(now) if now > self.seen => {
                self.seen = now;
                self.recheck_until = None;
                true
            }
            _ => {
                if self.recheck_until.is_some_and(|until| Instant::now() >= until) {
                    self.recheck_until = None;
                }
                false
            }
        }
    }

    /// Whether the OOM killer has killed in the cgroup since the container started.
    pub fn killed_since_start(&self) -> bool {
        read_oom_kills(&self.counter).is_some_and(|now| now > self.at_start)
    }
}

/// The counter file of `pid`'s memory cgroup, and whether it is cgroup v2's.
fn counter_file(pid: i32) -> Option<(PathBuf, bool)> {
    let text = read_small(Path::new(&format!("/proc/{pid}/cgroup")))?;
    let mut v2 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some((Path::new("/sys/fs/cgroup/memory").join(path).join("memory.oom_control"), false));
        }
        if controllers.is_empty() {
            v2 = Some(Path::new("/sys/fs/cgroup").join(path).join("memory.events"));
        }
    }
    v2.filter(|file| file.exists()).map(|file| (file, true))
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

/// v1: an eventfd the kernel signals on every OOM in the cgroup.
fn eventfd(oom_control: &Path) -> Option<OwnedFd> {
    // SAFETY: eventfd takes two integers and returns a new fd or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a new fd that nothing else owns.
    let event = unsafe { OwnedFd::from_raw_fd(raw) };
    let control = std::fs::File::open(oom_control).ok()?;
    let registration = format!("{} {}", event.as_raw_fd(), control.as_raw_fd());
    std::fs::write(oom_control.with_file_name("cgroup.event_control"), registration).ok()?;
    Some(event)
}

/// v2: an inotify watch that wakes on every change of `memory.events`.
fn inotify(events: &Path) -> Option<OwnedFd> {
    // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return None;
    }
    // SAFETY: a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: the path is NUL-terminated and outlives the call; the fd is ours.
    let watch = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
    (watch >= 0).then_some(fd)
}
