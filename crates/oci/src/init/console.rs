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

pub(crate) fn setup(socket: &UnixStream, size: Option<ConsoleSize>, uid: u32, gid: u32) -> Result<()> {
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

use std::os::unix::fs::OpenOptionsExt;
