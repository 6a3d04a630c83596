//! ExecHandle: the durable frame log behind every handle.
//!
//! Owns: the append-only log shared by all handles, a run of segment files of which
//! only the newest is written ([`segments`]), the in-memory index of every handle
//! (offset → position, from the first offset retention keeps) and each handle's durable
//! watermark. A single writer
//! thread appends frames in batches and makes each batch durable with one `fdatasync`
//! (group commit) before it publishes the new watermark to observers and acknowledges the
//! chunks to the agents that sent them. Nothing is acknowledged or shown before it is durable.
//!
//! Supervision: the writer thread is started by [`FrameLog::open`]. A batch that fails
//! to write or sync (disk full, I/O error) is cut off the file again and retried with
//! backoff, the failure reported in [`StorageHealth`]; meanwhile appends queue up to
//! [`QUEUE_DEPTH`] and then wait, so agents get no acknowledgements and slow down. When
//! the disk takes writes again, the same batch goes through and nothing is lost. A
//! restart of the server loses nothing durable: [`FrameLog::open`] loads the index
//! checkpoint, rescans what follows it, drops a torn tail and rebuilds every index.
//!
//! Retention ([`retention`]): the writer moves handles' first kept offsets past what
//! the limits remove and deletes segments nothing is kept in; readers below the first
//! kept offset get one truncated frame ([`StreamKind::Truncated`]).
//!
//! Damage: a record that fails its checksum costs only its own frame. The rescan skips to
//! the next valid record, keeps the lost offset in the index as lost (so it is never
//! reused), and reports it ([`FrameLog::damage`]); readers get one gap frame
//! ([`StreamKind::Gap`]) for each run of lost offsets instead of the frames.

mod checkpoint;
mod record;
mod retention;
mod segments;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{now_ms, HandleId};
use crate::health::StorageHealth;
use crate::lifeline::Lifeline;
use crate::protocol::{AttemptKey, Gap, GapReason, StreamKind, TruncateReason, Truncated};
use record::Found;
pub use record::StoredFrame;
pub use retention::RetentionSettings;
use retention::SegmentMeta;
use segments::Segments;

/// The position of an offset whose record was lost to damage.
const LOST: u64 = u64::MAX;
/// A new index checkpoint once this much was appended since the last one (and the
/// writer is idle): a start then rescans at most about this much.
const CHECKPOINT_EVERY: u64 = 64 << 20;

/// Largest batch the writer commits at once.
const MAX_BATCH_FRAMES: usize = 8192;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Appends queued for the writer before senders wait (backpressure towards the agents).
const QUEUE_DEPTH: usize = 16_384;

/// Errors of the frame log.
#[derive(Debug, thiserror::Error)]
pub enum FrameLogError {
    #[error("frame log I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the frame log writer has stopped")]
    WriterStopped,
    #[error("unknown handle {0}")]
    UnknownHandle(HandleId),
    #[error("handle {0} is sealed; no frame may follow its status")]
    Sealed(HandleId),
}

/// The durable watermark of one handle, as observers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watermark {
    /// Highest durable offset (0 = none yet).
    pub last: u64,
    /// True once the status frame is durable: nothing will follow.
    pub sealed: bool,
}

/// Index of one handle: where each offset it keeps lives in the log.
#[derive(Debug)]
pub struct HandleIndex {
    pub handle: HandleId,
    slots: RwLock<Slots>,
    watermark: watch::Sender<Watermark>,
}

/// Where one handle's frames lie: the positions of the offsets it keeps, from `first`.
#[derive(Debug)]
struct Slots {
    /// The offset of `positions[0]`: retention removed every frame before it (1 until it
    /// removed any).
    first: u64,
    positions: VecDeque<u64>,
    /// The handle's frames segment by segment, oldest first: what retention removes in
    /// one step.
    spans: VecDeque<Span>,
    /// Bytes of the records the spans hold.
    bytes: u64,
    /// The limit that last moved `first`.
    truncated: Option<TruncateReason>,
}

/// A handle's frames in one segment: from offset `first` on, `bytes` of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub segment: u64,
    pub first: u64,
    pub bytes: u64,
}

/// What the index says of one offset.
enum Slot {
    At(u64),
    Lost,
    /// Retention removed it: the first offset kept, and why.
    Removed(u64, TruncateReason),
    Beyond,
}

impl Slots {
    fn new() -> Self {
        Self {
            first: 1,
            positions: VecDeque::new(),
            spans: VecDeque::new(),
            bytes: 0,
            truncated: None,
        }
    }

    /// The offset the next frame takes.
    fn next(&self) -> u64 {
        self.first + self.positions.len() as u64
    }

    /// Records the next offset's record: at `pos`, `bytes` long, in `segment`.
    fn push(&mut self, pos: u64, segment: u64, bytes: u64) {
        let offset = self.next();
        self.positions.push_back(pos);
        self.bytes += bytes;
        match self.spans.back_mut() {
            Some(span) if span.segment == segment => span.bytes += bytes,
            _ => self.spans.push_back(Span {
                segment,
                first: offset,
                bytes,
            }),
        }
    }

    /// Marks every offset from the next up to `last` lost.
    fn lose_to(&mut self, last: u64) {
        while self.next() <= last {
            self.positions.push_back(LOST);
        }
    }

    fn slot(&self, offset: u64) -> Slot {
        if offset < self.first {
            return Slot::Removed(
                self.first,
                self.truncated.unwrap_or(TruncateReason::Removed),
            );
        }
        match self.positions.get((offset - self.first) as usize) {
            Some(&LOST) => Slot::Lost,
            Some(&pos) => Slot::At(pos),
            None => Slot::Beyond,
        }
    }

