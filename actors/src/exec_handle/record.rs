//! The on-disk record of one frame:
//! `[body length u32 LE][crc32 of body u32 LE][body]`, where the body is
//! `[handle length u8][handle][offset u64 LE][attempt u32 LE][ts ms i64 LE][kind u8][data]`.
//!
//! A frame that acknowledges agent output sets the kind byte's top bit ([`ACKS`]) and
//! carries `[attempt key u64 LE][chunk seq u64 LE]` before its data: after a restart, the
//! rescan knows the last chunk of each attempt that is on disk, so an agent that
//! re-attaches resends exactly what follows it. Records without the bit read as before.

use std::fs::File;
use std::io::{self, Seek, Write};
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

/// The agent chunk a record acknowledges: (attempt key, chunk seq).
pub type Acked = (u64, u64);

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

/// The smallest body a record can have (a one-byte handle, no data) and the largest the
/// writer produces (a 1 MiB agent frame and its header, with room to spare): a length
/// outside these cannot start a record, which keeps the search for the next one cheap.
const MIN_BODY: usize = 1 + 1 + FIXED;
pub const MAX_BODY: usize = 16 << 20;

/// A stretch of the segment whose bytes are no valid record, followed by a valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub pos: u64,
    pub len: u64,
    /// The handle and offset the first record of the stretch claims, when its header
    /// still reads (unverified: the checksum failed).
    pub claims: Option<(HandleId, u64)>,
}

/// What a scan of the segment met, in file order.
pub enum Found {
    Frame {
        frame: StoredFrame,
        acks: Option<Acked>,
        pos: u64,
        /// The record's size in the segment.
        len: u64,
    },
    Damage(Damage),
}

/// What a scan ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Where the next record goes: the end of the last valid record, or of the file.
    pub end: u64,
    /// Bytes after the last valid record that no valid record follows: a write the
    /// crash interrupted. Cut.
    pub torn: u64,
}

/// Scans the segment from `start` (a record boundary), calling `each` for every valid
/// record and every damaged
/// stretch between two valid records, in file order. A record fails when its length is
/// impossible, its checksum does not match or its body does not decode; the scan then
/// searches byte by byte for the next valid record and goes on from there, so damage
/// costs only the records it touches. Only bytes no valid record follows are a torn
/// tail; the caller cuts them.
pub fn recover(file: &File, start: u64, mut each: impl FnMut(Found)) -> io::Result<Scanned> {
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    reader.seek(io::SeekFrom::Start(start))?;
    let mut pos = start;
    let mut body = Vec::new();
    while pos < size {
        if let Some((frame, acks, len)) = next_record(&mut reader, pos, size, &mut body)? {
            each(Found::Frame {
                frame,
                acks,
                pos,
                len,
            });
            pos += len;
            continue;
        }
        match resync(file, pos + 1, size)? {
            Some(next) => {
                let claims = claims_at(file, pos, size);
                each(Found::Damage(Damage {
                    pos,
                    len: next - pos,
                    claims,
                }));
                reader.seek(io::SeekFrom::Start(next))?;
                pos = next;
            }
            None => {
                // Nothing valid follows. A complete record whose checksum fails is still
                // damage to report (its offset is lost, not free); the bytes are cut.
                if let Some(claims) = claims_at(file, pos, size) {
                    each(Found::Damage(Damage {
                        pos,
                        len: size - pos,
                        claims: Some(claims),
                    }));
                }
                return Ok(Scanned {
                    end: pos,
                    torn: size - pos,
                });
            }
        }
    }
    Ok(Scanned { end: pos, torn: 0 })
}

