//! SPDY/3 name/value header blocks: `u32 count`, then `u32 length, name, u32 length, value` per
//! pair (big-endian; a value may hold several, NUL-separated), compressed with zlib and the
//! preset dictionary of the SPDY/3 draft (section 2.6.10.1). Each direction of a connection keeps
//! one zlib stream for all its blocks, flushed (sync) at the end of each.
//!
//! Bounds: a block opens to at most [`MAX_BLOCK`] bytes and [`MAX_PAIRS`] pairs; beyond either,
//! or on corrupt zlib data, the block is an error (and the connection must end: its zlib state is
//! then unusable).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

pub const MAX_BLOCK: usize = 64 << 10;
pub const MAX_PAIRS: usize = 128;

/// The words of the dictionary's first part, each written as `u32 length, bytes`.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's second part, as is.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        d.extend_from_slice(&(word.len() as u32).to_be_bytes());
        d.extend_from_slice(word.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
}

/// A header block's pairs, names as sent (SPDY/3 names are lower case; compare without case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (of a NUL-separated list, the first element).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.split('\0').next().unwrap_or_default())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header block is not valid zlib data: {0}")]
    Zlib(String),
    #[error("header block opens to more than {MAX_BLOCK} bytes")]
    TooLarge,
    #[error("header block of more than {MAX_PAIRS} pairs")]
    TooManyPairs,
    #[error("header block is malformed: {0}")]
    Malformed(&'static str),
}

/// Opens the blocks of one direction of a connection.
pub struct Decoder {
    z: Decompress,
    dictionary: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { z: Decompress::new(true), dictionary: dictionary() }
    }
}

impl Decoder {
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.inflate(block)?;
        parse(&raw)
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::with_capacity(1024.min(MAX_BLOCK));
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                out.reserve_exact(out.capacity().min(MAX_BLOCK - out.len()));
            }
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            let result = self.z.decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.z.total_in() - before_in) as usize..];
            match result {
                // A peer's stream never ends: what follows an end could never be read.
                Ok(flate2::Status::StreamEnd) if !input.is_empty() => return Err(HeaderError::Zlib("data after the end of the zlib stream".into())),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(&self.dictionary).map_err(|e| HeaderError::Zlib(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            }
            // With room to write and input left, zlib that takes and gives nothing never will.
            if !input.is_empty() && self.z.total_in() == before_in && self.z.total_out() == before_out {
                return Err(HeaderError::Zlib("the zlib stream makes no progress".into()));
            }
            // Done when the input is used up and zlib had room to spare (nothing held back).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

fn parse(raw: &[u8]) -> Result<Headers, HeaderError> {
    let mut rest = raw;
    let mut u32_field = |what: &'static str| -> Result<usize, HeaderError> {
        let (n, tail) = rest.split_first_chunk::<4>().ok_or(HeaderError::Malformed(what))?;
        rest = tail;
        Ok(u32::from_be_bytes(*n) as usize)
    };
    let count = u32_field("no pair count")?;
    if count > MAX_PAIRS {
        return Err(HeaderError::TooManyPairs);
    }
    let mut string = |what: &'static str| -> Result<String, HeaderError> {
        let (n, tail) = rest.split_first_chunk::<4>().ok_or(HeaderError::Malformed(what))?;
        let len = u32::from_be_bytes(*n) as usize;
        if tail.len() < len {
            return Err(HeaderError::Malformed(what));
        }
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        String::from_utf8(bytes.to_vec()).map_err(|_| HeaderError::Malformed("a name or value is not UTF-8"))
    };
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let name = string("a name runs past the block")?;
        let value = string("a value runs past the block")?;
        pairs.push((name, value));
    }
    Ok(Headers(pairs))
}

/// Compresses the blocks of one direction of a connection.
pub struct Encoder {
    z: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&dictionary()).expect("a fresh zlib stream takes a dictionary");
        Encoder { z }
    }
}

impl Encoder {
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for s in [name, value] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            let before = self.z.total_in();
            self.z.compress_vec(input, &mut out, FlushCompress::Sync).expect("compressing into a vector cannot fail");
            input = &input[(self.z.total_in() - before) as usize..];
            // A sync flush is complete once the input is used and zlib left output room unused.
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        // Length and Adler-32 of the SPDY/3 draft's dictionary (zlib checks the latter when a
        // peer opens our first block).
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &d {
            a = (a + *byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(b << 16 | a, 0xe3c6_a7c2);
    }

    #[test]
    fn blocks_round_trip_across_one_zlib_stream() {
        let (mut enc, mut dec) = (Encoder::default(), Decoder::default());
        for i in 0..3 {
            let port = i.to_string();
            let block = enc.encode(&[("streamtype", "data"), ("port", &port), ("requestid", "0")]);
            let headers = dec.decode(&block).unwrap();
            assert_eq!(headers.get("streamType"), Some("data"));
            assert_eq!(headers.get("port"), Some(port.as_str()));
        }
        assert_eq!(dec.decode(&enc.encode(&[])).unwrap(), Headers(vec![]));
    }

    #[test]
    fn a_block_that_ends_its_zlib_stream_early_is_an_error_not_a_hang() {
        // Found by the fuzzer: a whole zlib stream (empty deflate, Adler-32) and more bytes after it.
        let block = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x2a, 0x2e];
        assert!(matches!(Decoder::default().decode(&block), Err(HeaderError::Zlib(_))));
    }

    #[test]
    fn hostile_blocks_are_errors() {
        assert!(matches!(Decoder::default().decode(b"not zlib at all"), Err(HeaderError::Zlib(_))));
        // A bomb: megabytes of one value, compressed to a few KiB.
        let mut enc = Encoder::default();
        let big = "a".repeat(MAX_BLOCK * 4);
        assert_eq!(Decoder::default().decode(&enc.encode(&[("x", &big)])), Err(HeaderError::TooLarge));
        // A count that lies, pairs that run past the end.
        let raw_block = |raw: &[u8]| {
            let mut z = Compress::new(Compression::default(), true);
            z.set_dictionary(&dictionary()).unwrap();
            let mut out = Vec::with_capacity(raw.len() + 1024);
            z.compress_vec(raw, &mut out, FlushCompress::Sync).unwrap();
            out
        };
        assert_eq!(Decoder::default().decode(&raw_block(&[0, 0, 1, 0])), Err(HeaderError::TooManyPairs));
        assert!(matches!(Decoder::default().decode(&raw_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a'])), Err(HeaderError::Malformed(_))));
        assert!(matches!(Decoder::default().decode(&raw_block(&[0, 0])), Err(HeaderError::Malformed(_))));
        assert!(matches!(Decoder::default().decode(&raw_block(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])), Err(HeaderError::Malformed(_))));
    }
}
