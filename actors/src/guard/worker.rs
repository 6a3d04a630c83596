//! One guard worker thread: redacts the streams of the attempts whose handles hash to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_guard::env::TaskSecrets;
use flotilla_guard::policy::{Action, Allowlist, Mode, Policy};
use flotilla_guard::stream::{Redaction, StreamRedactor};
use flotilla_guard::Engine;
use tokio::sync::oneshot;

use super::{record, Counters, OnBlock, HOLD_MS, MAX_STORED_DECISIONS};
use crate::domain::{now_ms, HandleId, TaskId};
use crate::events::{Event, GuardBlocked, GuardDecided, GuardWorkerRestarted};
use crate::exec_handle::{AckTo, Append, FrameLog};
use crate::protocol::{AttemptKey, StreamKind};
use crate::store::writer::{StoreWriter, Write};
use crate::store::DecisionRow;

/// With `FLOTILLA_TEST_FAULT=guard-worker` (debug builds), a chunk holding this panics
/// the worker that guards it.
const FAULT_MARK: &[u8] = b"flotilla-test-guard-panic";

pub(super) enum Job {
    Open(Box<OpenAttempt>),
    Chunk {
        attempt: AttemptKey,
        kind: StreamKind,
        data: Vec<u8>,
        ack: AckTo,
    },
    Close {
        attempt: AttemptKey,
        done: oneshot::Sender<()>,
    },
}

/// Gets a task's allowlist anew when the approvals changed.
pub(super) struct Refresh {
    pub generation: Arc<AtomicU64>,
    pub seen: u64,
    pub fetch: Box<dyn Fn() -> Option<Arc<Allowlist>> + Send>,
}

pub(super) struct OpenAttempt {
    pub attempt: AttemptKey,
    pub task: TaskId,
    pub handle: HandleId,
    pub attempt_no: u32,
    pub policy: Policy,
    pub engine: Arc<Engine>,
    pub secrets: Arc<TaskSecrets>,
    pub allow: Arc<Allowlist>,
    pub refresh: Refresh,
    pub fail_on_block: bool,
}

/// One stream (stdout or stderr) of an attempt.
struct Stream {
    kind: StreamKind,
    redactor: StreamRedactor,
    /// The start of a UTF-8 sequence cut by the chunk boundary.
    carry: Vec<u8>,
    /// When the redactor began holding bytes back.
    held_since: Option<Instant>,
}

impl Stream {
    fn held(&self) -> bool {
        self.redactor.held() > 0 || !self.carry.is_empty()
    }
}

struct Live {
    open: OpenAttempt,
    streams: [Stream; 2],
    /// The newest chunk whose bytes are not all released yet.
    pending_ack: Option<AckTo>,
    decisions: u64,
    blocked: bool,
}

struct Worker {
    log: FrameLog,
    writer: StoreWriter,
    counters: Arc<Counters>,
    on_block: OnBlock,
    live: HashMap<AttemptKey, Live>,
}

pub(super) fn spawn(
    i: usize,
    log: FrameLog,
    writer: StoreWriter,
    counters: Arc<Counters>,
    on_block: OnBlock,
) -> Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut worker = Worker {
        log,
        writer,
        counters,
        on_block,
        live: HashMap::new(),
    };
    let spawned = std::thread::Builder::new()
        .name(format!("guard-{i}"))
        .spawn(move || worker.run(rx));
    if let Err(e) = spawned {
        // Without a worker every chunk sent to it is dropped and never acknowledged: the
        // agents stall rather than leak, and the operator sees why.
        tracing::error!(error = %e, "guard worker thread did not start");
    }
    tx
}

