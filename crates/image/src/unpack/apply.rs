//! Applying one layer, entry by entry (see the module doc of `unpack` for the rules).

use super::fsops::{kind_at, make_dirs, open_in_root, own, remove_at, set_xattr, sys};
use super::{decompress, paths, tar_limits};
use crate::digest::Digester;
use crate::snapshots::{Budget, Budgeted};
use crate::{Digest, Error, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmodat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Only these xattr namespaces are restored; `system.*` (ACLs aside) and others are the kernel's.
const XATTR_NAMESPACES: &[&str] = &["user.", "trusted.", "security.", "system.posix_acl_"];

/// What a layer held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    pub whiteouts: u64,
    /// The digest of the uncompressed tar stream, to check against the image config's diff_ids.
    pub diff_id: Digest,
}

/// Unpacks the layer read from `reader` (compressed or not) into the existing directory `target`,
/// its uncompressed bytes counted against `budget`.
pub fn apply_layer(reader: impl Read, target: &Path, budget: &Budget) -> Result<Applied> {
    apply(reader, target, budget).map_err(|e| budget.explain(e))
}

fn apply(reader: impl Read, target: &Path, budget: &Budget) -> Result<Applied> {
    let root = nix::fcntl::open(target, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map(own)
        .map_err(|e| Error::io("open layer directory", target, e.into()))?;
    let hashed = HashingReader { inner: Budgeted { inner: decompress::decoder(reader)?, budget }, digester: Digester::default() };
    let mut archive = tar::Archive::new(tar_limits::MetadataLimit::new(hashed));
    let (mut entries, mut bytes, mut whiteouts) = (0, 0, 0);
    // Directory times are set last: entries made inside a directory change its mtime. One per
    // directory (a repeated entry's last time wins): bounded by what is on disk, not by entries.
    let mut dir_times = std::collections::BTreeMap::new();
    for entry in archive.entries().map_err(|e| Error::io("read layer", target, e))? {
        let mut entry = entry.map_err(|e| Error::io("read layer entry", target, e))?;
        let raw = entry.path_bytes().into_owned();
        let Some(path) = paths::normalize(&raw)? else { continue };
        entries += 1;
        let (parent, name) = split(&path)?;
        if name == OPAQUE_MARKER {
            let dir = make_dirs(&root, parent).map_err(|e| sys(&path, "open directory", e))?;
            let dir = reopen(&dir, &path)?;
            set_xattr(&dir, "trusted.overlay.opaque", b"y").map_err(|e| Error::layer(path.display().to_string(), format!("mark opaque: {e}")))?;
            whiteouts += 1;
            continue;
        }
        let dir = make_dirs(&root, parent).map_err(|e| sys(&path, "open parent directory", e))?;
        if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT_PREFIX)) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.starts_with(WHITEOUT_PREFIX) {
                return Err(Error::layer(path.display().to_string(), "malformed whiteout"));
            }
            replace(&dir, OsStr::new(hidden), false, &path)?;
            mknodat(Some(dir.as_raw_fd()), hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| sys(&path, "make whiteout", e))?;
            whiteouts += 1;
            continue;
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        replace(&dir, name, kind == EntryType::Directory, &path)?;
        let mode = Mode::from_bits_truncate(header.mode().map_err(|e| Error::layer(path.display().to_string(), e.to_string()))? & 0o7777);
        let (uid, gid) = (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32);
        let mtime = TimeSpec::new(header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0);
        let xattrs = xattrs(&mut entry)?;
        let opened = match kind {
            EntryType::Regular | EntryType::Continuous => {
                let fd = nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    name,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map(own)
                .map_err(|e| sys(&path, "create file", e))?;
                // Copied through a buffer sized to the file (8 KiB to 1 MiB): std::io::copy reads
                // straight into it, so a large file takes a few large writes, not one per 8 KiB.
                let capacity = usize::try_from(header.size().unwrap_or(0)).unwrap_or(usize::MAX).clamp(8 << 10, 1 << 20);
                let mut file = std::io::BufWriter::with_capacity(capacity, std::fs::File::from(fd));
                bytes += std::io::copy(&mut entry, &mut file).map_err(|e| Error::io("write", &path, e))?;
                let file = file.into_inner().map_err(|e| Error::io("write", &path, e.into_error()))?;
                Some(OwnedFd::from(file))
            }
            EntryType::Directory => {
                match nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(sys(&path, "make directory", e)),
                }
                dir_times.insert(path.clone(), mtime);
                Some(reopen_child(&dir, name, &path)?)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::layer(path.display().to_string(), "symlink without a target"))?;
                // The target is stored as it is; nothing here ever follows it.
                symlinkat(symlink_target(&target, &path)?, Some(dir.as_raw_fd()), name).map_err(|e| sys(&path, "make symlink", e))?;
                None
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::layer(path.display().to_string(), "hardlink without a target"))?;
                let target = paths::normalize(&target)?.ok_or_else(|| Error::layer(path.display().to_string(), "hardlink to the layer's root"))?;
                let existing = open_in_root(&root, &target, OFlag::O_PATH | OFlag::O_NOFOLLOW)
                    .map_err(|e| sys(&path, &format!("hardlink target {}", target.display()), e))?;
                if kind_of(&existing) == Some(SFlag::S_IFDIR) {
                    return Err(Error::layer(path.display().to_string(), "hardlink to a directory"));
                }
                linkat(Some(existing.as_raw_fd()), OsStr::new(""), Some(dir.as_raw_fd()), name, AtFlags::AT_EMPTY_PATH)
                    .map_err(|e| sys(&path, "make hardlink", e))?;
                // A hardlink shares its target's inode: owner, mode and times are the target's.
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (flag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(&header)),
                    EntryType::Block => (SFlag::S_IFBLK, device(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknodat(Some(dir.as_raw_fd()), name, flag, mode, dev).map_err(|e| sys(&path, "make device node", e))?;
                None
            }
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => continue,
            other => return Err(Error::layer(path.display().to_string(), format!("unsupported entry type {other:?}"))),
        };
        // Owner first: chown clears set-id bits and file capabilities, which come after.
        fchownat(Some(dir.as_raw_fd()), name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| sys(&path, "chown", e))?;
        if let Some(fd) = &opened {
            nix::sys::stat::fchmod(fd.as_raw_fd(), mode).map_err(|e| sys(&path, "chmod", e))?;
            for (key, value) in &xattrs {
                set_xattr(fd, key, value).map_err(|e| Error::layer(path.display().to_string(), format!("xattr {key}: {e}")))?;
            }
        } else if kind != EntryType::Symlink {
            // A node this loop just made (not a symlink), so following is following nothing.
            fchmodat(Some(dir.as_raw_fd()), name, mode, FchmodatFlags::FollowSymlink).map_err(|e| sys(&path, "chmod", e))?;
        }
        if kind != EntryType::Directory {
            utimensat(Some(dir.as_raw_fd()), name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(|e| sys(&path, "set times", e))?;
        }
    }
    // Reverse order of paths: a directory's children before it.
    for (path, mtime) in dir_times.iter().rev() {
        if let Ok(dir) = open_in_root(&root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW) {
            let _ = nix::sys::stat::futimens(dir.as_raw_fd(), mtime, mtime);
        }
    }
    // The diff_id covers the whole stream, the padding after the last entry included.
    let mut hashed = archive.into_inner().into_inner();
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| Error::io("read layer", target, e))?;
    Ok(Applied { entries, bytes, whiteouts, diff_id: hashed.digester.finish() })
}

