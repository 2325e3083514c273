//! Entry names as the layer gives them → a relative path of plain components, or a refusal.

use crate::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Longer names than PATH_MAX cannot be made anyway; refusing them early bounds the work per entry.
const MAX_PATH: usize = 4096;

/// `./a/b`, `/a/b` and `a/b/` all mean `a/b`; `.` or `/` alone mean the layer's root (None).
/// Any `..` is refused: in a layer it can only be an attempt to leave it.
pub(super) fn normalize(raw: &[u8]) -> Result<Option<PathBuf>> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.len() > MAX_PATH || raw.contains(&0) {
        return Err(Error::layer(shown(), "name too long or contains NUL"));
    }
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(Error::layer(shown(), "'..' would leave the layer")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_plain_components() {
        assert_eq!(normalize(b"./a/b/").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(normalize(b"/etc/passwd").unwrap(), Some(PathBuf::from("etc/passwd")));
        assert_eq!(normalize(b"./").unwrap(), None);
        for bad in [&b"../x"[..], b"a/../../x", b"a/..", b"a\0b"] {
            assert!(normalize(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