impl Worker {
    fn run(&mut self, rx: Receiver<Job>) {
        let hold = Duration::from_millis(HOLD_MS);
        loop {
            let due = self
                .live
                .values()
                .flat_map(|l| l.streams.iter())
                .filter_map(|s| s.held_since)
                .min()
                .map(|t| t + hold);
            let job = match due {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let job = match job {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Some(job) = job {
                    self.handle(job);
                }
                self.flush_due(hold);
            }));
            if step.is_err() {
                self.restart();
            }
        }
    }

    /// Restarts the worker in place after a panic. The redaction state of the attempts
    /// it guarded is gone, and their output must not go on unguarded: each is stopped,
    /// and its task fails saying why. Attempts opened later are guarded as usual.
    fn restart(&mut self) {
        let lost: Vec<AttemptKey> = self.live.drain().map(|(k, _)| k).collect();
        GuardWorkerRestarted { attempts: &lost }.emit();
        for attempt in lost {
            (self.on_block)(
                attempt,
                "the guard worker redacting this attempt failed; the attempt was stopped rather than let its output through unguarded".into(),
            );
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Open(open) => {
                let stream = |kind| Stream {
                    kind,
                    redactor: StreamRedactor::new(open.engine.clone())
                        .with_policy(open.policy)
                        .with_secrets(open.secrets.clone())
                        .with_allowlist(open.allow.clone()),
                    carry: Vec::new(),
                    held_since: None,
                };
                let streams = [stream(StreamKind::Stdout), stream(StreamKind::Stderr)];
                self.live.insert(
                    open.attempt,
                    Live {
                        open: *open,
                        streams,
                        pending_ack: None,
                        decisions: 0,
                        blocked: false,
                    },
                );
            }
            Job::Chunk {
                attempt,
                kind,
                data,
                ack,
            } => self.chunk(attempt, kind, data, ack),
            Job::Close { attempt, done } => {
                self.close(attempt);
                let _ = done.send(());
            }
        }
    }

    fn chunk(&mut self, attempt: AttemptKey, kind: StreamKind, data: Vec<u8>, ack: AckTo) {
        self.counters
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if crate::lifeline::fault_injected("guard-worker")
            && data.windows(FAULT_MARK.len()).any(|w| w == FAULT_MARK)
        {
            panic!("injected fault: guard worker");
        }
        let Some(live) = self.live.get_mut(&attempt) else {
            // Not opened (the guard lost track): store nothing unguarded; the agent's
            // window stalls and the attempt is eventually lost and retried.
            tracing::error!(
                attempt,
                "output of an attempt the guard does not know dropped"
            );
            return;
        };
        refresh_allowlist(live);
        let mode = live.open.policy.mode;
        let at = if kind == StreamKind::Stderr { 1 } else { 0 };
        if mode != Mode::Enforce {
            // Off and shadow change nothing and delay nothing: the bytes go first.
            let text = (mode == Mode::Shadow).then(|| decode(&mut live.streams[at].carry, &data));
            self.append(attempt, kind, data, Some(ack));
            if let Some(text) = text {
                let Some(live) = self.live.get_mut(&attempt) else {
                    return;
                };
                let s = &mut live.streams[at];
                let (_, decisions) = s.redactor.push(&text);
                mark_held(s);
                self.decide(attempt, kind, decisions);
            }
            return;
        }
        let s = &mut live.streams[at];
        let text = decode(&mut s.carry, &data);
        let (out, decisions) = s.redactor.push(&text);
        mark_held(s);
        live.pending_ack = Some(ack);
        self.release(attempt, kind, out, decisions);
    }

    /// Appends what a redactor released (or a `guard` frame for a block), with the
    /// pending acknowledgement once nothing of the attempt is held any more.
    fn release(
        &mut self,
        attempt: AttemptKey,
        kind: StreamKind,
        out: String,
        decisions: Vec<Redaction>,
    ) {
        let block = decisions
            .iter()
            .find(|d| d.applied && d.action == Action::Block)
            .cloned();
        self.decide(attempt, kind, decisions);
        let Some(live) = self.live.get_mut(&attempt) else {
            return;
        };
        let ack = if live.streams.iter().any(Stream::held) {
            None
        } else {
            live.pending_ack.take()
        };
        match block {
            Some(b) => {
                let frame = serde_json::json!({
                    "action": "block",
                    "stream": kind.as_str(),
                    "rule": b.rule,
                    "kind": b.kind,
                    "digest": b.digest,
                    "start": b.start,
                    "end": b.end,
                });
                let first = !live.blocked;
                live.blocked = true;
                if first && live.open.fail_on_block {
                    GuardBlocked {
                        attempt,
                        rule: b.rule,
                        digest: &b.digest,
                        stream: kind.as_str(),
                    }
                    .emit();
                    (self.on_block)(
                        attempt,
                        format!(
                            "blocked by the privacy guard: {} ({}) in {}",
                            b.rule,
                            b.digest,
                            kind.as_str()
                        ),
                    );
                }
                self.append(
                    attempt,
                    StreamKind::Guard,
                    frame.to_string().into_bytes(),
                    ack,
                );
            }
            // Nothing to store and nothing held: an empty frame carries the
            // acknowledgement (the log writes no record for it), so that it is never
            // stranded waiting for output that may not come.
            None if !out.is_empty() || ack.is_some() => {
                self.append(attempt, kind, out.into_bytes(), ack)
            }
            None => {}
        }
    }

    fn append(&self, attempt: AttemptKey, kind: StreamKind, data: Vec<u8>, ack: Option<AckTo>) {
        let Some(live) = self.live.get(&attempt) else {
            return;
        };
        let append = Append {
            handle: live.open.handle.clone(),
            attempt: live.open.attempt_no,
            kind,
            data,
            ack,
        };
        if self.log.append_blocking(append).is_err() {
            tracing::error!(attempt, "frame log stopped; guarded output dropped");
        }
    }

    /// Records decisions: counted always, stored up to the per-attempt cap.
    fn decide(&mut self, attempt: AttemptKey, kind: StreamKind, decisions: Vec<Redaction>) {
        if decisions.is_empty() {
            return;
        }
        let Some(live) = self.live.get_mut(&attempt) else {
            return;
        };
        let mode = live.open.policy.mode.as_str();
        for d in &decisions {
            GuardDecided {
                attempt,
                rule: d.rule,
                kind: d.kind,
                action: d.action.as_str(),
                mode,
                applied: d.applied,
            }
            .emit();
        }
        let room = MAX_STORED_DECISIONS.saturating_sub(live.decisions as usize);
        live.decisions += decisions.len() as u64;
        let now = now_ms();
        let rows: Vec<DecisionRow> = decisions
            .into_iter()
            .take(room)
            .map(|d| DecisionRow {
                attempt_no: live.open.attempt_no,
                stream: kind.as_str(),
                rule: d.rule.to_owned(),
                kind: d.kind.to_owned(),
                action: d.action.as_str(),
                mode,
                applied: d.applied,
                digest: d.digest,
                start: d.start,
                end: d.end,
                allowed_by: d.allowed_by,
                ts_ms: now,
            })
            .collect();
        if !rows.is_empty() {
            record(
                &self.writer,
                &live.open.task,
                vec![Write::GuardDecisions {
                    task: live.open.task.clone(),
                    rows,
                }],
            );
        }
    }

    /// Releases partial tokens held longer than the hold-back bound.
    fn flush_due(&mut self, hold: Duration) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (key, live) in &self.live {
            for (i, s) in live.streams.iter().enumerate() {
                if s.held_since.is_some_and(|t| now.duration_since(t) >= hold) {
                    due.push((*key, i));
                }
            }
        }
        for (attempt, i) in due {
            self.flush(attempt, i, false);
        }
    }

    /// Releases one stream's held text: a partial token (`flush`), or everything at the
    /// end of the attempt (`finish`).
    fn flush(&mut self, attempt: AttemptKey, i: usize, finish: bool) {
        let Some(live) = self.live.get_mut(&attempt) else {
            return;
        };
        let s = &mut live.streams[i];
        let kind = s.kind;
        let tail = std::mem::take(&mut s.carry);
        let (mut out, mut decisions) = s.redactor.push(&String::from_utf8_lossy(&tail));
        let (more, more_decisions) = if finish {
            s.redactor.finish()
        } else {
            s.redactor.flush()
        };
        out.push_str(&more);
        decisions.extend(more_decisions);
        s.held_since = None;
        mark_held(s);
        if live.open.policy.mode == Mode::Enforce {
            self.release(attempt, kind, out, decisions);
        } else {
            self.decide(attempt, kind, decisions);
        }
    }

    fn close(&mut self, attempt: AttemptKey) {
        if !self.live.contains_key(&attempt) {
            return;
        }
        self.flush(attempt, 0, true);
        self.flush(attempt, 1, true);
        // The run was recorded with no decisions when it opened; only a count changes it.
        if let Some(live) = self.live.remove(&attempt).filter(|l| l.decisions > 0) {
            record(
                &self.writer,
                &live.open.task,
                vec![Write::GuardRunEnd {
                    task: live.open.task.clone(),
                    attempt_no: live.open.attempt_no,
                    decisions: live.decisions,
                }],
            );
        }
    }
}

