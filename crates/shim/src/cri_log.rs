//! The container's log in the CRI format the kubelet and `crictl logs` read:
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>` per line. A line longer than [`MAX_LINE`] is
//! cut into `P` (partial) records ending with an `F` one. When the file passes its size limit it is
//! rotated to `<name>.1` (one old file is kept), so a chatty container cannot fill the disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct CriLog {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    max_size: u64,
    /// Unfinished lines, per stream.
    partial: [Vec<u8>; 2],
}

impl CriLog {
    pub fn open(path: &Path, max_size: u64) -> std::io::Result<CriLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(CriLog { path: path.to_path_buf(), file, written, max_size, partial: [Vec::new(), Vec::new()] })
    }

    /// Appends what a stream produced; whole lines are written at once, the rest waits.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> std::io::Result<()> {
        let index = stream as usize;
        let now = SystemTime::now();
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[index]);
            line.extend_from_slice(&data[..newline]);
            self.record(stream, now, &line, true)?;
            data = &data[newline + 1..];
        }
        self.partial[index].extend_from_slice(data);
        while self.partial[index].len() >= MAX_LINE {
            let rest = self.partial[index].split_off(MAX_LINE);
            let line = std::mem::replace(&mut self.partial[index], rest);
            self.record(stream, now, &line, false)?;
        }
        Ok(())
    }

    /// Writes out unfinished lines (the stream ended).
    pub fn flush(&mut self, stream: Stream) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.partial[stream as usize]);
        if !line.is_empty() {
            self.record(stream, SystemTime::now(), &line, true)?;
        }
        Ok(())
    }

    fn record(&mut self, stream: Stream, at: SystemTime, line: &[u8], full: bool) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(line.len() + 48);
        record.extend_from_slice(rfc3339_nano(at).as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.name().as_bytes());
        record.extend_from_slice(if full { b" F " } else { b" P " });
        record.extend_from_slice(line);
        record.push(b'\n');
        if self.written > 0 && self.written + record.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.written += record.len() as u64;
        Ok(())
    }

    /// Opens the log's path again: whoever rotates the log (the kubelet) moved the file away.
    /// Unfinished lines go on in the new file.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.written = self.file.metadata()?.len();
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// `2026-11-29T17:03:04.123456789Z`.
pub fn rfc3339_nano(at: SystemTime) -> String {
    humantime::format_rfc3339_nanos(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_795_964_584, 5);
        assert_eq!(rfc3339_nano(at), "2026-11-29T15:03:04.000000005Z");
        assert_eq!(rfc3339_nano(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lines_partials_and_rotation() {
        let dir = std::env::temp_dir().join(format!("berth-cri-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctr.log");
        let mut log = CriLog::open(&path, 200).unwrap();
        log.write(Stream::Stdout, b"hello\nwor").unwrap();
        log.write(Stream::Stderr, b"oops\n").unwrap();
        log.write(Stream::Stdout, b"ld\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, ' ').collect()).collect();
        assert_eq!(
            records.iter().map(|r| r[1..].to_vec()).collect::<Vec<_>>(),
            [["stdout", "F", "hello"], ["stderr", "F", "oops"], ["stdout", "F", "world"]]
        );
        log.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 3]).unwrap();
        log.flush(Stream::Stdout).unwrap();
        // The long line rotated the small file; the old records are in ctr.log.1.
        assert!(std::fs::read_to_string(dir.join("ctr.log.1")).unwrap().contains(" P "));
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with(" stdout F xxx\n"), "{last}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
