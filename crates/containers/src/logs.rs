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

impl LogRecord {
    /// When it was written, in nanoseconds since the epoch (0 if its timestamp does not parse).
    pub fn written_ns(&self) -> u64 {
        humantime::parse_rfc3339(&self.timestamp)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Where a follower is: the file's inode and the offset read up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    inode: u64,
    offset: u64,
}

/// At most this much of each file is read per call, so a reader's memory does not grow with the
/// log: a caller that is told there is more calls again.
const BATCH: u64 = 256 << 10;

/// What one call read.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<LogRecord>,
    /// Where the next call starts.
    pub cursor: Cursor,
    /// The log holds more than this batch: call again at once.
    pub more: bool,
}

/// Records of `log` after `cursor`, at most a batch of each file. A changed inode (rotation)
/// means the rest of the old file is in `<log>.1`, then the new file from its start.
pub fn read_since(log: &Path, cursor: Cursor) -> std::io::Result<Batch> {
    use std::os::unix::fs::MetadataExt;
    let mut records = Vec::new();
    let mut file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Batch { records, cursor, more: false }),
        Err(e) => return Err(e),
    };
    let inode = file.metadata()?.ino();
    let mut offset = cursor.offset;
    if inode != cursor.inode {
        let rotated = log.with_extension("log.1");
        if let Ok(mut old) = std::fs::File::open(&rotated) {
            let old_inode = old.metadata()?.ino();
            let start = if cursor.inode != 0 && old_inode == cursor.inode { cursor.offset } else { 0 };
            let (end, more) = read_records(&mut old, start, &mut records)?;
            // Not through the old file yet: the next call goes on in it.
            if more {
                return Ok(Batch { records, cursor: Cursor { inode: old_inode, offset: end }, more });
            }
        }
        offset = 0;
    }
    let (offset, more) = read_records(&mut file, offset, &mut records)?;
    Ok(Batch { records, cursor: Cursor { inode, offset }, more })
}

/// Appends the whole records in the batch after `offset`; returns the offset after the last
/// whole one, and whether the batch was full.
fn read_records(file: &mut std::fs::File, offset: u64, records: &mut Vec<LogRecord>) -> std::io::Result<(u64, bool)> {
    file.seek(SeekFrom::Start(offset))?;
    // Sized to what is there, so a follower's poll at the end reads once and allocates nothing.
    let there = file.metadata()?.len().saturating_sub(offset).min(BATCH);
    let mut bytes = Vec::with_capacity(there as usize);
    file.take(BATCH).read_to_end(&mut bytes)?;
    let full = bytes.len() as u64 == BATCH;
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
    // A batch without one newline is no record the shim wrote (it splits long lines): skipped,
    // or the reader would stop there for ever.
    if consumed == 0 && full {
        consumed = bytes.len();
    }
    Ok((offset + consumed as u64, full))
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
        let Batch { records, cursor, more } = read_since(&log, Cursor::default()).unwrap();
        assert_eq!((records.len(), more), (1, false));
        assert_eq!((records[0].text.as_slice(), records[0].stderr), (&b"one"[..], false));
        // The unfinished record comes once it is whole.
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("o\n");
        std::fs::write(&log, &text).unwrap();
        let Batch { records, cursor, .. } = read_since(&log, cursor).unwrap();
        assert_eq!((records[0].text.as_slice(), records[0].stderr, records[0].partial), (&b"two"[..], true, true));
        // Rotation: the old file's tail, then the new file.
        std::fs::write(&log, format!("{text}2026-01-01T00:00:00.000000003Z stdout F three\n")).unwrap();
        std::fs::rename(&log, dir.join("ctr.log.1")).unwrap();
        std::fs::write(&log, "2026-01-01T00:00:00.000000004Z stdout F four\n").unwrap();
        let records = read_since(&log, cursor).unwrap().records;
        assert_eq!(records.iter().map(|r| String::from_utf8_lossy(&r.text).into_owned()).collect::<Vec<_>>(), ["three", "four"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_large_log_comes_in_bounded_batches_across_rotation() {
        let dir = std::env::temp_dir().join(format!("berth-logs-batches-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("ctr.log");
        let lines = |from: usize, count: usize| -> String {
            (from..from + count).map(|i| format!("2026-01-01T00:00:00.000000001Z stdout F line {i:07} {}\n", "x".repeat(100))).collect()
        };
        // 3 batches' worth in the rotated file, 2 in the live one.
        std::fs::write(&log, lines(0, 6000)).unwrap();
        std::fs::rename(&log, dir.join("ctr.log.1")).unwrap();
        std::fs::write(&log, lines(6000, 4000)).unwrap();
        let (mut cursor, mut seen, mut calls) = (Cursor::default(), Vec::new(), 0);
        loop {
            let batch = read_since(&log, cursor).unwrap();
            assert!(batch.records.len() * 130 <= BATCH as usize * 2, "a batch is bounded");
            seen.extend(batch.records.into_iter().map(|r| String::from_utf8_lossy(&r.text)[5..12].parse::<usize>().unwrap()));
            cursor = batch.cursor;
            calls += 1;
            if !batch.more {
                break;
            }
        }
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>(), "every record once, in order");
        assert!(calls >= 5, "{calls} calls");
        // A 'record' with no newline in a whole batch is skipped rather than stopping the reader.
        std::fs::write(&log, format!("{}\n{}", "y".repeat(BATCH as usize + 10), lines(0, 1))).unwrap();
        let _ = std::fs::remove_file(dir.join("ctr.log.1"));
        let first = read_since(&log, Cursor::default()).unwrap();
        let second = read_since(&log, first.cursor).unwrap();
        assert_eq!(first.records.len() + second.records.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
