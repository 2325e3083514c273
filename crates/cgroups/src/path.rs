//! cgroupsPath validation: the only place a caller-supplied string becomes a cgroup path.

use crate::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// A validated cgroupsPath: `absolute` means rooted at each hierarchy's root; otherwise it is
/// joined to the caller's own cgroup in each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupPath {
    pub absolute: bool,
    pub components: PathBuf,
}

pub(crate) fn validate(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupPath> {
    let raw = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/").join(id),
    };
    let shown = raw.display().to_string();
    // systemd-style "slice:prefix:name" paths need the systemd driver.
    if shown.contains(':') {
        return Err(Error::InvalidPath(shown, "a slice:prefix:name path is the systemd driver's (--systemd-cgroup)"));
    }
    let mut components = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => components.push(part),
            Component::ParentDir => return Err(Error::InvalidPath(shown, "'..' would leave the hierarchy")),
            Component::Prefix(_) => return Err(Error::InvalidPath(shown, "not a Linux path")),
        }
    }
    if components.as_os_str().is_empty() {
        return Err(Error::InvalidPath(shown, "the hierarchy root cannot be a container's cgroup"));
    }
    Ok(CgroupPath { absolute: raw.is_absolute(), components })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_id_under_root() {
        let p = validate(None, "abc").unwrap();
        assert!(p.absolute);
        assert_eq!(p.components, PathBuf::from("abc"));
    }

    #[test]
    fn rejects_escape_and_root() {
        assert!(validate(Some(Path::new("/a/../../etc")), "x").is_err());
        assert!(validate(Some(Path::new("/")), "x").is_err());
        assert!(validate(Some(Path::new("system.slice:berth:x")), "x").is_err());
    }

    #[test]
    fn relative_kept_relative() {
        let p = validate(Some(Path::new("a/./b")), "x").unwrap();
        assert!(!p.absolute);
        assert_eq!(p.components, PathBuf::from("a/b"));
    }
}
