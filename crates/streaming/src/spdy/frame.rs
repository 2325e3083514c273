//! SPDY/3 frames on the wire (the framing of SPDY/3.1, which Kubernetes' clients speak): an
//! 8-byte header, then the payload. Header blocks stay compressed here; [`super::headers`] opens
//! them with the connection's zlib state.
//!
//! Bounds: a frame's payload is at most [`MAX_PAYLOAD`] bytes (the wire allows 16 MiB); a SETTINGS
//! frame may hold at most [`MAX_SETTINGS`] entries. Anything longer, a version other than 3, or a
//! payload too short for its type is an error: the connection ends, nothing panics.

/// The only version spoken.
pub const VERSION: u16 = 3;
/// The largest payload accepted or sent. Kubernetes' clients write at most 32 KiB of data per
/// frame; headers blocks are small.
pub const MAX_PAYLOAD: usize = 1 << 20;
pub const MAX_SETTINGS: usize = 64;

const HEADER: usize = 8;
const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes used here.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;
pub const STREAM_IN_USE: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        header_block: Vec<u8>,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// `(flags, id, value)` per entry.
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Vec<u8>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type SPDY/3 does not define: the spec says to ignore it.
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("frame payload of {0} bytes (limit {MAX_PAYLOAD})")]
    TooLarge(usize),
    #[error("{kind} frame of {len} bytes is malformed")]
    Malformed { kind: &'static str, len: usize },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn stream_at(b: &[u8], at: usize) -> u32 {
    u32_at(b, at) & 0x7fff_ffff
}

/// The first whole frame in `buf` and the bytes it took; None while more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (u32_at(buf, 4) & 0x00ff_ffff) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    let p = &buf[HEADER..HEADER + len];
    let fin = flags & FLAG_FIN != 0;
    if buf[0] & 0x80 == 0 {
        let data = Frame::Data { stream_id: stream_at(buf, 0), fin, data: p.to_vec() };
        return Ok(Some((data, HEADER + len)));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let need = |name: &'static str, min: usize, exact: bool| {
        if p.len() < min || (exact && p.len() != min) {
            Err(FrameError::Malformed { kind: name, len })
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        1 => {
            need("SYN_STREAM", 10, false)?;
            Frame::SynStream {
                stream_id: stream_at(p, 0),
                associated_to: stream_at(p, 4),
                priority: p[8] >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                header_block: p[10..].to_vec(),
            }
        }
        2 => {
            need("SYN_REPLY", 4, false)?;
            Frame::SynReply { stream_id: stream_at(p, 0), fin, header_block: p[4..].to_vec() }
        }
        3 => {
            need("RST_STREAM", 8, true)?;
            Frame::RstStream { stream_id: stream_at(p, 0), status: u32_at(p, 4) }
        }
        4 => {
            need("SETTINGS", 4, false)?;
            let count = u32_at(p, 0) as usize;
            if count > MAX_SETTINGS || p.len() != 4 + count * 8 {
                return Err(FrameError::Malformed { kind: "SETTINGS", len });
            }
            let entries = (0..count).map(|i| 4 + i * 8).map(|at| (p[at], u32_at(p, at) & 0x00ff_ffff, u32_at(p, at + 4))).collect();
            Frame::Settings { entries }
        }
        6 => {
            need("PING", 4, true)?;
            Frame::Ping { id: u32_at(p, 0) }
        }
        7 => {
            need("GOAWAY", 8, true)?;
            Frame::GoAway { last_good_stream_id: stream_at(p, 0), status: u32_at(p, 4) }
        }
        8 => {
            need("HEADERS", 4, false)?;
            Frame::Headers { stream_id: stream_at(p, 0), fin, header_block: p[4..].to_vec() }
        }
        9 => {
            need("WINDOW_UPDATE", 8, true)?;
            Frame::WindowUpdate { stream_id: stream_at(p, 0), delta: u32_at(p, 4) & 0x7fff_ffff }
        }
        kind => Frame::Unknown { kind },
    };
    Ok(Some((frame, HEADER + len)))
}