/// Picks up approvals that changed since the attempt opened (a revocation applies at once).
fn refresh_allowlist(live: &mut Live) {
    let r = &mut live.open.refresh;
    let now = r.generation.load(Ordering::Acquire);
    if now == r.seen {
        return;
    }
    r.seen = now;
    if let Some(allow) = (r.fetch)() {
        for s in &mut live.streams {
            s.redactor.set_allowlist(allow.clone());
        }
    }
}

fn mark_held(s: &mut Stream) {
    if !s.held() {
        s.held_since = None;
    } else if s.held_since.is_none() {
        s.held_since = Some(Instant::now());
    }
}

/// Text of `carry` + `data`, keeping an incomplete trailing UTF-8 sequence in `carry`.
/// Invalid bytes become U+FFFD: the guard scans text, and enforce mode stores what it
/// scanned.
fn decode(carry: &mut Vec<u8>, data: &[u8]) -> String {
    let mut buf = std::mem::take(carry);
    buf.extend_from_slice(data);
    let keep = incomplete_tail(&buf);
    *carry = buf.split_off(buf.len() - keep);
    match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Length of a UTF-8 sequence at the end of `b` that has begun but not ended.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let byte = b[b.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for the lead
        }
        let want = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if want > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_a_chunk_boundary_is_kept_whole() {
        let text = "naïve café ✓ 𝄞 done";
        for cut in 0..=text.len() {
            let mut carry = Vec::new();
            let mut out = decode(&mut carry, &text.as_bytes()[..cut]);
            out.push_str(&decode(&mut carry, &text.as_bytes()[cut..]));
            assert_eq!(out, text, "cut at byte {cut}");
            assert!(carry.is_empty());
        }
        let mut carry = Vec::new();
        assert_eq!(
            decode(&mut carry, b"ok \xff\xfe end"),
            "ok \u{fffd}\u{fffd} end"
        );
    }
}