    /// Removes the oldest span's frames (and any lost offsets among them); returns how
    /// many offsets went.
    fn drop_front_span(&mut self, reason: TruncateReason) -> u64 {
        if self.spans.is_empty() {
            return 0;
        }
        self.remove_before(self.span_end(0), reason)
    }

    /// The offset after the frames of span `i`: where the next span starts.
    fn span_end(&self, i: usize) -> u64 {
        self.spans.get(i + 1).map_or(self.next(), |s| s.first)
    }

    /// Removes every offset before `to`, and the spans that lie wholly before it.
    fn remove_before(&mut self, to: u64, reason: TruncateReason) -> u64 {
        while self.spans.front().is_some() && self.span_end(0) <= to {
            if let Some(span) = self.spans.pop_front() {
                self.bytes -= span.bytes;
            }
        }
        let n = to
            .saturating_sub(self.first)
            .min(self.positions.len() as u64);
        self.positions.drain(..n as usize);
        self.first += n;
        if to > self.first {
            // Offsets not yet written (a handle first seen past its start).
            self.first = to;
        }
        self.truncated = Some(reason);
        n
    }
}

impl HandleIndex {
    fn new(handle: HandleId) -> Self {
        Self {
            handle,
            slots: RwLock::new(Slots::new()),
            watermark: watch::Sender::new(Watermark::default()),
        }
    }

    /// A receiver that changes whenever more frames become durable.
    pub fn subscribe(&self) -> watch::Receiver<Watermark> {
        self.watermark.subscribe()
    }

    pub fn watermark(&self) -> Watermark {
        *self.watermark.borrow()
    }

    /// What retention keeps of this handle: the first offset kept (past the last when
    /// none is), the bytes kept, and the limit that removed frames, if one did.
    pub fn kept(&self) -> Kept {
        let slots = self.slots();
        Kept {
            first: slots.first,
            bytes: slots.bytes,
            truncated: slots.truncated,
        }
    }

    fn slots(&self) -> std::sync::RwLockReadGuard<'_, Slots> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, Slots> {
        self.slots.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// What retention keeps of one handle ([`HandleIndex::kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub first: u64,
    pub bytes: u64,
    pub truncated: Option<TruncateReason>,
}

/// Frames of one handle that damage to the log cost, as the rescan at open found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub handle: HandleId,
    pub first: u64,
    pub last: u64,
    /// Where in the segment the damage is, and how many bytes it spans.
    pub pos: u64,
    pub bytes: u64,
}

/// What the log counts about itself, for `/metrics`.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Frames lost to damaged records (at open, or read back damaged later).
    pub lost_frames: AtomicU64,
    /// Bytes of damaged records skipped at open.
    pub corrupt_bytes: AtomicU64,
    /// Bytes of a torn tail cut at open.
    pub torn_bytes: AtomicU64,
    /// Bytes in all segments together.
    pub size: AtomicU64,
    /// Segment files.
    pub segments: AtomicU64,
    /// Offsets retention removed, by the limit that removed them
    /// ([`TruncateReason::to_byte`] − 1).
    pub removed_frames: [AtomicU64; 4],
    /// Segment files retention deleted, and their bytes.
    pub deleted_segments: AtomicU64,
    pub deleted_bytes: AtomicU64,
    /// Batches that failed to write or sync and were retried.
    pub write_failures: AtomicU64,
    /// True while the writer retries a failed batch.
    pub failing: std::sync::atomic::AtomicBool,
}

/// Where to send the acknowledgement of a chunk once it is durable.
#[derive(Debug, Clone)]
pub struct AckTo {
    pub tx: mpsc::UnboundedSender<(AttemptKey, u64)>,
    pub attempt: AttemptKey,
    pub seq: u64,
}

/// One frame to append.
#[derive(Debug)]
pub struct Append {
    pub handle: HandleId,
    pub attempt: u32,
    pub kind: StreamKind,
    pub data: Vec<u8>,
    pub ack: Option<AckTo>,
}

/// What the writer takes: a frame, or a request to hear when all before it is durable.
enum Item {
    Frame(Append),
    Barrier(oneshot::Sender<()>),
    /// Checkpoint the index once everything before is durable.
    Checkpoint(oneshot::Sender<()>),
    /// Time to check the retention limits.
    Tick,
}

/// The shared, append-only frame log. Cheap to clone.
#[derive(Clone)]
pub struct FrameLog {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Item>,
}

struct Shared {
    dir: PathBuf,
    segments: Segments,
    handles: DashMap<HandleId, Arc<HandleIndex>>,
    /// The last durable chunk seq of each attempt, as the rescan at open found it.
    recovered_acks: RwLock<HashMap<AttemptKey, u64>>,
    /// What damage the rescan at open found.
    damage: Vec<Lost>,
    /// Where damage found later, when a record is read, is reported.
    late_damage: std::sync::Mutex<Option<mpsc::UnboundedSender<Lost>>>,
    counters: LogCounters,
    health: StorageHealth,
    retention: RetentionSettings,
}

impl FrameLog {
    /// Opens (or creates) the log under `dir`, rebuilds the indexes and starts the writer.
    pub fn open(dir: &Path) -> Result<Self, FrameLogError> {
        Self::open_with(dir, RetentionSettings::default())
    }

