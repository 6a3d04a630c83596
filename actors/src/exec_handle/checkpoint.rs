//! The index checkpoint, `frames/index.ckpt`: every handle's positions as they stood at
//! some end of the segment, so that a start rescans only what was written after it
//! instead of the whole log.
//!
//! `["FLIX"][version u32][end u64][handles u32]` then per handle
//! `[len u8][handle][sealed u8][first u64][truncated u8][count u64][position u64 × count]
//! [spans u32][(segment u64, first offset u64, bytes u64) × spans]`, then
//! `[acks u32][(attempt u64, seq u64, len u8, handle) × acks]`, then the CRC-32 of all
//! before it. All
//! little-endian. `first` is the first offset retention keeps and `truncated` the limit
//! that moved it (0: none did; see [`TruncateReason::to_byte`]). A lost offset keeps its
//! lost position. The file is replaced atomically; one that does not read (version 1,
//! from before segments, included), or that does not match the log (its end beyond the
//! log's, or its last positions not records), is ignored and the log rescanned whole. Records before `end` are not checked again at start: a record damaged later
//! reads as a gap when it is read.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::segments::Segments;
use super::Span;
use crate::domain::HandleId;
use crate::protocol::TruncateReason;

const MAGIC: &[u8; 4] = b"FLIX";
const VERSION: u32 = 2;

/// One handle as the checkpoint holds it.
pub struct CheckpointHandle {
    pub handle: HandleId,
    pub sealed: bool,
    pub first: u64,
    pub truncated: Option<TruncateReason>,
    pub positions: Vec<u64>,
    pub spans: Vec<Span>,
}

/// What a checkpoint holds.
pub struct Checkpoint {
    pub end: u64,
    pub handles: Vec<CheckpointHandle>,
    /// The last durable chunk of attempts that may still re-attach, and their handle.
    pub acks: HashMap<u64, (HandleId, u64)>,
}

pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + c
            .handles
            .iter()
            .map(|h| 96 + 8 * h.positions.len() + 24 * h.spans.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&c.end.to_le_bytes());
    out.extend_from_slice(&(c.handles.len() as u32).to_le_bytes());
    for h in &c.handles {
        let name = h.handle.as_str().as_bytes();
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(u8::from(h.sealed));
        out.extend_from_slice(&h.first.to_le_bytes());
        out.push(h.truncated.map_or(0, TruncateReason::to_byte));
        out.extend_from_slice(&(h.positions.len() as u64).to_le_bytes());
        for p in &h.positions {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out.extend_from_slice(&(h.spans.len() as u32).to_le_bytes());
        for s in &h.spans {
            for word in [s.segment, s.first, s.bytes] {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&(c.acks.len() as u32).to_le_bytes());
    for (attempt, (handle, seq)) in &c.acks {
        out.extend_from_slice(&attempt.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        let name = handle.as_str().as_bytes();
        out.push(name.len() as u8);
        out.extend_from_slice(name);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A reader over the checkpoint's bytes that fails on any shortfall.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
}

pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let (body, crc) = bytes.split_at(bytes.len().checked_sub(4)?);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut c = Cursor(body);
    if c.take(4)? != MAGIC || c.u32()? != VERSION {
        return None;
    }
    let end = c.u64()?;
    let count = c.u32()? as usize;
    let mut handles = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let len = c.u8()? as usize;
        let handle = HandleId::parse(std::str::from_utf8(c.take(len)?).ok()?).ok()?;
        let sealed = c.u8()? != 0;
        let first = c.u64()?;
        let truncated = match c.u8()? {
            0 => None,
            b => Some(TruncateReason::from_byte(b)?),
        };
        let n = c.u64()? as usize;
        if n > c.0.len() / 8 {
            return None;
        }
        let positions = (0..n).map(|_| c.u64()).collect::<Option<Vec<u64>>>()?;
        let n = c.u32()? as usize;
        if n > c.0.len() / 24 {
            return None;
        }
        let spans = (0..n)
            .map(|_| {
                Some(Span {
                    segment: c.u64()?,
                    first: c.u64()?,
                    bytes: c.u64()?,
                })
            })
            .collect::<Option<Vec<Span>>>()?;
        handles.push(CheckpointHandle {
            handle,
            sealed,
            first,
            truncated,
            positions,
            spans,
        });
    }
    let acks = (0..c.u32()?)
        .map(|_| {
            let (attempt, seq) = (c.u64()?, c.u64()?);
            let len = c.u8()? as usize;
            let handle = HandleId::parse(std::str::from_utf8(c.take(len)?).ok()?).ok()?;
            Some((attempt, (handle, seq)))
        })
        .collect::<Option<HashMap<u64, (HandleId, u64)>>>()?;
    c.0.is_empty().then_some(Checkpoint { end, handles, acks })
}

/// Reads the checkpoint at `path` if there is one that reads; `None` otherwise (the
/// reason is logged when a file exists but does not read).
pub fn load(path: &Path) -> Option<Checkpoint> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "index checkpoint unreadable; rescanning the whole log");
            return None;
        }
    };
    let c = decode(&bytes);
    if c.is_none() {
        tracing::warn!(path = %path.display(), "index checkpoint damaged; rescanning the whole log");
    }
    c
}

/// Whether `c` matches the log: its end within the log's (`end`), and the last position
/// of each of a few handles a valid record there.
pub fn matches(c: &Checkpoint, segments: &Segments, end: u64) -> bool {
    if c.end > end {
        return false;
    }
    c.handles.iter().rev().take(8).all(|h| {
        let Some((i, p)) = h
            .positions
            .iter()
            .enumerate()
            .rev()
            .find(|(_, p)| **p != u64::MAX)
        else {
            return true;
        };
        segments.read_at(*p).is_some_and(|r| {
            r.is_ok_and(|f| f.handle == h.handle && f.offset == h.first + i as u64)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_a_flipped_byte_is_refused() {
        let c = Checkpoint {
            end: 4096,
            handles: vec![CheckpointHandle {
                handle: HandleId::parse("h-a").unwrap(),
                sealed: true,
                first: 3,
                truncated: Some(TruncateReason::Budget),
                positions: vec![0, 120, u64::MAX, 300],
                spans: vec![Span {
                    segment: 0,
                    first: 3,
                    bytes: 400,
                }],
            }],
            acks: HashMap::from([(7, (HandleId::parse("h-a").unwrap(), 3))]),
        };
        let bytes = encode(&c);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.end, 4096);
        assert_eq!(back.handles[0].positions, vec![0, 120, u64::MAX, 300]);
        assert!(back.handles[0].sealed);
        assert_eq!(back.handles[0].first, 3);
        assert_eq!(back.handles[0].truncated, Some(TruncateReason::Budget));
        assert_eq!(back.handles[0].spans, c.handles[0].spans);
        assert_eq!(back.acks.get(&7).map(|a| a.1), Some(3));
        for at in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_none(), "flip at {at} accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 3]).is_none());
    }
}
