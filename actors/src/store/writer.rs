//! StoreWriter: applies the dispatcher's writes in order, many per transaction.
//!
//! Owns the write side of the task and attempt tables after a task is accepted. The
//! dispatcher never waits on SQLite: it sends each change here and moves on; the writer
//! drains whatever has queued up, commits it as one transaction (group commit), and then
//! runs each change's follow-up — sealing a handle with its status frame, rewriting a
//! manifest — so an observer never sees a final status the store does not yet hold.
//! A crash loses at most the last uncommitted batch; recovery then requeues the affected
//! tasks, which execution being at-least-once allows.

use tokio::sync::mpsc;

use super::{
    end_attempt_in, end_guard_run_in, insert_checkpoint_in, insert_decisions_in, update_task_in,
    upsert_guard_run_in, AttemptEnd, Checkpoint, DecisionRow, GuardRunRow, Store, StoreError,
    TaskUpdate,
};
use crate::domain::{InstanceId, TaskId};
use crate::exec_handle::{Append, FrameLog};
use crate::health::StorageHealth;
use crate::lifeline::{fault_injected, Lifeline};
use crate::manifest::ManifestWriter;
use crate::protocol::AttemptKey;

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// One change to the store.
#[derive(Debug)]
pub enum Write {
    StartAttempt {
        key: AttemptKey,
        task: TaskId,
        attempt_no: u32,
        instance: InstanceId,
        now_ms: i64,
        lease_until_ms: i64,
    },
    /// An agent offered back an attempt that was lost meanwhile, and was told to kill
    /// it: the attempt is recorded as fenced, with a checkpoint on its task.
    FenceHeld {
        key: AttemptKey,
        instance: InstanceId,
        reason: String,
        now_ms: i64,
    },
    /// A heartbeat renewed the leases of running attempts: each until when.
    RenewLeases { leases: Vec<(AttemptKey, i64)> },
    /// An operator cordoned or drained an instance (`Some`), or ended that (`None`).
    Control {
        instance: InstanceId,
        control: Option<&'static str>,
        now_ms: i64,
    },
    EndAttempt {
        key: AttemptKey,
        end: AttemptEnd,
        now_ms: i64,
    },
    UpdateTask {
        task: TaskId,
        update: TaskUpdate,
        now_ms: i64,
    },
    /// The guard opened an attempt's streams.
    GuardRun { task: TaskId, run: GuardRunRow },
    GuardDecisions {
        task: TaskId,
        rows: Vec<DecisionRow>,
    },
    /// What recovery did to a task.
    Checkpoint {
        task: TaskId,
        checkpoint: Checkpoint,
    },
    /// An instance connected.
    SessionStart(super::SessionStart),
    /// An instance's connection `conn` was heard from, or ended (`left`).
    Session {
        instance: InstanceId,
        conn: u64,
        now_ms: i64,
        left: bool,
    },
    /// The guard closed an attempt after this many decisions (stored or not).
    GuardRunEnd {
        task: TaskId,
        attempt_no: u32,
        decisions: u64,
    },
}

/// What to do once a change is committed.
#[derive(Default)]
pub struct Then {
    /// Append this (a status frame) to the frame log.
    pub seal: Option<Append>,
    /// Rewrite this task's manifest.
    pub touch: Option<TaskId>,
    /// Anything else that must not happen before the commit (e.g. answering a client).
    pub after: Option<Box<dyn FnOnce() + Send>>,
}

#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<(Vec<Write>, Then)>,
}

/// First wait after a batch failed for a cause that may pass, and the longest.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

impl StoreWriter {
    /// Starts the writer task; `lifeline` reports its end and `health` hears of
    /// batches that fail for a cause that may pass (they are retried until they commit).
    pub fn start(
        store: Store,
        log: FrameLog,
        manifests: ManifestWriter,
        lifeline: Lifeline,
        health: StorageHealth,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _lifeline = lifeline;
            run(store, log, manifests, rx, health).await
        });
        Self { tx }
    }

    /// Queues `writes` (committed together, in order) and what follows them.
    pub fn send(&self, writes: Vec<Write>, then: Then) {
        if self.tx.send((writes, then)).is_err() {
            tracing::error!("store writer stopped; a change was not recorded");
        }
    }
}

