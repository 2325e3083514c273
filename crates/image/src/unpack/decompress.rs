//! Picks the decoder from the stream's first bytes, whatever the media type claimed: gzip (every
//! member, as `docker save` and pigz write several), zstd (every frame), or a plain tar.

use crate::{Error, Result};
use std::io::{BufRead, BufReader, Read};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

pub(crate) fn decoder<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader.fill_buf().map_err(|e| Error::io("read layer", "<stream>", e))?;
    if head.starts_with(GZIP_MAGIC) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(ZSTD_MAGIC) {
        let decoder = zstd::stream::read::Decoder::with_buffer(reader).map_err(|e| Error::io("start zstd", "<stream>", e))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(reader))
    }
}