/// Passes the uncompressed stream through, hashing it.
struct HashingReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// `a/b/c` → (`a/b`, `c`).
fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    let name = path.file_name().ok_or_else(|| Error::layer(path.display().to_string(), "no file name"))?;
    Ok((path.parent().unwrap_or(Path::new("")), name))
}

/// Makes room for a new entry `name`: whatever is there goes, except a directory that a directory
/// entry updates (tar semantics: later entries win).
fn replace(dir: &OwnedFd, name: &OsStr, new_is_dir: bool, path: &Path) -> Result<()> {
    match kind_at(dir, name) {
        None => Ok(()),
        Some(SFlag::S_IFDIR) if new_is_dir => Ok(()),
        Some(_) => remove_at(dir, name).map_err(|e| sys(path, "replace existing entry", e)),
    }
}

/// An O_PATH fd reopened for real I/O (xattrs need one).
fn reopen(dir: &OwnedFd, path: &Path) -> Result<OwnedFd> {
    nix::fcntl::openat(Some(dir.as_raw_fd()), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map(own)
        .map_err(|e| sys(path, "open directory", e))
}

fn reopen_child(dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    nix::fcntl::openat(Some(dir.as_raw_fd()), name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map(own)
        .map_err(|e| sys(path, "open directory", e))
}

fn kind_of(fd: &OwnedFd) -> Option<SFlag> {
    let stat = nix::sys::stat::fstat(fd.as_raw_fd()).ok()?;
    Some(SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()))
}

fn device(header: &tar::Header) -> libc::dev_t {
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

/// The entry's xattrs from its PAX records (`SCHILY.xattr.<name>`), restricted to the namespaces a
/// layer may carry.
fn xattrs(entry: &mut tar::Entry<'_, impl Read>) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let Some(extensions) = entry.pax_extensions().map_err(|e| Error::io("read PAX records", "<layer>", e))? else { return Ok(out) };
    for extension in extensions.flatten() {
        let Ok(key) = extension.key() else { continue };
        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
            if XATTR_NAMESPACES.iter().any(|ns| name.starts_with(ns)) {
                out.push((name.to_string(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// A symlink target as the kernel takes it: any bytes but NUL, at most PATH_MAX.
fn symlink_target<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a OsStr> {
    if bytes.is_empty() || bytes.len() > 4096 || bytes.contains(&0) {
        return Err(Error::layer(path.display().to_string(), "symlink target empty, too long or with NUL"));
    }
    Ok(std::os::unix::ffi::OsStrExt::from_bytes(bytes))
}
