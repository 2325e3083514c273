//! Reading /proc/self/mountinfo's fields.

/// A mount point (or root) field as the kernel wrote it, with its escapes undone: space, tab,
/// newline and backslash appear as `\ooo`. A backslash not followed by three octal digits stays.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_undone_and_stray_backslashes_kept() {
        assert_eq!(unescape(b"/b/with\\040space\\134x\\011"), b"/b/with space\\x\t".to_vec());
        assert_eq!(unescape(b"a\\9b\\04"), b"a\\9b\\04".to_vec());
        assert_eq!(unescape(b"\\777"), vec![0xff], "out of range wraps, never panics");
    }
}
