//! Users and groups from the image's /etc/passwd and /etc/group, read by us — never through the
//! container's libc or NSS modules, which would run the image's code on the host. The files are
//! opened inside the rootfs (RESOLVE_IN_ROOT: a symlinked /etc/passwd cannot reach the host's) and
//! read up to [`MAX_FILE`].

use crate::{Error, Result};
use std::os::fd::AsFd;
use std::path::Path;

pub const MAX_FILE: u64 = 4 << 20;
/// Ids above this are refused: they turn negative (and -1, "no change", in chown) in the kernel's
/// and libc's signed views (CVE-2024-40635 class).
const MAX_ID: u64 = i32::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_id(text: &str, what: &str) -> Result<u32> {
    match text.parse::<u64>() {
        Ok(id) if id <= MAX_ID => Ok(id as u32),
        Ok(_) => Err(Error::Invalid(format!("{what} {text} is out of range (at most {MAX_ID})"))),
        Err(_) => Err(Error::Invalid(format!("{what} {text:?} is not a number"))),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || line.starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].into(),
                uid: parse_id(fields[2], "uid").ok()?,
                gid: parse_id(fields[3], "gid").ok()?,
                home: fields[5].into(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || line.starts_with('#') {
                return None;
            }
            let members = fields[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
            Some(GroupEntry { name: fields[0].into(), gid: parse_id(fields[2], "gid").ok()?, members })
        })
        .collect()
}

/// Reads `path` inside `rootfs` (see [`berth_sys::read_regular_in_root`]: never a FIFO or a
/// device, which a running container can plant there); a missing file is empty.
fn read_in_root(rootfs: &Path, path: &str) -> Result<String> {
    let root = std::fs::File::open(rootfs).map_err(|e| Error::io("open rootfs", rootfs, e))?;
    match berth_sys::read_regular_in_root(root.as_fd(), Path::new(path), MAX_FILE) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(Error::Invalid(format!("in the image: {e}"))),
        Err(e) => Err(Error::io("read in the image", Path::new(path), e)),
    }
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, empty for root) against the image.
pub fn resolve(rootfs: &Path, user: &str) -> Result<ResolvedUser> {
    let passwd = parse_passwd(&read_in_root(rootfs, "/etc/passwd")?);
    let groups = parse_group(&read_in_root(rootfs, "/etc/group")?);
    resolve_in(&passwd, &groups, user)
}

fn resolve_in(passwd: &[PasswdEntry], groups: &[GroupEntry], user: &str) -> Result<ResolvedUser> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = if user_part.bytes().all(|b| b.is_ascii_digit()) {
        let uid = parse_id(user_part, "uid")?;
        passwd.iter().find(|e| e.uid == uid).map(|e| (e.uid, e.gid, e.home.clone(), Some(e.name.clone()))).unwrap_or((uid, 0, "/".into(), None))
    } else {
        let e = passwd
            .iter()
            .find(|e| e.name == user_part)
            .ok_or_else(|| Error::Invalid(format!("user {user_part:?} is not in the image's /etc/passwd")))?;
        (e.uid, e.gid, e.home.clone(), Some(e.name.clone()))
    };
    let (uid, mut gid, home, name) = entry;
    if let Some(group) = group_part {
        gid = if group.bytes().all(|b| b.is_ascii_digit()) && !group.is_empty() {
            parse_id(group, "gid")?
        } else {
            groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| Error::Invalid(format!("group {group:?} is not in the image's /etc/group")))?
        };
    }
    // Supplementary groups: those listing the user by name (only when no group was forced).
    let additional_gids = match (&name, group_part) {
        (Some(name), None) => {
            let mut gids: Vec<u32> = groups.iter().filter(|g| g.members.iter().any(|m| m == name) && g.gid != gid).map(|g| g.gid).collect();
            gids.sort_unstable();
            gids.dedup();
            gids
        }
        _ => Vec::new(),
    };
    Ok(ResolvedUser { uid, gid, additional_gids, home: if home.is_empty() { "/".into() } else { home } })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbroken\nnobody:x:65534:65534::/nonexistent:/bin/false\nhuge:x:4294967296:0::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\naudio:x:29:www\n";

    fn resolve_text(user: &str) -> Result<ResolvedUser> {
        resolve_in(&parse_passwd(PASSWD), &parse_group(GROUP), user)
    }

    #[test]
    fn fifos_and_devices_where_passwd_should_be_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("berth-passwd-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        nix::unistd::mkfifo(&dir.join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        // An open for reading would block here for ever: nobody writes the FIFO.
        let refused = resolve(&dir, "root").unwrap_err();
        assert!(refused.to_string().contains("not a regular file"), "{refused}");
        std::fs::remove_file(dir.join("etc/passwd")).unwrap();
        // A symlink to a device (resolved inside the root: to the image's own /dev/zero).
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        let device = nix::sys::stat::mknod(
            &dir.join("dev/zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        );
        std::os::unix::fs::symlink("/dev/zero", dir.join("etc/passwd")).unwrap();
        if device.is_ok() {
            assert!(resolve(&dir, "root").unwrap_err().to_string().contains("not a regular file"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_numbers_and_groups() {
        assert_eq!(resolve_text("").unwrap(), ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() });
        assert_eq!(resolve_text("www").unwrap(), ResolvedUser { uid: 33, gid: 33, additional_gids: vec![29, 50], home: "/var/www".into() });
        assert_eq!(resolve_text("33:staff").unwrap().gid, 50);
        assert_eq!(resolve_text("1234").unwrap(), ResolvedUser { uid: 1234, gid: 0, additional_gids: vec![], home: "/".into() });
        assert_eq!(resolve_text("1234:5").unwrap().gid, 5);
    }

    #[test]
    fn unknown_and_out_of_range_are_errors() {
        assert!(resolve_text("nosuch").unwrap_err().to_string().contains("not in the image's /etc/passwd"));
        assert!(resolve_text("www:nogroup").unwrap_err().to_string().contains("/etc/group"));
        assert!(resolve_text("4294967296").unwrap_err().to_string().contains("out of range"));
        assert!(resolve_text("0:2147483648").unwrap_err().to_string().contains("out of range"));
        // The entry with an out-of-range uid is skipped, not wrapped to 0.
        assert!(resolve_text("huge").is_err());
    }
}