    /// [`open`](Self::open) with the given retention limits.
    pub fn open_with(dir: &Path, retention: RetentionSettings) -> Result<Self, FrameLogError> {
        Self::open_watched(
            dir,
            Lifeline::unwatched("frame-log writer"),
            StorageHealth::default(),
            retention,
        )
    }

    /// [`open`](Self::open), with `lifeline` reporting the writer thread's end,
    /// `health` hearing of writes that fail, and `retention` the limits of what is kept.
    pub fn open_watched(
        dir: &Path,
        lifeline: Lifeline,
        health: StorageHealth,
        retention: RetentionSettings,
    ) -> Result<Self, FrameLogError> {
        let io_err = |source| FrameLogError::Io {
            path: dir.to_path_buf(),
            source,
        };
        crate::files::private_dir(dir).map_err(io_err)?;
        let bases = segments::list(dir).map_err(io_err)?;
        let segments = Segments::default();
        let mut metas: BTreeMap<u64, SegmentMeta> = BTreeMap::new();
        for &base in &bases {
            let path = segments::path(dir, base);
            crate::files::private_file(&path).map_err(io_err)?;
            let file = File::open(&path).map_err(io_err)?;
            let meta = file.metadata().map_err(io_err)?;
            let written_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(now_ms, |d| d.as_millis() as i64);
            metas.insert(
                base,
                SegmentMeta {
                    len: meta.len(),
                    opened_ms: written_ms,
                    written_ms,
                },
            );
            segments.insert(base, file);
        }
        let log_end = |metas: &BTreeMap<u64, SegmentMeta>| {
            metas.iter().next_back().map_or(0, |(b, m)| b + m.len)
        };
        let handles = DashMap::new();
        // Attempts' last durable chunk, and their handle.
        let mut acked: HashMap<AttemptKey, (HandleId, u64)> = HashMap::new();
        let ckpt_path = dir.join("index.ckpt");
        let mut start = 0;
        if let Some(c) = checkpoint::load(&ckpt_path)
            .filter(|c| checkpoint::matches(c, &segments, log_end(&metas)))
        {
            for h in c.handles {
                let index = HandleIndex::new(h.handle.clone());
                let mut slots = Slots {
                    first: h.first,
                    positions: h.positions.into(),
                    bytes: h.spans.iter().map(|s| s.bytes).sum(),
                    spans: h.spans.into(),
                    truncated: h.truncated,
                };
                // Segments gone since (removed by hand): their frames with them.
                while slots
                    .spans
                    .front()
                    .is_some_and(|s| !metas.contains_key(&s.segment))
                {
                    slots.drop_front_span(TruncateReason::Removed);
                }
                index.watermark.send_replace(Watermark {
                    last: slots.next() - 1,
                    sealed: h.sealed,
                });
                *index.slots_mut() = slots;
                handles.insert(h.handle, Arc::new(index));
            }
            acked = c.acks;
            start = c.end;
            tracing::info!(
                from = start,
                size = log_end(&metas),
                "frame log index loaded from its checkpoint; rescanning the rest"
            );
        }
        // Where the damage that cost each lost offset lies (position, bytes).
        let mut lost_at: HashMap<(HandleId, u64), (u64, u64)> = HashMap::new();
        let mut last_damage: Option<(u64, u64)> = None;
        let index_of = |handle: &HandleId| {
            handles
                .entry(handle.clone())
                .or_insert_with(|| Arc::new(HandleIndex::new(handle.clone())))
                .clone()
        };
        // Whether segments were deleted just before each one: a handle whose offsets
        // jump across such a hole lost the frames between to retention, not to damage.
        let mut holes: Vec<bool> = Vec::with_capacity(bases.len());
        let mut expected = 0;
        // The ordinal of the segment each handle was last seen in during this scan; for
        // the others, the scan's first segment (the checkpoint covers what is before).
        let mut seen_in: HashMap<HandleId, usize> = HashMap::new();
        let scan_from = bases
            .iter()
            .rposition(|b| *b <= start)
            .filter(|_| start > 0)
            .map_or(0, |o| o + 1);
        let mut torn = 0;
        for (ordinal, &base) in bases.iter().enumerate() {
            let meta = metas[&base];
            holes.push(base > expected);
            expected = base + meta.len;
            if base + meta.len <= start && ordinal + 1 < bases.len() {
                continue;
            }
            let Some((file, _)) = segments.locate(base) else {
                continue;
            };
            let from = start.saturating_sub(base).min(meta.len);
            let scanned = record::recover(&file, from, |found| match found {
                Found::Damage(d) => {
                    let pos = base + d.pos;
                    last_damage = Some((pos, d.len));
                    // The record's own claim, when its header still reads: the next offset
                    // of its handle is lost. Unverified: a valid record for the same offset
                    // later takes the slot back.
                    if let Some((handle, offset)) = d.claims {
                        let index = index_of(&handle);
                        let wm = index.watermark();
                        if offset == wm.last + 1 && !wm.sealed {
                            lose(&index, offset, (pos, d.len), &mut lost_at);
                        }
                    }
                }
                Found::Frame {
                    frame,
                    acks,
                    pos,
                    len,
                } => {
                    let pos = base + pos;
                    if let Some((attempt, seq)) = acks {
                        let last = acked
                            .entry(attempt)
                            .or_insert_with(|| (frame.handle.clone(), 0));
                        last.1 = last.1.max(seq);
                    }
                    let index = index_of(&frame.handle);
                    let wm = index.watermark();
                    let mut slots = index.slots_mut();
                    if frame.offset < slots.first {
                        return; // removed by retention; its segment is still kept
                    }
                    if frame.offset <= wm.last {
                        match slots.slot(frame.offset) {
                            Slot::Lost => {
                                let i = (frame.offset - slots.first) as usize;
                                slots.positions[i] = pos;
                                lost_at.remove(&(frame.handle.clone(), frame.offset));
                                if frame.kind == StreamKind::Status && frame.offset == wm.last {
                                    index.watermark.send_modify(|w| w.sealed = true);
                                }
                            }
                            _ => {
                                tracing::warn!(handle = %frame.handle, offset = frame.offset, "frame out of sequence in the log; skipped");
                            }
                        }
                        return;
                    }
                    if wm.sealed {
                        tracing::warn!(handle = %frame.handle, offset = frame.offset, "frame after the status frame in the log; skipped");
                        return;
                    }
                    if frame.offset > wm.last + 1 {
                        let since = seen_in.get(&frame.handle).map_or(scan_from, |o| o + 1);
                        let retention = since <= ordinal && holes[since..=ordinal].iter().any(|h| *h);
                        if retention {
                            // The frames between lay in segments retention deleted.
                            slots.remove_before(frame.offset, TruncateReason::Removed);
                        } else {
                            // The frames between lay in damage this scan passed.
                            drop(slots);
                            lose(
                                &index,
                                frame.offset - 1,
                                last_damage.unwrap_or((pos, 0)),
                                &mut lost_at,
                            );
                            slots = index.slots_mut();
                        }
                    }
                    seen_in.insert(frame.handle.clone(), ordinal);
                    slots.push(pos, base, len);
                    let last = slots.next() - 1;
                    let sealed = frame.kind == StreamKind::Status;
                    index.watermark.send_replace(Watermark { last, sealed });
                }
            })
            .map_err(io_err)?;
            if scanned.torn > 0 {
                tracing::warn!(
                    segment = base,
                    kept = scanned.end,
                    cut = scanned.torn,
                    "frame log segment had a torn tail; cut"
                );
                torn += scanned.torn;
                let path = segments::path(dir, base);
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(scanned.end))
                    .map_err(io_err)?;
                if let Some(m) = metas.get_mut(&base) {
                    m.len = scanned.end;
                }
            }
        }
        // Attempts of sealed handles never re-attach.
        acked.retain(|_, (h, _)| handles.get(h).is_some_and(|i| !i.watermark().sealed));
        let damage = lost_runs(&handles, &lost_at);
        for d in &damage {
            tracing::error!(handle = %d.handle, first = d.first, last = d.last, position = d.pos, bytes = d.bytes, "frame log record damaged: these frames are lost, the rest is kept");
        }
        let end = log_end(&metas);
        let counters = LogCounters::default();
        let corrupt: u64 = {
            let mut spans: Vec<(u64, u64)> = damage.iter().map(|d| (d.pos, d.bytes)).collect();
            spans.dedup();
            spans.iter().map(|s| s.1).sum()
        };
        let lost: u64 = handles
            .iter()
            .map(|h| h.slots().positions.iter().filter(|p| **p == LOST).count() as u64)
            .sum();
        counters.lost_frames.store(lost, Ordering::Relaxed);
        counters.corrupt_bytes.store(corrupt, Ordering::Relaxed);
        counters.torn_bytes.store(torn, Ordering::Relaxed);
        counters
            .size
            .store(metas.values().map(|m| m.len).sum(), Ordering::Relaxed);
        counters
            .segments
            .store(metas.len() as u64, Ordering::Relaxed);
        let (&base, _) = metas
            .iter()
            .next_back()
            .ok_or_else(|| io_err(io::Error::other("no segment")))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(segments::path(dir, base))
            .map_err(io_err)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segments,
            handles,
            recovered_acks: RwLock::new(acked.iter().map(|(a, (_, s))| (*a, *s)).collect()),
            damage,
            late_damage: std::sync::Mutex::new(None),
            counters,
            health,
            retention,
        });
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            shared: shared.clone(),
            file,
            base,
            segs: metas,
            buf: Vec::with_capacity(1 << 20),
            end,
            next: HashMap::new(),
            ckpt_path,
            ckpt_end: start.min(end),
            acks: acked,
            retention,
            last_pass: Instant::now(),
        };
        std::thread::Builder::new()
            .name("frame-log-writer".into())
            .spawn(move || {
                let _lifeline = lifeline;
                writer.run(rx)
            })
            .map_err(io_err)?;
        let ticks = tx.downgrade();
        std::thread::Builder::new()
            .name("frame-log-retention-tick".into())
            .spawn(move || loop {
                std::thread::sleep(retention::PASS_EVERY);
                match ticks.upgrade() {
                    Some(tx) => {
                        let _ = tx.try_send(Item::Tick);
                    }
                    None => return,
                }
            })
            .map_err(io_err)?;
        Ok(Self { shared, tx })
    }

    /// Registers a new, empty handle (idempotent).
    pub fn create_handle(&self, handle: &HandleId) -> Arc<HandleIndex> {
        self.shared
            .handles
            .entry(handle.clone())
            .or_insert_with(|| Arc::new(HandleIndex::new(handle.clone())))
            .clone()
    }

    /// The last chunk of `attempt` that was on disk when the log was opened (0 if none):
    /// where an agent re-attaching after a restart resumes its output.
    pub fn recovered_seq(&self, attempt: AttemptKey) -> u64 {
        let acks = self
            .shared
            .recovered_acks
            .read()
            .unwrap_or_else(|e| e.into_inner());
        acks.get(&attempt).copied().unwrap_or(0)
    }

    /// Forgets the recovered seqs once no attempt can re-attach any more.
    pub fn forget_recovered(&self) {
        let mut acks = self
            .shared
            .recovered_acks
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *acks = HashMap::new();
    }

    /// The frames damage cost, as the rescan at open found them, in file order.
    pub fn damage(&self) -> &[Lost] {
        &self.shared.damage
    }

    /// Sends damage found after open (a record that fails its checksum when read) to
    /// `tx`, once per lost offset.
    pub fn report_damage_to(&self, tx: mpsc::UnboundedSender<Lost>) {
        *self
            .shared
            .late_damage
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// The limits of what the log keeps.
    pub fn retention(&self) -> RetentionSettings {
        self.shared.retention
    }

    pub fn counters(&self) -> &LogCounters {
        &self.shared.counters
    }

    /// Every handle in the log.
    pub fn handles(&self) -> Vec<Arc<HandleIndex>> {
        self.shared.handles.iter().map(|h| h.clone()).collect()
    }

    pub fn handle(&self, handle: &HandleId) -> Option<Arc<HandleIndex>> {
        self.shared.handles.get(handle).map(|h| h.clone())
    }

    /// Queues a frame; it becomes visible (and is acknowledged) once durable.
    pub async fn append(&self, append: Append) -> Result<(), FrameLogError> {
        self.tx
            .send(Item::Frame(append))
            .await
            .map_err(|_| FrameLogError::WriterStopped)
    }

    /// [`append`](Self::append) from a thread outside the async runtime.
    pub fn append_blocking(&self, append: Append) -> Result<(), FrameLogError> {
        self.tx
            .blocking_send(Item::Frame(append))
            .map_err(|_| FrameLogError::WriterStopped)
    }

    /// Returns once every frame queued before the call is durable.
    pub async fn durable(&self) -> Result<(), FrameLogError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Item::Barrier(tx))
            .await
            .map_err(|_| FrameLogError::WriterStopped)?;
        rx.await.map_err(|_| FrameLogError::WriterStopped)
    }

    /// Writes the index checkpoint now (after everything queued before is durable), so
    /// that the next start rescans nothing: for a server that stops.
    pub async fn checkpoint(&self) -> Result<(), FrameLogError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Item::Checkpoint(tx))
            .await
            .map_err(|_| FrameLogError::WriterStopped)?;
        rx.await.map_err(|_| FrameLogError::WriterStopped)
    }

    /// Whether the writer is retrying a write the disk refused.
    pub fn failing(&self) -> bool {
        self.shared.counters.failing.load(Ordering::Relaxed)
    }

    /// Reads up to `max_frames` durable frames of `index` after offset `after`
    /// (at most about `max_bytes` of data). A run of lost offsets, or a record that no
    /// longer passes its checksum, reads as one gap frame; offsets retention removed read
    /// as one truncated frame naming the first offset kept. Blocking: call from a
    /// blocking context.
    pub fn read_after(
        &self,
        index: &HandleIndex,
        after: u64,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredFrame>, FrameLogError> {
        let last = index.watermark().last;
        let mut out: Vec<StoredFrame> = Vec::new();
        let mut bytes = 0;
        let mut offset = after + 1;
        while offset <= last && out.len() < max_frames && bytes < max_bytes {
            let slot = index.slots().slot(offset);
            let read = match slot {
                Slot::At(pos) => self.shared.segments.read_at(pos).map(|r| (pos, r)),
                _ => None,
            };
            let frame = match (slot, read) {
                (_, Some((_, Ok(frame)))) => Some(frame),
                (_, Some((pos, Err(e)))) if e.kind() == io::ErrorKind::InvalidData => {
                    self.lost_on_read(index, offset, pos, &e);
                    None
                }
                (_, Some((_, Err(source)))) => {
                    return Err(FrameLogError::Io {
                        path: self.shared.dir.clone(),
                        source,
                    })
                }
                (Slot::Removed(first, reason), None) => {
                    out.push(truncated_frame(&index.handle, first, reason));
                    offset = first;
                    continue;
                }
                // Its segment went since the lookup: retention removed it meanwhile.
                (Slot::At(_), None) => match index.slots().slot(offset) {
                    Slot::Removed(..) => continue,
                    _ => None,
                },
                (Slot::Beyond, None) => break,
                (Slot::Lost, None) => None,
            };
            match frame {
                Some(frame) => {
                    bytes += frame.data.len();
                    out.push(frame);
                }
                None => match out.last_mut() {
                    Some(prev) if prev.kind == StreamKind::Gap && prev.offset + 1 == offset => {
                        *prev =
                            gap_frame(&index.handle, gap_first(prev), offset, GapReason::Corrupt);
                    }
                    _ => out.push(gap_frame(&index.handle, offset, offset, GapReason::Corrupt)),
                },
            }
            offset += 1;
        }
        Ok(out)
    }

    /// A record found damaged when read: its offset is marked lost (so it is counted and
    /// reported once, and kept lost in the next checkpoint), and the loss reported.
    fn lost_on_read(&self, index: &HandleIndex, offset: u64, pos: u64, e: &io::Error) {
        {
            let mut slots = index.slots_mut();
            let i = offset.checked_sub(slots.first);
            match i.and_then(|i| slots.positions.get_mut(i as usize)) {
                Some(p) if *p == pos => *p = LOST,
                _ => return, // another reader got there first, or retention
            }
        }
        self.shared
            .counters
            .lost_frames
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(handle = %index.handle, offset, position = pos, error = %e, "frame log record damaged since it was written; read as a gap");
        let tx = self
            .shared
            .late_damage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(tx) = tx {
            let _ = tx.send(Lost {
                handle: index.handle.clone(),
                first: offset,
                last: offset,
                pos,
                bytes: 0,
            });
        }
    }
}

