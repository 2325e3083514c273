//! A bound on what the tar parser keeps in memory. The tar crate reads a GNU long name (`L`), long
//! link (`K`) or PAX extended header (`x`) whole into memory before the member it describes, with
//! no limit: a small gzip of zeros declaring a 1 GiB long name grows berthd by a GiB before any
//! digest is checked. This reader sits under the parser, follows the archive's structure (header
//! blocks, each member's data rounded up to 512 bytes, PAX `size` overrides, old GNU sparse
//! extension blocks) and fails the read of a metadata member larger than [`MAX_METADATA`] — 1 MiB,
//! Go's archive/tar's limit — before a byte of it is read. Data passes through untouched. Used
//! under every tar berth parses: layers, and the outer tar of an archive `berth load` reads.

use std::io::{self, Read};

pub const MAX_METADATA: u64 = 1 << 20;
const BLOCK: usize = 512;

enum State {
    /// Gathering a header block.
    Header,
    /// Old GNU sparse extension blocks follow the header until one says it is the last.
    SparseExtension,
    /// A member's data (padding included); a PAX header's is kept to find its `size`.
    Data { left: u64, pax: bool },
    /// After the end-of-archive blocks: whatever follows passes.
    End,
}

pub(crate) struct MetadataLimit<R> {
    inner: R,
    state: State,
    block: [u8; BLOCK],
    filled: usize,
    zero_blocks: u8,
    /// The current PAX header's records, and the `size` they gave the next member.
    pax: Vec<u8>,
    next_size: Option<u64>,
    /// A sparse member's data size, while its extension blocks go by.
    pending_size: u64,
}

impl<R: Read> MetadataLimit<R> {
    pub(crate) fn new(inner: R) -> Self {
        MetadataLimit { inner, state: State::Header, block: [0; BLOCK], filled: 0, zero_blocks: 0, pax: Vec::new(), next_size: None, pending_size: 0 }
    }

    pub(super) fn into_inner(self) -> R {
        self.inner
    }

    /// Follows the structure through `bytes` (just read, in order).
    fn track(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::End => return Ok(()),
                State::Header | State::SparseExtension => {
                    let n = (BLOCK - self.filled).min(bytes.len());
                    self.block[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                    self.filled += n;
                    bytes = &bytes[n..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.block_done()?;
                    }
                }
                State::Data { left, pax } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    if *pax {
                        self.pax.extend_from_slice(&bytes[..n]);
                    }
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        if *pax {
                            self.next_size = pax_size(&self.pax);
                            self.pax = Vec::new();
                        }
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }

    fn block_done(&mut self) -> io::Result<()> {
        if matches!(self.state, State::SparseExtension) {
            // Byte 504 of an extension block: whether another follows.
            if self.block[504] == 0 {
                let size = self.pending_size;
                self.enter_data(size, false);
            }
            return Ok(());
        }
        if self.block.iter().all(|b| *b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks == 2 {
                self.state = State::End;
            }
            return Ok(());
        }
        self.zero_blocks = 0;
        let kind = self.block[156];
        let size = header_size(&self.block[124..136])?;
        let metadata = matches!(kind, b'L' | b'K' | b'x');
        if metadata && size > MAX_METADATA {
            let what = match kind {
                b'L' => "GNU long name",
                b'K' => "GNU long link",
                _ => "PAX extended header",
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a {what} of {size} bytes (the limit is {MAX_METADATA})")));
        }
        // As the tar crate does: a PAX `size` applies to the next member that is not itself an
        // extension header.
        let size = if metadata || kind == b'g' { size } else { self.next_size.take().unwrap_or(size) };
        if kind == b'S' && self.block[482] != 0 {
            self.pending_size = size;
            self.state = State::SparseExtension;
            return Ok(());
        }
        self.enter_data(size, kind == b'x');
        Ok(())
    }

    fn enter_data(&mut self, size: u64, pax: bool) {
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.state = if padded == 0 { State::Header } else { State::Data { left: padded, pax } };
    }
}

impl<R: Read> Read for MetadataLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.track(&buf[..n])?;
        Ok(n)
    }
}

