//! Observer frames as they go on the wire, encoded once and shared.
//!
//! Every observer of a handle gets the same bytes for the same offset: the frame's JSON
//! in an unmasked WebSocket text frame. Without sharing, a hundred observers of one task
//! cost a hundred reads, checksums, JSON encodings and copies of every frame; with it,
//! the first observer to reach an offset encodes it and the others send the same
//! buffer. Only frames stored in the log are shared (a gap or truncated frame is made
//! for one reader). What is kept is bounded in bytes over all handles, oldest first out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use actix_web::web::Bytes;
use flotilla_actors::domain::HandleId;

/// Bytes of encoded frames kept over all handles, by default.
pub const WIRE_CACHE_BYTES: usize = 64 << 20;

/// One encoded frame: the whole WebSocket frame, the JSON text's length (what the
/// observer is counted as sent) and whether it is the status frame, the last.
#[derive(Clone)]
pub struct Wire {
    pub bytes: Bytes,
    pub text_len: usize,
    pub status: bool,
}

/// Recently encoded frames of every handle, up to a byte budget.
pub struct WireCache {
    inner: Mutex<Inner>,
    budget: usize,
}

#[derive(Default)]
struct Inner {
    frames: HashMap<HandleId, HashMap<u64, Wire>>,
    /// Insertion order, for eviction.
    order: VecDeque<(HandleId, u64)>,
    bytes: usize,
}

impl WireCache {
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    pub fn get(&self, handle: &HandleId, offset: u64) -> Option<Wire> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.frames.get(handle)?.get(&offset).cloned()
    }

    /// Keeps `wire` for `handle` at `offset`, letting the oldest go to stay within the
    /// budget. A frame larger than a sixteenth of the budget is not kept.
    pub fn put(&self, handle: &HandleId, offset: u64, wire: &Wire) {
        let len = wire.bytes.len();
        if len > self.budget / 16 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner
            .frames
            .get(handle)
            .is_some_and(|f| f.contains_key(&offset))
        {
            return;
        }
        while inner.bytes + len > self.budget {
            let Some((h, o)) = inner.order.pop_front() else {
                break;
            };
            let Some(frames) = inner.frames.get_mut(&h) else {
                continue;
            };
            let gone = frames.remove(&o).map_or(0, |w| w.bytes.len());
            if frames.is_empty() {
                inner.frames.remove(&h);
            }
            inner.bytes -= gone;
        }
        inner.bytes += len;
        inner.order.push_back((handle.clone(), offset));
        inner
            .frames
            .entry(handle.clone())
            .or_default()
            .insert(offset, wire.clone());
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(len: usize) -> Wire {
        Wire {
            bytes: Bytes::from(vec![b'x'; len]),
            text_len: len,
            status: false,
        }
    }

    #[test]
    fn frames_are_shared_and_the_oldest_go_past_the_budget() {
        let cache = WireCache::new(1600);
        let h = HandleId::parse("h-w").unwrap();
        for offset in 1..=20 {
            cache.put(&h, offset, &wire(100));
        }
        assert_eq!(cache.bytes(), 1600);
        assert!(cache.get(&h, 4).is_none(), "the oldest went first");
        assert_eq!(cache.get(&h, 20).map(|w| w.bytes.len()), Some(100));
        // Too large to keep: a sixteenth of the budget at most.
        cache.put(&h, 21, &wire(101));
        assert!(cache.get(&h, 21).is_none());
        let other = HandleId::parse("h-v").unwrap();
        assert!(cache.get(&other, 20).is_none(), "per handle");
    }
}
