//! Dispatcher: owns the queue, the table of connected instances and the running attempts,
//! and decides which instance runs which task.
//!
//! Policy: an instance takes the oldest queued task whose required capabilities it offers
//! all of; among instances with a free slot the least loaded goes first. Every decision is
//! committed to the store before it is acted on (an assignment is recorded before the agent
//! hears of it), so a restart of the server recovers from the store alone: queued tasks are
//! queued again, running attempts are marked lost and their tasks requeued.
//!
//! Supervision: a single task started by [`crate::engine::Engine::start`]; it only stops
//! when every sender is gone. A store error fails the one operation, never the actor.

pub mod messages;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Not;

use tokio::sync::mpsc;

use crate::control_plane::RunRequest;
use crate::domain::{
    now_ms, rfc3339_ms, Capability, HandleId, InstanceId, RunId, TaskId, TaskState,
};
use crate::exec_handle::{Append, FrameLog};
use crate::manifest::ManifestWriter;
use crate::protocol::{Assignment, AttemptKey, FinalStatus, Outcome, ServerMsg, StreamKind};
use crate::queue::{cap_set, CapSet, Queue};
use crate::store::{AttemptEnd, AttemptState, Store, StoreError, TaskRow, TaskUpdate};
use messages::*;

/// A task that is queued or running.
struct LiveTask {
    row: TaskRow,
    request: RunRequest,
    caps: CapSet,
    /// Place in line, kept when an attempt is lost.
    seq: u64,
    attempt: Option<AttemptKey>,
    cancel_requested: bool,
}

struct Instance {
    caps: BTreeSet<Capability>,
    slots: u32,
    running: HashSet<AttemptKey>,
    session: mpsc::UnboundedSender<ServerMsg>,
    conn: u64,
    pid: u32,
    connected_ms: i64,
}

struct LiveAttempt {
    task: TaskId,
    instance: InstanceId,
}

pub(crate) struct Dispatcher {
    store: Store,
    log: FrameLog,
    manifests: ManifestWriter,
    queue: Queue,
    tasks: HashMap<TaskId, LiveTask>,
    instances: HashMap<InstanceId, Instance>,
    attempts: HashMap<AttemptKey, LiveAttempt>,
    /// Capability sets that no connected instance offers (their tasks show why they wait).
    unsatisfiable: HashSet<CapSet>,
    next_conn: u64,
}

fn unsatisfiable_reason(caps: &CapSet) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.as_str()).collect();
    format!(
        "waiting: no connected instance offers all of [{}]",
        names.join(", ")
    )
}

impl Dispatcher {
    pub(crate) fn new(store: Store, log: FrameLog, manifests: ManifestWriter) -> Self {
        Self {
            store,
            log,
            manifests,
            queue: Queue::default(),
            tasks: HashMap::new(),
            instances: HashMap::new(),
            attempts: HashMap::new(),
            unsatisfiable: HashSet::new(),
            next_conn: 0,
        }
    }