/// The valid record at `pos` read from `reader` (positioned there) and its size, or
/// `None` (the reader's position is then undefined).
fn next_record(
    reader: &mut impl io::Read,
    pos: u64,
    size: u64,
    body: &mut Vec<u8>,
) -> io::Result<Option<(StoredFrame, Option<Acked>, u64)>> {
    let mut head = [0u8; HEADER];
    if pos + HEADER as u64 > size {
        return Ok(None);
    }
    reader.read_exact(&mut head)?;
    let (len, crc) = split_header(&head);
    if !(MIN_BODY..=MAX_BODY).contains(&len) || pos + (HEADER + len) as u64 > size {
        return Ok(None);
    }
    body.resize(len, 0);
    reader.read_exact(body)?;
    if crc32fast::hash(body) != crc {
        return Ok(None);
    }
    Ok(decode_acks(body)
        .ok()
        .map(|(frame, acks)| (frame, acks, (HEADER + len) as u64)))
}

/// The first position at or after `from` where a valid record starts.
fn resync(file: &File, from: u64, size: u64) -> io::Result<Option<u64>> {
    const WINDOW: usize = 1 << 20;
    let mut buf = vec![0u8; WINDOW];
    let mut body = Vec::new();
    let mut base = from;
    while base + (HEADER + MIN_BODY) as u64 <= size {
        let n = WINDOW.min((size - base) as usize);
        file.read_exact_at(&mut buf[..n], base)?;
        // Positions whose header and handle lie inside this window; the next window
        // starts at the first position not tried.
        let last = n.saturating_sub(HEADER + 1 + 64).max(1).min(n);
        for i in 0..last {
            let at = base + i as u64;
            if !plausible(&buf[i..n], at, size) {
                continue;
            }
            if valid_at(file, at, size, &mut body)? {
                return Ok(Some(at));
            }
        }
        base += last as u64;
    }
    Ok(None)
}

/// Whether `bytes` (from position `at`) could start a record: a possible length that
/// ends inside the file, and a handle of possible length and characters.
fn plausible(bytes: &[u8], at: u64, size: u64) -> bool {
    if bytes.len() < HEADER + 1 {
        return false;
    }
    let mut l = [0u8; 4];
    l.copy_from_slice(&bytes[..4]);
    let len = u32::from_le_bytes(l) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&len) || at + (HEADER + len) as u64 > size {
        return false;
    }
    let hlen = bytes[HEADER] as usize;
    if hlen == 0 || hlen > 64 || len < 1 + hlen + FIXED {
        return false;
    }
    bytes.get(HEADER + 1..HEADER + 1 + hlen).is_none_or(|h| {
        h.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
    })
}

/// Whether a valid record starts at `at`.
fn valid_at(file: &File, at: u64, size: u64, body: &mut Vec<u8>) -> io::Result<bool> {
    let Some(crc) = body_at(file, at, size, body)? else {
        return Ok(false);
    };
    Ok(crc32fast::hash(body) == crc && decode_acks(body).is_ok())
}

/// Reads into `body` the body of a record at `at` whose length is possible and ends
/// inside the file, and returns the checksum its header names.
fn body_at(file: &File, at: u64, size: u64, body: &mut Vec<u8>) -> io::Result<Option<u32>> {
    let mut head = [0u8; HEADER];
    if at + HEADER as u64 > size {
        return Ok(None);
    }
    file.read_exact_at(&mut head, at)?;
    let (len, crc) = split_header(&head);
    if !(MIN_BODY..=MAX_BODY).contains(&len) || at + (HEADER + len) as u64 > size {
        return Ok(None);
    }
    body.resize(len, 0);
    file.read_exact_at(body, at + HEADER as u64)?;
    Ok(Some(crc))
}

/// The handle and offset a record at `pos` claims, read without trusting its checksum:
/// only when its length ends inside the file and its body decodes.
fn claims_at(file: &File, pos: u64, size: u64) -> Option<(HandleId, u64)> {
    let mut body = Vec::new();
    body_at(file, pos, size, &mut body).ok()??;
    decode_acks(&body)
        .ok()
        .map(|(frame, _)| (frame.handle, frame.offset))
}
