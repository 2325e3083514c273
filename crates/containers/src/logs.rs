//! Reading a container's CRI-format log (what its shim wrote): whole records, from an offset, so
//! a follower can poll for more. The rotated file (`ctr.log.1`) is read first when starting over.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// RFC 3339 with nanoseconds, UTC.
    pub timestamp: String,
    pub stderr: bool,
    /// A `P` record: the line continues in the next record.
    pub partial: bool,
    pub text: Vec<u8>,
}

/// Where a follower is: the file's inode and the offset read up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    inode: u64,
    offset: u64,
}

/// At most this much is read per call (the shim's rotation bounds a file anyway).
const MAX_READ: u64 = 32 << 20;

/// Records of `log` after `cursor` and the cursor after them. A changed inode (rotation) means
/// the rest of the old file is in `<log>.1`, then the new file from its start.
pub fn read_since(log: &Path, cursor: Cursor) -> std::io::Result<(Vec<LogRecord>, Cursor)> {
    use std::os::unix::fs::MetadataExt;
    let mut records = Vec::new();
    let mut file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((records, cursor)),
        Err(e) => return Err(e),
    };
    let inode = file.metadata()?.ino();
    let mut offset = cursor.offset;
    if inode != cursor.inode {
        let rotated = log.with_extension("log.1");
        if let Ok(mut old) = std::fs::File::open(&rotated) {
            let start = if cursor.inode != 0 && old.metadata()?.ino() == cursor.inode { cursor.offset } else { 0 };
            read_records(&mut old, start, &mut records)?;
        }
        offset = 0;
    }
    let offset = read_records(&mut file, offset, &mut records)?;
    Ok((records, Cursor { inode, offset }))
}

/// Appends the whole records after `offset`; returns the offset after the last whole one.
fn read_records(file: &mut std::fs::File, offset: u64, records: &mut Vec<LogRecord>) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes)?;
    let mut consumed = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        consumed += line.len();
        if let Some(record) = parse(&line[..line.len() - 1]) {
            records.push(record);
        }
    }
    Ok(offset + consumed as u64)
}

fn parse(line: &[u8]) -> Option<LogRecord> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let timestamp = String::from_utf8(fields.next()?.to_vec()).ok()?;
    let stderr = match fields.next()? {
        b"stdout" => false,
        b"stderr" => true,
        _ => return None,
    };
    let partial = fields.next()? == b"P";
    Some(LogRecord { timestamp, stderr, partial, text: fields.next().unwrap_or_default().to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_across_appends_and_rotation() {
        let dir = std::env::temp_dir().join(format!("berth-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("ctr.log");
        std::fs::write(&log, "2026-01-01T00:00:00.000000001Z stdout F one\n2026-01-01T00:00:00.000000002Z stderr P tw").unwrap();
        let (records, cursor) = read_since(&log, Cursor::default()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].text.as_slice(), records[0].stderr), (&b"one"[..], false));
        // The unfinished record comes once it is whole.
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("o\n");
        std::fs::write(&log, &text).unwrap();
        let (records, cursor) = read_since(&log, cursor).unwrap();
        assert_eq!((records[0].text.as_slice(), records[0].stderr, records[0].partial), (&b"two"[..], true, true));
        // Rotation: the old file's tail, then the new file.
        std::fs::write(&log, format!("{text}2026-01-01T00:00:00.000000003Z stdout F three\n")).unwrap();
        std::fs::rename(&log, dir.join("ctr.log.1")).unwrap();
        std::fs::write(&log, "2026-01-01T00:00:00.000000004Z stdout F four\n").unwrap();
        let (records, _) = read_since(&log, cursor).unwrap();
        assert_eq!(records.iter().map(|r| String::from_utf8_lossy(&r.text).into_owned()).collect::<Vec<_>>(), ["three", "four"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
