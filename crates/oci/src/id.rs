//! Container ids become directory names under the state root, so they are checked before any use.

use crate::{Error, Result};

/// Accepts what runc accepts: `[A-Za-z0-9_+.-]`, not `.` or `..`, at most 1024 bytes.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidId(id.into(), "empty"));
    }
    if id.len() > 1024 {
        return Err(Error::InvalidId(id.into(), "longer than 1024 bytes"));
    }
    if id == "." || id == ".." {
        return Err(Error::InvalidId(id.into(), "'.' and '..' are not ids"));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.')) {
        return Err(Error::InvalidId(id.into(), "only letters, digits and _ + - . are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["a", "abc-1.2_3+x", "A"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id(&"x".repeat(1025)).is_err());
    }
}
