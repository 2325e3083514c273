//! What berthd does for systemd when systemd runs it (`scripts/install.sh`'s units): it says when
//! it is ready and when it stops (sd_notify's protocol: one datagram of `KEY=VALUE` lines to
//! `$NOTIFY_SOCKET`), and it serves on the socket systemd hands over (socket activation:
//! `$LISTEN_PID`, `$LISTEN_FDS`, descriptors from 3). Both are a few lines of the protocol:
//! no crate is needed for them.
//!
//! The variables are read and removed before any thread starts, so the shims and runtimes
//! berthd starts neither notify systemd nor take its sockets.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// What systemd gave: where to notify, and the sockets it listens on for us.
#[derive(Debug, Default)]
pub struct Handover {
    notify_socket: Option<String>,
    /// Descriptors 3.. passed to this process, once; taken by [`Handover::take_listener`].
    listeners: std::sync::Mutex<Vec<OwnedFd>>,
}

static HANDOVER: OnceLock<Handover> = OnceLock::new();

/// The first socket systemd passed (`berthd.socket`), if any.
pub fn take_listener() -> Option<OwnedFd> {
    let handover = HANDOVER.get()?;
    let mut listeners = handover.listeners.lock().unwrap_or_else(|e| e.into_inner());
    (!listeners.is_empty()).then(|| listeners.remove(0))
}

/// Reads and removes systemd's variables. Call first thing in main, before threads exist.
pub fn take_environment() {
    let notify_socket = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty());
    // Only for us: systemd sets LISTEN_PID to the process it started.
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok()).filter(|n| ours && *n > 0).unwrap_or(0);
    let listeners = (3..3 + count.min(64))
        .map(|fd| {
            // SAFETY: systemd passed descriptors 3..3+LISTEN_FDS to this process (LISTEN_PID is
            // ours) and nothing else in it has taken them yet; each is owned once, here. The
            // flag keeps them from the processes berthd starts.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                OwnedFd::from_raw_fd(fd)
            }
        })
        .collect();
    for variable in ["NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(variable);
    }
    let _ = HANDOVER.set(Handover { notify_socket, listeners: std::sync::Mutex::new(listeners) });
}

/// Tells systemd `state` (`READY=1`, `STOPPING=1` …) if it asked to be told; otherwise nothing.
pub fn notify(state: &str) {
    let Some(path) = HANDOVER.get().and_then(|h| h.notify_socket.as_deref()) else { return };
    let address = match path.strip_prefix('@') {
        Some(name) => <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes()),
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    };
    let sent = address.and_then(|address| std::os::unix::net::UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address));
    if let Err(e) = sent {
        tracing::warn!("tell systemd {state:?} through {path}: {e}");
    }
}