async fn run(
    store: Store,
    log: FrameLog,
    manifests: ManifestWriter,
    mut rx: mpsc::UnboundedReceiver<(Vec<Write>, Then)>,
    health: StorageHealth,
) {
    let mut writes: Vec<Vec<Write>> = Vec::new();
    let mut thens: Vec<Then> = Vec::new();
    while let Some((w, t)) = rx.recv().await {
        writes.push(w);
        thens.push(t);
        while writes.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((w, t)) => {
                    writes.push(w);
                    thens.push(t);
                }
                Err(_) => break,
            }
        }
        if fault_injected("store-writer") {
            panic!("injected fault: store writer");
        }
        let mut committed = vec![true; writes.len()];
        let began = std::time::Instant::now();
        let mut result = commit(&store, &writes).await;
        // A full disk or an I/O error may pass: the batch waits and is retried whole, and
        // nothing after it (no status frame, no reply) happens before it commits.
        let mut wait = RETRY_FIRST;
        while let Err(e) = &result {
            if !e.transient() {
                break;
            }
            health.failing("store", e.to_string());
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
            result = commit(&store, &writes).await;
            if result.is_ok() {
                health.ok("store");
            }
        }
        tracing::debug!(
            changes = writes.len(),
            us = began.elapsed().as_micros() as u64,
            "store batch committed"
        );
        if let Err(e) = result {
            tracing::error!(error = %e, changes = writes.len(), "store batch failed; retrying one by one");
            for (item, ok) in writes.iter().zip(committed.iter_mut()) {
                if let Err(e) = commit(&store, std::slice::from_ref(item)).await {
                    tracing::error!(error = %e, writes = ?item, "change not recorded; what follows it is skipped");
                    *ok = false;
                }
            }
        }
        // A fenced held attempt names no task: its manifest is found by its key.
        let fenced: Vec<AttemptKey> = writes
            .iter()
            .flatten()
            .filter_map(|w| match w {
                Write::FenceHeld { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        for key in fenced {
            if let Ok(Some(task)) = store.task_of_attempt(key).await {
                manifests.touch(&task);
            }
        }
        writes.clear();
        for (then, ok) in thens.drain(..).zip(committed) {
            if !ok {
                // Nothing that must follow a commit may happen without it: no status
                // frame seals a handle whose final state the store lacks, and no client
                // hears of a change that was not recorded (its reply is dropped).
                continue;
            }
            if let Some(append) = then.seal {
                if let Err(e) = log.append(append).await {
                    tracing::error!(error = %e, "could not seal a handle");
                }
            }
            if let Some(task) = then.touch {
                manifests.touch(&task);
            }
            if let Some(after) = then.after {
                after();
            }
        }
    }
}

async fn commit(store: &Store, batch: &[Vec<Write>]) -> Result<(), StoreError> {
    if batch.iter().all(Vec::is_empty) {
        return Ok(()); // only follow-ups ordered behind earlier changes
    }
    // The transaction is ended explicitly whatever happens: a COMMIT that fails (a full
    // disk) leaves it open, and an open write transaction on a pooled connection would
    // lock every later writer out.
    let mut conn = store.pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = match apply(&mut conn, batch).await {
        Ok(()) => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(StoreError::from),
        Err(e) => Err(e),
    };
    if result.is_err() {
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
            tracing::debug!(error = %e, "rollback after a failed batch");
        }
    }
    result
}

async fn apply(tx: &mut sqlx::SqliteConnection, batch: &[Vec<Write>]) -> Result<(), StoreError> {
    for writes in batch {
        for w in writes {
            match w {
                Write::StartAttempt {
                    key,
                    task,
                    attempt_no,
                    instance,
                    now_ms,
                    lease_until_ms,
                } => {
                    let times = (*now_ms, *lease_until_ms);
                    super::start_attempt_in(tx, *key, task, *attempt_no, instance, times).await?
                }
                Write::RenewLeases { leases } => super::renew_leases_in(tx, leases).await?,
                Write::FenceHeld {
                    key,
                    instance,
                    reason,
                    now_ms,
                } => super::fence_held_in(tx, *key, instance, reason, *now_ms).await?,
                Write::Control {
                    instance,
                    control,
                    now_ms,
                } => super::set_control_in(tx, instance, *control, *now_ms).await?,
                Write::EndAttempt { key, end, now_ms } => {
                    end_attempt_in(tx, *key, end, *now_ms).await?
                }
                Write::UpdateTask {
                    task,
                    update,
                    now_ms,
                } => update_task_in(tx, task, update, *now_ms).await?,
                Write::GuardRun { task, run } => upsert_guard_run_in(tx, task, run).await?,
                Write::Checkpoint { task, checkpoint } => {
                    insert_checkpoint_in(tx, task, checkpoint).await?
                }
                Write::GuardDecisions { task, rows } => insert_decisions_in(tx, task, rows).await?,
                Write::GuardRunEnd {
                    task,
                    attempt_no,
                    decisions,
                } => end_guard_run_in(tx, task, *attempt_no, *decisions).await?,
                Write::SessionStart(start) => super::instances::start_session_in(tx, start).await?,
                Write::Session {
                    instance,
                    conn,
                    now_ms,
                    left,
                } => {
                    super::instances::touch_session_in(tx, instance, *conn, *now_ms, *left).await?
                }
            }
        }
    }
    Ok(())
}