    /// Rebuilds the queue from the store after a start: nothing runs yet, so every open
    /// attempt is lost and its task is queued again (or fails if out of attempts).
    pub(crate) async fn recover(&mut self) -> Result<usize, StoreError> {
        let now = now_ms();
        self.store.lose_open_attempts(now).await?;
        let live = self.store.live_tasks().await?;
        let count = live.len();
        for mut row in live {
            self.log.create_handle(&row.handle);
            let request: RunRequest = match serde_json::from_str(&row.request) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(task = %row.id, error = %e, "stored request unreadable; task failed");
                    let reason = format!("stored request unreadable: {e}");
                    self.finish(&mut row, TaskState::Failed, None, None, Some(reason))
                        .await;
                    continue;
                }
            };
            if row.state == TaskState::Running && row.attempts >= row.max_attempts {
                let reason = format!(
                    "attempt {} lost when the orchestrator restarted; no attempts left",
                    row.attempts
                );
                self.finish(&mut row, TaskState::Failed, None, None, Some(reason))
                    .await;
                continue;
            }
            if row.state == TaskState::Running {
                let update = TaskUpdate {
                    state: TaskState::Queued,
                    exit_code: None,
                    signal: None,
                    reason: Some(format!(
                        "attempt {} lost when the orchestrator restarted; requeued",
                        row.attempts
                    )),
                };
                self.store.update_task(&row.id, &update, now).await?;
                row.state = TaskState::Queued;
                row.reason = update.reason;
            }
            self.manifests.touch(&row.id);
            self.enqueue(row, request);
        }
        Ok(count)
    }

    fn enqueue(&mut self, row: TaskRow, request: RunRequest) {
        let caps = cap_set(&request.capabilities);
        let seq = self.queue.push(row.id.clone(), caps.clone());
        self.tasks.insert(
            row.id.clone(),
            LiveTask {
                row,
                request,
                caps,
                seq,
                attempt: None,
                cancel_requested: false,
            },
        );
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Submit(m) => {
                    let result = self.submit(m.request).await;
                    let _ = m.reply.send(result);
                }
                Cmd::Cancel(m) => {
                    let result = self.cancel(&m.task).await;
                    let _ = m.reply.send(result);
                }
                Cmd::Connect(m) => self.connect(m).await,
                Cmd::Instance {
                    instance,
                    conn,
                    msg,
                } => {
                    let current = self.instances.get(&instance).map(|i| i.conn);
                    if current != Some(conn) {
                        continue; // a message from a connection that was replaced
                    }
                    match msg {
                        FromInstance::Started { attempt, pid } => {
                            tracing::debug!(attempt, pid, instance = %instance, "attempt started");
                        }
                        FromInstance::Exited { attempt, outcome } => {
                            self.exited(&instance, attempt, outcome).await
                        }
                        FromInstance::Gone => self.gone(&instance).await,
                    }
                }
                Cmd::Instances(reply) => {
                    let _ = reply.send(self.instance_views());
                }
            }
            self.pump().await;
        }
    }

    async fn submit(&mut self, request: RunRequest) -> Result<TaskRow, SubmitError> {
        let now = now_ms();
        let caps = cap_set(&request.capabilities);
        let reason = self
            .satisfiable(&caps)
            .not()
            .then(|| unsatisfiable_reason(&caps));
        if reason.is_some() {
            self.unsatisfiable.insert(caps);
        }
        let row = TaskRow {
            id: request.id.clone().unwrap_or_else(TaskId::generate),
            handle: HandleId::generate(),
            run_id: RunId::generate(),
            // unwrap: a RunRequest is plain data and always serialises.
            request: serde_json::to_string(&request).unwrap(),
            state: TaskState::Queued,
            attempts: 0,
            max_attempts: request.max_attempts(),
            instance: None,
            exit_code: None,
            signal: None,
            reason,
            created_ms: now,
            updated_ms: now,
            finished_ms: None,
        };
        if self.tasks.contains_key(&row.id) {
            return Err(SubmitError::Duplicate(row.id));
        }
        self.store.insert_task(&row).await.map_err(|e| match e {
            StoreError::Duplicate(id) => SubmitError::Duplicate(id),
            e => SubmitError::Store(e),
        })?;
        self.log.create_handle(&row.handle);
        self.manifests.touch(&row.id);
        tracing::info!(task = %row.id, handle = %row.handle, "task accepted");
        self.enqueue(row.clone(), request);
        Ok(row)
    }

    fn satisfiable(&self, caps: &CapSet) -> bool {
        self.instances
            .values()
            .any(|i| caps.iter().all(|c| i.caps.contains(c)))
    }

    async fn cancel(&mut self, task: &TaskId) -> Result<CancelOutcome, CancelError> {
        let Some(live) = self.tasks.get_mut(task) else {
            return match self.store.get_task(task).await {
                Ok(Some(row)) => Err(CancelError::Finished {
                    task: task.clone(),
                    state: row.state,
                }),
                Ok(None) => Err(CancelError::NotFound(task.clone())),
                Err(e) => Err(CancelError::Store(e)),
            };
        };
        live.cancel_requested = true;
        if let Some(attempt) = live.attempt {
            if let Some(inst) = self
                .attempts
                .get(&attempt)
                .and_then(|a| self.instances.get(&a.instance))
            {
                let _ = inst.session.send(ServerMsg::Cancel { attempt });
            }
            tracing::info!(task = %task, attempt, "cancel sent to the agent");
            return Ok(CancelOutcome::Cancelling);
        }
        let caps = live.caps.clone();
        self.queue.remove(task, &caps);
        if let Some(mut live) = self.tasks.remove(task) {
            let reason = Some("cancelled while queued".to_owned());
            self.finish(&mut live.row, TaskState::Cancelled, None, None, reason)
                .await;
        }
        Ok(CancelOutcome::Cancelled)
    }

    async fn connect(&mut self, m: Connect) {
        if self.instances.contains_key(&m.instance) {
            tracing::warn!(instance = %m.instance, "instance reconnected; its old connection is dropped");
            self.gone(&m.instance).await;
        }
        self.next_conn += 1;
        let conn = self.next_conn;
        tracing::info!(instance = %m.instance, slots = m.slots, pid = m.pid, "instance connected");
        self.instances.insert(
            m.instance,
            Instance {
                caps: m.capabilities,
                slots: m.slots,
                running: HashSet::new(),
                session: m.session,
                conn,
                pid: m.pid,
                connected_ms: now_ms(),
            },
        );
        let _ = m.reply.send(conn);
        self.refresh_reasons().await;
    }

    /// An instance disconnected: each attempt it ran is lost; its task is requeued at its
    /// old place in line, or fails once it has used all its attempts.
    async fn gone(&mut self, instance: &InstanceId) {
        let Some(inst) = self.instances.remove(instance) else {
            return;
        };
        tracing::warn!(instance = %instance, running = inst.running.len(), "instance gone");
        let now = now_ms();
        for attempt in inst.running {
            let Some(a) = self.attempts.remove(&attempt) else {
                continue;
            };
            let end = AttemptEnd {
                state: AttemptState::Lost,
                exit_code: None,
                signal: None,
                detail: Some(format!("instance {instance} disconnected")),
            };
            if let Err(e) = self.store.end_attempt(attempt, &end, now).await {
                tracing::error!(attempt, error = %e, "could not record a lost attempt");
            }
            let Some(mut live) = self.tasks.remove(&a.task) else {
                continue;
            };
            live.attempt = None;
            let n = live.row.attempts;
            if live.cancel_requested {
                let reason = Some(format!(
                    "cancelled; attempt {n} lost with instance {instance}"
                ));
                self.finish(&mut live.row, TaskState::Cancelled, None, None, reason)
                    .await;
            } else if n >= live.row.max_attempts {
                let reason = Some(format!(
                    "attempt {n} lost with instance {instance}; no attempts left (max {})",
                    live.row.max_attempts
                ));
                self.finish(&mut live.row, TaskState::Failed, None, None, reason)
                    .await;
            } else {
                let update = TaskUpdate {
                    state: TaskState::Queued,
                    exit_code: None,
                    signal: None,
                    reason: Some(format!(
                        "attempt {n} lost with instance {instance}; requeued"
                    )),
                };
                if let Err(e) = self.store.update_task(&live.row.id, &update, now).await {
                    tracing::error!(task = %live.row.id, error = %e, "could not record a requeue");
                }
                tracing::info!(task = %live.row.id, attempt = n, "task requeued after a lost attempt");
                self.manifests.touch(&live.row.id);
                live.row.state = TaskState::Queued;
                self.queue
                    .requeue(live.row.id.clone(), live.caps.clone(), live.seq);
                self.tasks.insert(live.row.id.clone(), live);
            }
        }
        self.refresh_reasons().await;
    }

    async fn exited(&mut self, instance: &InstanceId, attempt: AttemptKey, outcome: Outcome) {
        let Some(a) = self.attempts.remove(&attempt) else {
            tracing::warn!(attempt, "exit of an unknown attempt ignored");
            return;
        };
        if let Some(inst) = self.instances.get_mut(instance) {
            inst.running.remove(&attempt);
        }
        let Some(mut live) = self.tasks.remove(&a.task) else {
            return;
        };
        let (astate, state, code, signal, reason) = match outcome {
            Outcome::Exited { code: Some(0), .. } if !live.cancel_requested => (
                AttemptState::Exited,
                TaskState::Succeeded,
                Some(0),
                None,
                None,
            ),
            Outcome::Exited { code, signal } if live.cancel_requested => (
                AttemptState::Cancelled,
                TaskState::Cancelled,
                code,
                signal,
                Some("cancelled".to_owned()),
            ),
            Outcome::Exited { code, signal } => {
                let why = match (code, signal) {
                    (_, Some(s)) => format!("killed by signal {s}"),
                    (Some(c), None) => format!("exited with status {c}"),
                    (None, None) => "ended without a status".to_owned(),
                };
                (
                    AttemptState::Exited,
                    TaskState::Failed,
                    code,
                    signal,
                    Some(why),
                )
            }
            Outcome::TimedOut => (
                AttemptState::TimedOut,
                TaskState::TimedOut,
                None,
                Some(libc::SIGKILL),
                Some("timeout expired; process group killed".to_owned()),
            ),
            Outcome::Cancelled => (
                AttemptState::Cancelled,
                TaskState::Cancelled,
                None,
                Some(libc::SIGKILL),
                Some("cancelled".to_owned()),
            ),
            Outcome::SpawnFailed { message } => (
                AttemptState::SpawnFailed,
                TaskState::Failed,
                None,
                None,
                Some(format!("could not start: {message}")),
            ),
        };
        let end = AttemptEnd {
            state: astate,
            exit_code: code,
            signal,
            detail: reason.clone(),
        };
        if let Err(e) = self.store.end_attempt(attempt, &end, now_ms()).await {
            tracing::error!(attempt, error = %e, "could not record an attempt's end");
        }
        self.finish(&mut live.row, state, code, signal, reason)
            .await;
    }

    /// Records a task's final state, then appends its status frame (sealing the handle).
    async fn finish(
        &mut self,
        row: &mut TaskRow,
        state: TaskState,
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<String>,
    ) {
        let update = TaskUpdate {
            state,
            exit_code,
            signal,
            reason: reason.clone(),
        };
        if let Err(e) = self.store.update_task(&row.id, &update, now_ms()).await {
            tracing::error!(task = %row.id, error = %e, "could not record a final state");
        }
        tracing::info!(task = %row.id, state = %state, ?exit_code, "task finished");
        let status = FinalStatus {
            state,
            exit_code,
            signal,
            attempts: row.attempts,
            reason,
        };
        let append = Append {
            handle: row.handle.clone(),
            attempt: row.attempts,
            kind: StreamKind::Status,
            // unwrap: FinalStatus is plain data and always serialises.
            data: serde_json::to_vec(&status).unwrap(),
            ack: None,
        };
        if let Err(e) = self.log.append(append).await {
            tracing::error!(task = %row.id, error = %e, "could not seal the handle");
        }
        row.state = state;
        self.manifests.touch(&row.id);
    }

    /// Assigns queued tasks to free slots until no more fit: the least loaded free
    /// instance that can run the oldest task it covers goes first.
    async fn pump(&mut self) {
        'outer: while !self.queue.is_empty() {
            let mut free: Vec<InstanceId> = self
                .instances
                .iter()
                .filter(|(_, i)| (i.running.len() as u32) < i.slots)
                .map(|(id, _)| id.clone())
                .collect();
            free.sort_by_key(|id| self.load(id));
            for id in free {
                if let Some((task, _)) = self.queue.pop_for(&self.instances[&id].caps) {
                    self.assign(task, id).await;
                    continue 'outer;
                }
            }
            return;
        }
    }

    fn load(&self, id: &InstanceId) -> (u64, InstanceId) {
        let i = &self.instances[id];
        // Running per slot, as a fixed-point fraction, then id for a stable order.
        (
            (i.running.len() as u64 * 1024) / u64::from(i.slots.max(1)),
            id.clone(),
        )
    }

    async fn assign(&mut self, task: TaskId, instance: InstanceId) {
        let Some(live) = self.tasks.get_mut(&task) else {
            return;
        };
        let attempt_no = live.row.attempts + 1;
        let key = match self
            .store
            .start_attempt(&task, attempt_no, &instance, now_ms())
            .await
        {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(task = %task, error = %e, "could not record an attempt; task stays queued");
                self.queue.requeue(task, live.caps.clone(), live.seq);
                return;
            }
        };
        live.row.attempts = attempt_no;
        live.row.state = TaskState::Running;
        live.row.instance = Some(instance.clone());
        live.attempt = Some(key);
        let req = &live.request;
        let assignment = Assignment {
            attempt: key,
            task: task.clone(),
            handle: live.row.handle.clone(),
            attempt_no,
            argv: req.argv.clone(),
            env: req
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: req.cwd.clone(),
            timeout_ms: req.timeout_seconds.map(|s| s * 1000),
        };
        self.attempts.insert(
            key,
            LiveAttempt {
                task: task.clone(),
                instance: instance.clone(),
            },
        );
        if let Some(inst) = self.instances.get_mut(&instance) {
            inst.running.insert(key);
            let _ = inst.session.send(ServerMsg::Assign(assignment));
        }
        tracing::info!(task = %task, attempt = attempt_no, instance = %instance, "task dispatched");
        self.manifests.touch(&task);
    }

    /// Updates the visible reason of queued tasks whose capability set became
    /// (un)satisfiable when an instance joined or left.
    async fn refresh_reasons(&mut self) {
        let offers: Vec<BTreeSet<Capability>> =
            self.instances.values().map(|i| i.caps.clone()).collect();
        let now_unsat: HashSet<CapSet> = self.queue.unsatisfiable(&offers).cloned().collect();
        let changed: Vec<(CapSet, bool)> = now_unsat
            .symmetric_difference(&self.unsatisfiable)
            .map(|c| (c.clone(), now_unsat.contains(c)))
            .collect();
        for (caps, unsat) in changed {
            let tasks: Vec<TaskId> = self.queue.tasks_in(&caps).cloned().collect();
            for task in tasks {
                let update = TaskUpdate {
                    state: TaskState::Queued,
                    exit_code: None,
                    signal: None,
                    reason: unsat.then(|| unsatisfiable_reason(&caps)),
                };
                if let Err(e) = self.store.update_task(&task, &update, now_ms()).await {
                    tracing::error!(task = %task, error = %e, "could not record a wait reason");
                }
            }
        }
        self.unsatisfiable = now_unsat;
    }

    fn instance_views(&self) -> Vec<InstanceView> {
        let mut views: Vec<InstanceView> = self
            .instances
            .iter()
            .map(|(id, i)| InstanceView {
                id: id.clone(),
                capabilities: i.caps.iter().cloned().collect(),
                slots: i.slots,
                running: i
                    .running
                    .iter()
                    .filter_map(|k| self.attempts.get(k).map(|a| a.task.clone()))
                    .collect(),
                pid: i.pid,
                connected_at: rfc3339_ms(i.connected_ms),
            })
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }
}
