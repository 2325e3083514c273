//! The container's terminal: a pty allocated inside the container's devpts, whose master goes to the
//! caller through the console socket (SCM_RIGHTS) and whose slave becomes stdio and controlling tty.

use crate::{Error, Result};
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::Box as ConsoleSize;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;

nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, libc::winsize);

/// `bind_dev_console`: the container's init (not an exec'd process) also gets the pty at
/// /dev/console, as the runtime-spec asks.
pub(crate) fn setup(socket: &UnixStream, size: Option<ConsoleSize>, uid: u32, gid: u32, bind_dev_console: bool) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(|e| Error::sys("open /dev/ptmx", e))?;
    grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    unlockpt(&master).map_err(|e| Error::sys("unlockpt", e))?;
    let slave_name = ptsname_r(&master).map_err(|e| Error::sys("ptsname", e))?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_name)
        .map_err(|e| Error::io("open pty", &slave_name, e))?;
    // The process owns its terminal, whatever user it runs as.
    nix::unistd::fchown(slave.as_raw_fd(), Some(uid.into()), Some(gid.into())).map_err(|e| Error::sys("chown pty", e))?;
    if let Some(size) = size {
        let ws = libc::winsize { ws_row: size.height() as u16, ws_col: size.width() as u16, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: ws is a valid winsize and the fd is a pty master.
        unsafe { set_window_size(master.as_raw_fd(), &ws) }.map_err(|e| Error::sys("set console size", e))?;
    }
    if bind_dev_console {
        bind_over_dev_console(&slave)?;
    }
    let fds = [master.as_raw_fd()];
    let name = slave_name.as_bytes();
    sendmsg::<()>(socket.as_raw_fd(), &[IoSlice::new(name)], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send pty master to console socket", e))?;
    drop(master);
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    // SAFETY: TIOCSCTTY takes an int argument; the fd is the pty slave we just opened.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::sys("set controlling terminal", std::io::Error::last_os_error()));
    }
    let fd = slave.into_raw_fd();
    for target in 0..3 {
        nix::unistd::dup2(fd, target).map_err(|e| Error::sys("dup pty to stdio", e))?;
    }
    if fd > 2 {
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

/// Binds the pty slave over /dev/console. The target is never reached through a symlink
/// (CVE-2025-52565 class: a /dev/console planted as a link to a /proc file would bind the pty
/// there): /dev and /dev/console are opened O_NOFOLLOW, and only a regular file or a character
/// device is a mount point we accept; the mount goes from fd to fd.
fn bind_over_dev_console(slave: &std::fs::File) -> Result<()> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let dev = nix::fcntl::open("/dev", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open /dev (must be a directory, not a symlink)", e))?;
    let dev = unsafe_owned(dev);
    match openat(
        Some(dev.as_raw_fd()),
        "console",
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => drop(unsafe_owned(fd)),
        Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(Error::sys("create /dev/console", e)),
    }
    let target = openat(Some(dev.as_raw_fd()), "console", OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open /dev/console", e))?;
    let target = unsafe_owned(target);
    let kind = SFlag::from_bits_truncate(fstat(target.as_raw_fd()).map_err(|e| Error::sys("stat /dev/console", e))?.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG && kind != SFlag::S_IFCHR {
        return Err(Error::Init(
            "/dev/console in the container is neither a file nor a device (a symlink?): refusing to mount the console there".into(),
        ));
    }
    let source = format!("/proc/self/fd/{}", slave.as_raw_fd());
    let target_path = format!("/proc/self/fd/{}", target.as_raw_fd());
    nix::mount::mount(Some(source.as_str()), target_path.as_str(), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| Error::sys("bind the pty over /dev/console", e))
}

fn unsafe_owned(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: callers pass an fd that nix's open/openat just returned, owned by nobody else.
    unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

use std::os::unix::fs::OpenOptionsExt;
