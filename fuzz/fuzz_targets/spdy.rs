//! What a streaming client sends after the SPDY upgrade: frames decoded one after another, every
//! header block opened with one connection's zlib state (as the session does). Errors are fine;
//! panics, hangs and unbounded memory are not.
#![no_main]
use berth_streaming::spdy::frame::{decode, Frame};
use berth_streaming::spdy::headers::Decoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut headers = Decoder::default();
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode(rest) {
        rest = &rest[used..];
        if let Frame::SynStream { header_block, .. } | Frame::SynReply { header_block, .. } | Frame::Headers { header_block, .. } = frame {
            if headers.decode(&header_block).is_err() {
                break;
            }
        }
    }
});
