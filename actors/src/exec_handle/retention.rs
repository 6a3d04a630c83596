//! Retention: what the frame log keeps, and how it lets go of the rest.
//!
//! Three limits, checked by the writer about once a second ([`PASS_EVERY`]):
//! - **per handle, by bytes**: a handle keeping more than `handle_max_bytes` loses its
//!   oldest segments' worth of frames until it is under;
//! - **by age**: a segment last written more than `max_age` ago goes, with every
//!   handle's frames in it;
//! - **a global budget**: while all segments together are over `budget_bytes`, the
//!   oldest go.
//!
//! Removal is logical first: a handle's first kept offset moves forward, and an observer
//! resuming below it gets a `truncated` frame naming the first offset still there and
//! the limit that removed the rest. A segment no handle keeps a frame in is then deleted
//! whole, after the index checkpoint that records the move is written (so a restart
//! never brings a removed frame back) and off the writer's thread (so writers never wait
//! on an unlink). The segment being written is never deleted; a quiet one is closed after
//! `segment_max_age` so that age reaches it too.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::protocol::TruncateReason;

/// How often the writer checks the limits.
pub const PASS_EVERY: Duration = Duration::from_secs(1);

/// The limits (`[retention]` in flotilla.toml). Every default is in docs/streaming.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// A segment is closed, and a new one started, at this size.
    pub segment_bytes: u64,
    /// A segment is closed this long after its first frame, however small.
    pub segment_max_age_ms: u64,
    /// Most bytes of frames one handle keeps.
    pub handle_max_bytes: u64,
    /// Frames older than this are removed (to within `segment_max_age_ms`).
    pub max_age_ms: u64,
    /// Most bytes all segments together keep.
    pub budget_bytes: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            segment_max_age_ms: 3_600_000,
            handle_max_bytes: 1 << 30,
            max_age_ms: 7 * 24 * 3_600_000,
            budget_bytes: 16 << 30,
        }
    }
}

/// What the writer knows of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    pub len: u64,
    /// When its first frame was written (ms since the epoch), or when it was found at
    /// start.
    pub opened_ms: i64,
    /// When it was last written.
    pub written_ms: i64,
}

/// The closed segments whose frames go, oldest first, and why: those past `max_age`,
/// then the oldest others while the log is over its budget. Always a run of the oldest
/// closed segments, since segments are written in order.
pub fn doomed(
    segments: &BTreeMap<u64, SegmentMeta>,
    active: u64,
    settings: &RetentionSettings,
    now_ms: i64,
) -> Vec<(u64, TruncateReason)> {
    let mut total: u64 = segments.values().map(|m| m.len).sum();
    let mut out = Vec::new();
    for (&base, meta) in segments.range(..active) {
        let reason = if meta.written_ms + settings.max_age_ms as i64 <= now_ms {
            TruncateReason::Age
        } else if total > settings.budget_bytes {
            TruncateReason::Budget
        } else {
            break;
        };
        total -= meta.len;
        out.push((base, reason));
    }
    out
}

/// The closed segments no handle keeps a frame in: to delete.
pub fn unused(segments: &BTreeMap<u64, SegmentMeta>, active: u64, live: &HashSet<u64>) -> Vec<u64> {
    segments
        .range(..active)
        .map(|(base, _)| *base)
        .filter(|base| !live.contains(base))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(len: u64, written_ms: i64) -> SegmentMeta {
        SegmentMeta {
            len,
            opened_ms: written_ms,
            written_ms,
        }
    }

    #[test]
    fn old_segments_go_for_age_then_the_oldest_for_the_budget_never_the_active_one() {
        let settings = RetentionSettings {
            max_age_ms: 2_000,
            budget_bytes: 150,
            ..RetentionSettings::default()
        };
        let segments = BTreeMap::from([
            (0, meta(100, 0)),
            (100, meta(100, 5_000)),
            (200, meta(100, 9_000)),
            (300, meta(100, 9_500)),
        ]);
        assert_eq!(
            doomed(&segments, 300, &settings, 10_000),
            vec![
                (0, TruncateReason::Age),
                (100, TruncateReason::Age),
                (200, TruncateReason::Budget)
            ]
        );
        // The active segment stays even when it alone is over the budget.
        let big = BTreeMap::from([(0, meta(1_000, 9_999))]);
        assert!(doomed(&big, 0, &settings, 10_000).is_empty());
        let live = HashSet::from([100]);
        assert_eq!(unused(&segments, 300, &live), vec![0, 200]);
    }
}