/// Appends `frame`'s encoding to `out`. Data larger than [`MAX_PAYLOAD`] is split into frames,
/// the FIN flag on the last.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let control = |out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[&[u8]]| {
        let len: usize = payload.iter().map(|p| p.len()).sum();
        out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&((flags as u32) << 24 | len as u32).to_be_bytes());
        payload.iter().for_each(|p| out.extend_from_slice(p));
    };
    let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data { stream_id, fin, data } => {
            let mut rest = &data[..];
            loop {
                let (chunk, tail) = rest.split_at(rest.len().min(MAX_PAYLOAD));
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&((fin_flag(*fin && tail.is_empty()) as u32) << 24 | chunk.len() as u32).to_be_bytes());
                out.extend_from_slice(chunk);
                if tail.is_empty() {
                    break;
                }
                rest = tail;
            }
        }
        Frame::SynStream { stream_id, associated_to, priority, fin, unidirectional, header_block } => {
            let flags = fin_flag(*fin) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
            let ids = [stream_id.to_be_bytes(), associated_to.to_be_bytes()].concat();
            control(out, 1, flags, &[&ids, &[priority << 5, 0], header_block]);
        }
        Frame::SynReply { stream_id, fin, header_block } => control(out, 2, fin_flag(*fin), &[&stream_id.to_be_bytes(), header_block]),
        Frame::RstStream { stream_id, status } => control(out, 3, 0, &[&stream_id.to_be_bytes(), &status.to_be_bytes()]),
        Frame::Settings { entries } => {
            let mut payload = (entries.len() as u32).to_be_bytes().to_vec();
            for (flags, id, value) in entries {
                payload.extend_from_slice(&((*flags as u32) << 24 | (id & 0x00ff_ffff)).to_be_bytes());
                payload.extend_from_slice(&value.to_be_bytes());
            }
            control(out, 4, 0, &[&payload]);
        }
        Frame::Ping { id } => control(out, 6, 0, &[&id.to_be_bytes()]),
        Frame::GoAway { last_good_stream_id, status } => control(out, 7, 0, &[&last_good_stream_id.to_be_bytes(), &status.to_be_bytes()]),
        Frame::Headers { stream_id, fin, header_block } => control(out, 8, fin_flag(*fin), &[&stream_id.to_be_bytes(), header_block]),
        Frame::WindowUpdate { stream_id, delta } => control(out, 9, 0, &[&stream_id.to_be_bytes(), &delta.to_be_bytes()]),
        Frame::Unknown { kind } => control(out, *kind, 0, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut out = Vec::new();
        encode(&frame, &mut out);
        let (decoded, used) = decode(&out).unwrap().unwrap();
        assert_eq!((decoded, used), (frame, out.len()));
        assert!(decode(&out[..out.len() - 1]).unwrap().is_none(), "a cut frame waits for more");
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Data { stream_id: 5, fin: true, data: b"hello".to_vec() });
        round_trip(Frame::Data { stream_id: 7, fin: false, data: vec![] });
        round_trip(Frame::SynStream { stream_id: 1, associated_to: 0, priority: 3, fin: false, unidirectional: true, header_block: vec![1, 2, 3] });
        round_trip(Frame::SynReply { stream_id: 3, fin: true, header_block: vec![9; 40] });
        round_trip(Frame::RstStream { stream_id: 3, status: REFUSED_STREAM });
        round_trip(Frame::Settings { entries: vec![(1, 7, 65536), (0, 4, 100)] });
        round_trip(Frame::Ping { id: 0xdead_beef });
        round_trip(Frame::GoAway { last_good_stream_id: 9, status: 0 });
        round_trip(Frame::Headers { stream_id: 11, fin: false, header_block: vec![4, 5] });
        round_trip(Frame::WindowUpdate { stream_id: 1, delta: 1 << 20 });
        round_trip(Frame::Unknown { kind: 42 });
    }

    #[test]
    fn large_data_is_split_with_fin_on_the_last_frame() {
        let mut out = Vec::new();
        encode(&Frame::Data { stream_id: 1, fin: true, data: vec![1; MAX_PAYLOAD + 3] }, &mut out);
        let (first, used) = decode(&out).unwrap().unwrap();
        assert!(matches!(first, Frame::Data { fin: false, ref data, .. } if data.len() == MAX_PAYLOAD));
        let (second, _) = decode(&out[used..]).unwrap().unwrap();
        assert_eq!(second, Frame::Data { stream_id: 1, fin: true, data: vec![1; 3] });
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        // Version 2.
        assert_eq!(decode(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]), Err(FrameError::Version(2)));
        // Declared 16 MiB.
        assert_eq!(decode(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]), Err(FrameError::TooLarge(0xff_ffff)));
        // PING of 3 bytes, RST_STREAM of 4, SYN_STREAM of 9, SETTINGS whose count lies.
        assert!(matches!(decode(&[0x80, 3, 0, 6, 0, 0, 0, 3, 1, 2, 3]), Err(FrameError::Malformed { .. })));
        assert!(matches!(decode(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1]), Err(FrameError::Malformed { .. })));
        assert!(matches!(decode(&[0x80, 3, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0]), Err(FrameError::Malformed { .. })));
        assert!(matches!(decode(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]), Err(FrameError::Malformed { .. })));
        // Every prefix of every byte pattern of a short frame decodes or errs, never panics.
        for len in 0..24u8 {
            for kind in 0..12u8 {
                let mut b = vec![0x80, 3, 0, kind, 0, 0, 0, len];
                b.extend(std::iter::repeat_n(0xffu8, len as usize));
                let _ = decode(&b);
            }
        }
    }
}
