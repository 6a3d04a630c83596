//! Subscriber: one observer following one handle.
//!
//! Owns only a cursor. Every observer reads the durable frame log from its cursor and then
//! waits on the handle's watermark, so replay and live following are one code path, an
//! observer that falls behind is simply served from the log, and no observer ever holds
//! up the producer or another observer. A restart loses nothing: the observer reconnects
//! with `from=<last offset it saw>`.

pub mod registry;

use std::sync::Arc;

use tokio::sync::watch;

use crate::domain::rfc3339_ms;
use crate::exec_handle::{FrameLog, FrameLogError, HandleIndex, StoredFrame, Watermark};
use crate::protocol::{FinalStatus, Gap, ObserverFrame, StreamKind, Truncated};

/// At most this many frames, or about this many bytes, per read from the log: what an
/// observer holds while its socket is slow.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 64 << 10;
/// At most this many frames behind the durable end, a read is done inline.
const INLINE_FRAMES: u64 = 8;

pub struct Subscription {
    log: FrameLog,
    index: Arc<HandleIndex>,
    cursor: u64,
    watermark: watch::Receiver<Watermark>,
    done: bool,
}

impl Subscription {
    /// Follows `index` from just after offset `from` (0 = from the start).
    pub fn new(log: FrameLog, index: Arc<HandleIndex>, from: u64) -> Self {
        let watermark = index.subscribe();
        Self {
            log,
            index,
            cursor: from,
            watermark,
            done: false,
        }
    }

    /// The offset after the cursor, when it is durable and kept: a frame the caller
    /// may have from elsewhere (frames already encoded for another observer) instead
    /// of reading it, then [`advance`](Self::advance) past.
    pub fn next_kept(&self) -> Option<u64> {
        let next = self.cursor + 1;
        (!self.done && next <= self.index.watermark().last && next >= self.index.kept().first)
            .then_some(next)
    }

    /// Moves the cursor to `offset`, a frame delivered from elsewhere; `status` if it
    /// was the status frame (nothing follows).
    pub fn advance(&mut self, offset: u64, status: bool) {
        self.cursor = offset;
        self.done = status;
    }

    /// How many durable frames lie after the cursor.
    pub fn lag(&self) -> u64 {
        self.index.watermark().last.saturating_sub(self.cursor)
    }

    /// Moves the cursor to the durable end, short of the status frame so that it is
    /// still delivered; the offsets skipped, if any.
    pub fn skip_to_end(&mut self) -> Option<(u64, u64)> {
        let wm = self.index.watermark();
        let end = if wm.sealed { wm.last - 1 } else { wm.last };
        if end <= self.cursor {
            return None;
        }
        let skipped = (self.cursor + 1, end);
        self.cursor = end;
        Some(skipped)
    }

    /// Waits until a frame after the cursor is durable: `true` then, `false` once the
    /// stream has ended (the status frame delivered, or before the cursor).
    pub async fn wait(&mut self) -> Result<bool, FrameLogError> {
        loop {
            if self.done {
                return Ok(false);
            }
            let wm = *self.watermark.borrow_and_update();
            if wm.last > self.cursor {
                return Ok(true);
            }
            if wm.sealed {
                self.done = true;
                return Ok(false);
            }
            if self.watermark.changed().await.is_err() {
                return Err(FrameLogError::WriterStopped);
            }
        }
    }