/// Marks the offsets of `index` up to `last` lost to the damage at `at`.
fn lose(
    index: &HandleIndex,
    last: u64,
    at: (u64, u64),
    lost_at: &mut HashMap<(HandleId, u64), (u64, u64)>,
) {
    let mut slots = index.slots_mut();
    for offset in slots.next()..=last {
        lost_at.insert((index.handle.clone(), offset), at);
    }
    slots.lose_to(last);
    drop(slots);
    index.watermark.send_modify(|w| w.last = last);
}

/// The runs of lost offsets of every handle, in file order of their damage.
fn lost_runs(
    handles: &DashMap<HandleId, Arc<HandleIndex>>,
    lost_at: &HashMap<(HandleId, u64), (u64, u64)>,
) -> Vec<Lost> {
    let mut runs: Vec<Lost> = Vec::new();
    for entry in handles.iter() {
        let index = entry.value();
        let slots = index.slots();
        let mut run: Option<Lost> = None;
        for (i, pos) in slots.positions.iter().enumerate() {
            let offset = slots.first + i as u64;
            // Only what this scan found: offsets lost before (kept lost in the index
            // checkpoint) were reported when they were found.
            let found = (*pos == LOST)
                .then(|| lost_at.get(&(index.handle.clone(), offset)))
                .flatten();
            let Some(&(pos, bytes)) = found else {
                runs.extend(run.take());
                continue;
            };
            match &mut run {
                Some(r) => r.last = offset,
                None => {
                    run = Some(Lost {
                        handle: index.handle.clone(),
                        first: offset,
                        last: offset,
                        pos,
                        bytes,
                    });
                }
            }
        }
        runs.extend(run);
    }
    runs.sort_by_key(|r| (r.pos, r.handle.as_str().to_owned()));
    runs
}

