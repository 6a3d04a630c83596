//! The on-disk record of one frame:
//! `[body length u32 LE][crc32 of body u32 LE][body]`, where the body is
//! `[handle length u8][handle][offset u64 LE][attempt u32 LE][ts ms i64 LE][kind u8][data]`.
//!
//! A frame that acknowledges agent output sets the kind byte's top bit ([`ACKS`]) and
//! carries `[attempt key u64 LE][chunk seq u64 LE]` before its data: after a restart, the
//! rescan knows the last chunk of each attempt that is on disk, so an agent that
//! re-attaches resends exactly what follows it. Records without the bit read as before.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use crate::domain::HandleId;
use crate::protocol::StreamKind;

/// One frame read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub handle: HandleId,
    pub offset: u64,
    pub attempt: u32,
    pub ts_ms: i64,
    pub kind: StreamKind,
    pub data: Vec<u8>,
}

const HEADER: usize = 8;
const FIXED: usize = 8 + 4 + 8 + 1;
/// Set in the kind byte when the record carries the agent chunk it acknowledges.
const ACKS: u8 = 0x80;

/// Appends one record (`frame.data` is ignored; `data` is written) and returns its size.
/// `acks` is the (attempt key, chunk seq) this frame makes durable, if any.
pub fn write(
    out: &mut impl Write,
    frame: &StoredFrame,
    acks: Option<(u64, u64)>,
    data: &[u8],
) -> io::Result<u64> {
    let handle = frame.handle.as_str().as_bytes();
    let mut head = Vec::with_capacity(1 + handle.len() + FIXED + 16);
    head.push(handle.len() as u8);
    head.extend_from_slice(handle);
    head.extend_from_slice(&frame.offset.to_le_bytes());
    head.extend_from_slice(&frame.attempt.to_le_bytes());
    head.extend_from_slice(&frame.ts_ms.to_le_bytes());
    match acks {
        None => head.push(frame.kind.to_byte()),
        Some((attempt, seq)) => {
            head.push(frame.kind.to_byte() | ACKS);
            head.extend_from_slice(&attempt.to_le_bytes());
            head.extend_from_slice(&seq.to_le_bytes());
        }
    }
    let body_len = head.len() + data.len();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(data);
    out.write_all(&(body_len as u32).to_le_bytes())?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    out.write_all(&head)?;
    out.write_all(data)?;
    Ok((HEADER + body_len) as u64)
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn decode(body: &[u8]) -> io::Result<StoredFrame> {
    decode_acks(body).map(|(frame, _)| frame)
}

/// A record's frame and the agent chunk it acknowledges, if it says so.
fn decode_acks(body: &[u8]) -> io::Result<(StoredFrame, Option<(u64, u64)>)> {
    let hlen = *body.first().ok_or_else(|| corrupt("empty record"))? as usize;
    if body.len() < 1 + hlen + FIXED {
        return Err(corrupt("record shorter than its header"));
    }
    let handle = std::str::from_utf8(&body[1..1 + hlen])
        .ok()
        .and_then(|s| HandleId::parse(s).ok())
        .ok_or_else(|| corrupt("bad handle in record"))?;
    let rest = &body[1 + hlen..];
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&rest[i..i + 8]);
        b
    };
    let mut a = [0u8; 4];
    a.copy_from_slice(&rest[8..12]);
    let kind =
        StreamKind::from_byte(rest[20] & !ACKS).ok_or_else(|| corrupt("bad kind in record"))?;
    let (acks, data) = if rest[20] & ACKS == 0 {
        (None, &rest[FIXED..])
    } else {
        if rest.len() < FIXED + 16 {
            return Err(corrupt("record shorter than its acknowledgement"));
        }
        let attempt = u64::from_le_bytes(u64_at(FIXED));
        let seq = u64::from_le_bytes(u64_at(FIXED + 8));
        (Some((attempt, seq)), &rest[FIXED + 16..])
    };
    let frame = StoredFrame {
        handle,
        offset: u64::from_le_bytes(u64_at(0)),
        attempt: u32::from_le_bytes(a),
        ts_ms: i64::from_le_bytes(u64_at(12)),
        kind,
        data: data.to_vec(),
    };
    Ok((frame, acks))
}

/// Reads the record at `pos`, checking its checksum.
pub fn read_at(file: &File, pos: u64) -> io::Result<StoredFrame> {
    let mut head = [0u8; HEADER];
    file.read_exact_at(&mut head, pos)?;
    let (len, crc) = split_header(&head);
    let mut body = vec![0u8; len];
    file.read_exact_at(&mut body, pos + HEADER as u64)?;
    if crc32fast::hash(&body) != crc {
        return Err(corrupt("record checksum mismatch"));
    }
    decode(&body)
}

fn split_header(head: &[u8; HEADER]) -> (usize, u32) {
    let mut l = [0u8; 4];
    let mut c = [0u8; 4];
    l.copy_from_slice(&head[..4]);
    c.copy_from_slice(&head[4..]);
    (u32::from_le_bytes(l) as usize, u32::from_le_bytes(c))
}

/// Scans the whole segment, calling `each` for every intact record, and returns the
/// length of the intact prefix: a torn or corrupt tail (a crash mid-write) ends the scan.
pub fn recover(
    file: &File,
    mut each: impl FnMut(StoredFrame, Option<(u64, u64)>, u64),
) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut pos = 0u64;
    let mut head = [0u8; HEADER];
    let mut body = Vec::new();
    use std::io::Read;
    while pos + HEADER as u64 <= size {
        reader.read_exact(&mut head)?;
        let (len, crc) = split_header(&head);
        if pos + (HEADER + len) as u64 > size {
            break;
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            break;
        }
        match decode_acks(&body) {
            Ok((frame, acks)) => each(frame, acks, pos),
            Err(_) => break,
        }
        pos += (HEADER + len) as u64;
    }
    if pos < size {
        tracing::warn!(kept = pos, size, "frame log had a torn tail; truncated");
    }
    Ok(pos)
}