    /// The next frames after the cursor, waiting while there are none yet.
    /// `None` once the status frame has been delivered (or lies before the cursor).
    ///
    /// Frames just written (a few behind the durable end) are read on the caller's
    /// thread: they are in the page cache, and reading them at once lets the first of
    /// many observers at the live end share what it read (see the HTTP layer's wire
    /// cache) before the others look. Older frames are read on a blocking thread.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<StoredFrame>>, FrameLogError> {
        loop {
            if !self.wait().await? {
                return Ok(None);
            }
            let wm = self.index.watermark();
            let frames = if wm.last - self.cursor <= INLINE_FRAMES {
                self.log
                    .read_after(&self.index, self.cursor, BATCH_FRAMES, BATCH_BYTES)?
            } else {
                let (log, index, after) = (self.log.clone(), self.index.clone(), self.cursor);
                tokio::task::spawn_blocking(move || {
                    log.read_after(&index, after, BATCH_FRAMES, BATCH_BYTES)
                })
                .await
                .map_err(|_| FrameLogError::WriterStopped)??
            };
            if let Some(last) = frames.last() {
                self.cursor = last.offset;
                self.done = last.kind == StreamKind::Status;
                return Ok(Some(frames));
            }
            // Durable but not readable yet: wait for the next change.
            if wm.sealed {
                self.done = true;
                return Ok(None);
            }
            if self.watermark.changed().await.is_err() {
                return Err(FrameLogError::WriterStopped);
            }
        }
    }
}

/// The observer's view of a stored frame.
pub fn to_observer(frame: &StoredFrame) -> ObserverFrame {
    let status = (frame.kind == StreamKind::Status)
        .then(|| serde_json::from_slice::<FinalStatus>(&frame.data).ok())
        .flatten();
    let gap = (frame.kind == StreamKind::Gap)
        .then(|| serde_json::from_slice::<Gap>(&frame.data).ok())
        .flatten();
    let truncated = (frame.kind == StreamKind::Truncated)
        .then(|| serde_json::from_slice::<Truncated>(&frame.data).ok())
        .flatten();
    let (data, encoding) = if status.is_some() || gap.is_some() || truncated.is_some() {
        (String::new(), None)
    } else {
        ObserverFrame::encode_data(&frame.data)
    };
    ObserverFrame {
        handle: frame.handle.clone(),
        offset: frame.offset,
        attempt: frame.attempt,
        ts: rfc3339_ms(frame.ts_ms),
        kind: frame.kind,
        data,
        encoding,
        status,
        gap,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::HandleId;
    use crate::exec_handle::Append;

    #[tokio::test]
    async fn replays_then_follows_live_then_ends_at_the_status_frame() {
        let dir = tempfile::tempdir().unwrap();
        let log = FrameLog::open(dir.path()).unwrap();
        let h = HandleId::parse("h-s").unwrap();
        let index = log.create_handle(&h);
        let put = |kind, data: &str| Append {
            handle: h.clone(),
            attempt: 1,
            kind,
            data: data.as_bytes().to_vec(),
            ack: None,
        };
        for i in 1..=5 {
            log.append(put(StreamKind::Stdout, &format!("{i}\n")))
                .await
                .unwrap();
        }
        let mut sub = Subscription::new(log.clone(), index.clone(), 2);
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let batch = tokio::time::timeout(Duration::from_secs(10), sub.next_batch())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            seen.extend(batch.into_iter().map(|f| f.offset));
        }
        assert_eq!(seen, vec![3, 4, 5]);
        let live = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(batch) = sub.next_batch().await.unwrap() {
                out.extend(batch.iter().map(to_observer));
            }
            out
        });
        log.append(put(StreamKind::Stderr, "6\n")).await.unwrap();
        let status = serde_json::json!({"state": "succeeded", "exitCode": 0, "signal": null, "attempts": 1, "reason": null});
        log.append(put(StreamKind::Status, &status.to_string()))
            .await
            .unwrap();
        let rest = tokio::time::timeout(Duration::from_secs(10), live)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rest.iter().map(|f| f.offset).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert_eq!(rest[0].data, "6\n");
        assert_eq!(
            rest[1].status.as_ref().map(|s| s.end.exit_code),
            Some(Some(0))
        );
        // A late observer of a finished handle gets the tail and the end.
        let mut late = Subscription::new(log.clone(), index, 7);
        assert!(late.next_batch().await.unwrap().is_none());
    }
}