/// The frame that stands for the offsets before `first`, which retention removed for
/// `reason`.
pub fn truncated_frame(handle: &HandleId, first: u64, reason: TruncateReason) -> StoredFrame {
    StoredFrame {
        handle: handle.clone(),
        offset: first - 1,
        attempt: 0,
        ts_ms: now_ms(),
        kind: StreamKind::Truncated,
        // unwrap: a number and a word always serialise.
        data: serde_json::to_vec(&Truncated { first, reason }).unwrap(),
    }
}

/// The frame that stands for the offsets `first..=last`, not delivered for `reason`.
pub fn gap_frame(handle: &HandleId, first: u64, last: u64, reason: GapReason) -> StoredFrame {
    let gap = Gap {
        first,
        last,
        reason,
    };
    StoredFrame {
        handle: handle.clone(),
        offset: last,
        attempt: 0,
        ts_ms: now_ms(),
        kind: StreamKind::Gap,
        // unwrap: two numbers and a word always serialise.
        data: serde_json::to_vec(&gap).unwrap(),
    }
}

fn gap_first(frame: &StoredFrame) -> u64 {
    serde_json::from_slice::<Gap>(&frame.data)
        .map(|g| g.first)
        .unwrap_or(frame.offset)
}

struct Writer {
    shared: Arc<Shared>,
    /// The segment being written, and its base.
    file: File,
    base: u64,
    segs: BTreeMap<u64, SegmentMeta>,
    /// The batch being written, encoded.
    buf: Vec<u8>,
    /// The position the next record takes.
    end: u64,
    /// Next offset per handle, for handles this writer has appended to.
    next: HashMap<HandleId, (Arc<HandleIndex>, u64)>,
    /// The index checkpoint, and the end of the log it covers.
    ckpt_path: PathBuf,
    ckpt_end: u64,
    /// The last durable chunk of each attempt whose handle is not sealed.
    acks: HashMap<AttemptKey, (HandleId, u64)>,
    retention: RetentionSettings,
    last_pass: Instant,
}