/// A header's size field: octal ASCII, or base-256 (GNU) when its first byte has the top bit.
fn header_size(field: &[u8]) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a tar header's size field is malformed");
    if field[0] & 0x80 != 0 {
        let mut value: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            value = value.checked_mul(256).and_then(|v| v.checked_add(*b as u64)).ok_or_else(bad)?;
        }
        return Ok(value);
    }
    let text = std::str::from_utf8(field).map_err(|_| bad())?.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad())
}

/// The `size` record of PAX extended header data (`"%d %s=%s\n"` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    while let Some(space) = rest.iter().position(|b| *b == b' ') {
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len.checked_sub(1)?)?;
        if let Some(value) = record.strip_prefix(b"size=") {
            return std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = rest.get(len..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header block: name, type, size (octal), with a valid checksum.
    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
        v
    }

    /// Reads everything through the limit and the tar crate; the paths and sizes of the members.
    fn members(archive: &[u8]) -> io::Result<Vec<(String, u64)>> {
        let mut a = tar::Archive::new(MetadataLimit::new(archive));
        let mut out = Vec::new();
        for e in a.entries()? {
            let mut e = e?;
            let path = e.path()?.display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data)?;
            out.push((path, data.len() as u64));
        }
        Ok(out)
    }

    #[test]
    fn long_names_pax_headers_and_ordinary_members_pass() {
        let long = "d/".repeat(150) + "file";
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_pax_extensions([("path", &b"pax/named"[..]), ("size", &b"3"[..])]).unwrap();
        b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
        let archive = b.into_inner().unwrap();
        assert_eq!(members(&archive).unwrap(), vec![(long, 5), ("pax/named".into(), 3)]);
    }

    #[test]
    fn a_pax_size_moves_the_next_members_data() {
        // The header says 0 bytes, the PAX record 700: the limit must follow the 700.
        let records = b"12 size=700\n";
        let mut archive = header("pax", b'x', records.len() as u64);
        archive.extend(padded(records));
        archive.extend(header("big", b'0', 0));
        archive.extend(padded(&[7u8; 700]));
        archive.extend(header("after", b'0', 2));
        archive.extend(padded(b"ok"));
        archive.extend([0u8; 1024]);
        assert_eq!(members(&archive).unwrap(), vec![("big".into(), 700), ("after".into(), 2)]);
    }

    /// A header, then zeros for ever: what was read before the limit said no.
    fn bomb(kind: u8) -> (io::Error, u64) {
        struct Endless {
            header: Vec<u8>,
            read: u64,
        }
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(64 << 10);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = self.header.get(self.read as usize + i).copied().unwrap_or(0);
                }
                self.read += n as u64;
                Ok(n)
            }
        }
        let mut reader = MetadataLimit::new(Endless { header: header("x", kind, 1 << 30), read: 0 });
        let error = tar::Archive::new(&mut reader).entries().unwrap().find_map(|e| e.err()).expect("an error, not an endless read");
        (error, reader.into_inner().read)
    }

    #[test]
    fn metadata_bombs_fail_before_their_data_is_read() {
        for kind in [b'L', b'K', b'x'] {
            let (error, read) = bomb(kind);
            assert!(error.to_string().contains("the limit is 1048576"), "{}: {error}", kind as char);
            assert!(read <= 64 << 10, "{}: {read} bytes read", kind as char);
        }
    }

    #[test]
    fn size_fields_and_pax_records_parse() {
        assert_eq!(header_size(b"00000001000\0").unwrap(), 512);
        assert_eq!(header_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert!(header_size(b"zzzzzzzzzzz\0").is_err());
        assert_eq!(pax_size(b"18 path=some/file\n12 size=700\n"), Some(700));
        assert_eq!(pax_size(b"99 size=1\n"), None, "a length past the end");
        assert_eq!(pax_size(b"garbage"), None);
    }
}
