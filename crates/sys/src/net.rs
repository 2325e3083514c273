//! The loopback interface of the calling thread's network namespace brought up: a new namespace
//! has it down, and nothing in a container without CAP_NET_ADMIN can fix that. Two ioctls on a
//! throw-away socket (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP): no netlink library for one flag.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes no pointers; a non-negative result is a new fd we then own.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by socket and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data (a name and a union of integers); all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags into `request`,
    // which lives across the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union's flags member is the one SIOCGIFFLAGS just filled in.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A TCP connection to `addr` made from inside the network namespace pinned at `netns`: a
/// thread of its own joins the namespace (setns affects only the calling thread), connects,
/// and ends, so no other thread ever runs in it. A socket stays in the namespace it was made in.
pub fn connect_in_netns(netns: &std::path::Path, addr: std::net::SocketAddr, timeout: std::time::Duration) -> io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns)?;
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            std::net::TcpStream::connect_timeout(&addr, timeout)
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace's connecting thread panicked"))?
}