/// First wait after a failed batch, and the longest.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Item>) {
        let mut batch = Vec::with_capacity(MAX_BATCH_FRAMES);
        let mut barriers = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = 0;
            // A batch goes into one segment: it ends where the segment is full.
            let room = self.room();
            let mut checkpoint_now = false;
            let mut item = Some(first);
            while let Some(next) = item.take() {
                match next {
                    Item::Frame(a) => {
                        bytes += a.data.len();
                        batch.push(a);
                    }
                    Item::Barrier(tx) => barriers.push(tx),
                    Item::Checkpoint(tx) => {
                        checkpoint_now = true;
                        barriers.push(tx);
                    }
                    Item::Tick => {}
                }
                if batch.len() < MAX_BATCH_FRAMES && bytes < room {
                    item = rx.try_recv().ok();
                }
            }
            let mut wait = RETRY_FIRST;
            while !batch.is_empty() {
                let Err(e) = self.commit(&mut batch) else {
                    break;
                };
                let counters = &self.shared.counters;
                counters.write_failures.fetch_add(1, Ordering::Relaxed);
                counters.failing.store(true, Ordering::Relaxed);
                self.shared
                    .health
                    .failing("frame log", format!("{}: {e}", self.shared.dir.display()));
                if let Err(e) = self.rollback() {
                    tracing::error!(error = %e, path = %self.shared.dir.display(), "frame log could not be cut back after a failed write; writer stops");
                    return;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
            }
            if self.shared.counters.failing.swap(false, Ordering::Relaxed) {
                self.shared.health.ok("frame log");
            }
            if self.last_pass.elapsed() >= retention::PASS_EVERY {
                self.retain();
            }
            if checkpoint_now || (rx.is_empty() && self.end >= self.ckpt_end + CHECKPOINT_EVERY) {
                self.checkpoint();
            }
            for tx in barriers.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    /// Writes the index as it stands (every durable frame up to `end`) to the
    /// checkpoint file. A failure costs only a longer rescan at the next start.
    fn checkpoint(&mut self) -> bool {
        let handles = self
            .shared
            .handles
            .iter()
            .map(|h| {
                let slots = h.slots();
                checkpoint::CheckpointHandle {
                    handle: h.handle.clone(),
                    sealed: h.watermark().sealed,
                    first: slots.first,
                    truncated: slots.truncated,
                    positions: slots.positions.iter().copied().collect(),
                    spans: slots.spans.iter().copied().collect(),
                }
            })
            .collect();
        let c = checkpoint::Checkpoint {
            end: self.end,
            handles,
            acks: self.acks.clone(),
        };
        match crate::files::write_atomic(&self.ckpt_path, &checkpoint::encode(&c)) {
            Ok(()) => {
                self.ckpt_end = self.end;
                tracing::debug!(end = self.end, "frame log index checkpointed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.ckpt_path.display(), "frame log index checkpoint not written");
                false
            }
        }
    }

    /// Cuts what a failed batch left in the file, so that the retry writes it whole.
    fn rollback(&mut self) -> io::Result<()> {
        self.file.set_len(self.end - self.base)
    }

    /// Bytes the next batch may take: what is left of the segment being written (all of
    /// the next one's when it is full), at most [`MAX_BATCH_BYTES`].
    fn room(&self) -> usize {
        let len = self.end - self.base;
        let seg = self.retention.segment_bytes;
        let left = if len >= seg { seg } else { seg - len };
        left.min(MAX_BATCH_BYTES as u64) as usize
    }

    /// Starts a new segment when the one being written is full, or holds frames older
    /// than a segment may.
    fn roll_if_due(&mut self, now: i64) -> io::Result<()> {
        let meta = self.segs.get(&self.base).copied();
        let due = meta.is_some_and(|m| {
            m.len >= self.retention.segment_bytes
                || (m.len > 0 && m.opened_ms + self.retention.segment_max_age_ms as i64 <= now)
        });
        if !due {
            return Ok(());
        }
        let dir = &self.shared.dir;
        let base = self.end;
        let file = segments::create(dir, base)?;
        segments::sync_dir(dir)?;
        self.shared
            .segments
            .insert(base, File::open(segments::path(dir, base))?);
        self.file = file;
        self.base = base;
        self.segs.insert(
            base,
            SegmentMeta {
                len: 0,
                opened_ms: now,
                written_ms: now,
            },
        );
        self.shared
            .counters
            .segments
            .store(self.segs.len() as u64, Ordering::Relaxed);
        tracing::debug!(segment = base, "frame log segment started");
        Ok(())
    }

    /// Applies the retention limits: moves handles' first kept offsets past what a limit
    /// removes, forgets sealed handles nothing is kept of, and deletes the segments no
    /// handle keeps a frame in (after a checkpoint records the moves).
    fn retain(&mut self) {
        self.last_pass = Instant::now();
        let now = now_ms();
        if let Err(e) = self.roll_if_due(now) {
            tracing::warn!(error = %e, "frame log segment not started; retried at the next pass");
        }
        let doomed: HashMap<u64, TruncateReason> =
            retention::doomed(&self.segs, self.base, &self.retention, now)
                .into_iter()
                .collect();
        let mut live = HashSet::new();
        let mut gone = Vec::new();
        let mut removed = [0u64; 4];
        for entry in self.shared.handles.iter() {
            let index = entry.value();
            let mut slots = index.slots_mut();
            while let Some(span) = slots.spans.front().copied() {
                let reason = match doomed.get(&span.segment) {
                    Some(r) => *r,
                    None if slots.bytes > self.retention.handle_max_bytes
                        && span.segment < self.base =>
                    {
                        TruncateReason::HandleBytes
                    }
                    None => break,
                };
                removed[reason.to_byte() as usize - 1] += slots.drop_front_span(reason);
            }
            live.extend(slots.spans.iter().map(|s| s.segment));
            if slots.positions.is_empty() && slots.truncated.is_some() && index.watermark().sealed {
                gone.push(index.handle.clone());
            }
        }
        for (reason, n) in TruncateReason::ALL.iter().zip(removed) {
            if n > 0 {
                self.shared.counters.removed_frames[reason.to_byte() as usize - 1]
                    .fetch_add(n, Ordering::Relaxed);
                tracing::info!(
                    frames = n,
                    limit = reason.as_str(),
                    "frame log retention removed frames"
                );
            }
        }
        for handle in gone {
            self.shared.handles.remove(&handle);
        }
        let unused = retention::unused(&self.segs, self.base, &live);
        if unused.is_empty() {
            return;
        }
        // The moves are recorded before the frames go: a restart never shows a frame
        // again once its segment is deleted.
        if !self.checkpoint() {
            return;
        }
        let mut paths = Vec::with_capacity(unused.len());
        for base in unused {
            self.shared.segments.remove(base);
            if let Some(meta) = self.segs.remove(&base) {
                paths.push((segments::path(&self.shared.dir, base), meta.len));
            }
        }
        let counters = &self.shared.counters;
        counters
            .size
            .store(self.segs.values().map(|m| m.len).sum(), Ordering::Relaxed);
        counters
            .segments
            .store(self.segs.len() as u64, Ordering::Relaxed);
        let shared = self.shared.clone();
        // Unlinking a large file can take a while: not on the writer's thread.
        let spawned = std::thread::Builder::new()
            .name("frame-log-retention".into())
            .spawn(move || {
                for (path, len) in paths {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            let counters = &shared.counters;
                            counters.deleted_segments.fetch_add(1, Ordering::Relaxed);
                            counters.deleted_bytes.fetch_add(len, Ordering::Relaxed);
                            tracing::info!(segment = %path.display(), bytes = len, "frame log segment deleted");
                        }
                        Err(e) => {
                            tracing::warn!(segment = %path.display(), error = %e, "frame log segment not deleted")
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "frame log segments not deleted: no thread");
        }
    }

    /// Writes the batch, syncs it, then publishes watermarks and acknowledgements. On
    /// error nothing is published and the writer's state is as before the call.
    fn commit(&mut self, batch: &mut Vec<Append>) -> io::Result<()> {
        let ts = now_ms();
        self.roll_if_due(ts)?;
        let mut written: Vec<(Arc<HandleIndex>, u64, u64, bool)> = Vec::with_capacity(batch.len());
        // Handles whose status frame is in this batch: nothing of theirs may follow it.
        let mut sealing: HashSet<HandleId> = HashSet::new();
        let mut acks: Vec<AckTo> = Vec::new();
        // The next offset of each handle in this batch; merged into `next` on success.
        let mut next: HashMap<HandleId, u64> = HashMap::new();
        self.buf.clear();
        let mut end = self.end;
        for a in batch.iter() {
            let Some((index, stored)) = self.slot(&a.handle) else {
                tracing::warn!(handle = %a.handle, "append to an unknown handle dropped");
                continue;
            };
            if index.watermark().sealed || sealing.contains(&a.handle) {
                tracing::warn!(handle = %a.handle, "append after the status frame dropped");
                continue;
            }
            // An empty output frame only carries an acknowledgement (of output not
            // kept): nothing is written, the acknowledgement follows the batch.
            if a.data.is_empty() && a.kind != StreamKind::Status {
                acks.extend(a.ack.clone());
                continue;
            }
            let offset = next.get(&a.handle).copied().unwrap_or(stored);
            let frame = StoredFrame {
                handle: a.handle.clone(),
                offset,
                attempt: a.attempt,
                ts_ms: ts,
                kind: a.kind,
                data: Vec::new(),
            };
            let marker = a.ack.as_ref().map(|k| (k.attempt, k.seq));
            let pos = end;
            let len = record::write(&mut self.buf, &frame, marker, &a.data)?;
            end += len;
            next.insert(a.handle.clone(), offset + 1);
            if a.kind == StreamKind::Status {
                sealing.insert(a.handle.clone());
            }
            written.push((index, pos, len, a.kind == StreamKind::Status));
            if let Some(ack) = &a.ack {
                acks.push(ack.clone());
            }
        }
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.end = end;
        if self.buf.capacity() > MAX_BATCH_BYTES * 2 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        if let Some(meta) = self.segs.get_mut(&self.base) {
            if meta.len == 0 && end > self.base {
                meta.opened_ms = ts;
            }
            meta.len = end - self.base;
            meta.written_ms = ts;
        }
        self.shared
            .counters
            .size
            .store(self.segs.values().map(|m| m.len).sum(), Ordering::Relaxed);
        for (handle, n) in next {
            if let Some(entry) = self.next.get_mut(&handle) {
                entry.1 = n;
            }
        }
        for a in batch.iter() {
            if let Some(ack) = &a.ack {
                let last = self
                    .acks
                    .entry(ack.attempt)
                    .or_insert_with(|| (a.handle.clone(), 0));
                last.1 = last.1.max(ack.seq);
            }
        }
        for (index, pos, len, sealed) in written {
            let last = {
                let mut slots = index.slots_mut();
                slots.push(pos, self.base, len);
                slots.next() - 1
            };
            index.watermark.send_modify(|w| {
                w.last = last;
                w.sealed |= sealed;
            });
            if sealed {
                self.next.remove(&index.handle);
                self.acks.retain(|_, (h, _)| *h != index.handle);
            }
        }
        // Acknowledge only the highest seq per attempt: acks are cumulative.
        let mut highest: HashMap<AttemptKey, AckTo> = HashMap::new();
        for ack in acks {
            let keep = highest.get(&ack.attempt).is_none_or(|h| h.seq < ack.seq);
            if keep {
                highest.insert(ack.attempt, ack);
            }
        }
        for ack in highest.into_values() {
            let _ = ack.tx.send((ack.attempt, ack.seq));
        }
        batch.clear();
        Ok(())
    }

    fn slot(&mut self, handle: &HandleId) -> Option<(Arc<HandleIndex>, u64)> {
        if let Some((index, next)) = self.next.get(handle) {
            return Some((index.clone(), *next));
        }
        let index = self.shared.handles.get(handle)?.clone();
        let next = index.watermark().last + 1;
        self.next.insert(handle.clone(), (index.clone(), next));
        Some((index, next))
    }
}

#[cfg(test)]
mod tests;
