//! Dispatcher: owns the queue, the table of connected instances and the running attempts,
//! and decides which instance runs which task.
//!
//! Policy: an instance takes the oldest queued task whose required capabilities it offers
//! all of; among instances with a free slot the least loaded goes first. The dispatcher
//! never waits on the database: it hands every change to the [`StoreWriter`], which commits
//! them in order, many per transaction, and seals a handle only once its final state is
//! committed. A restart recovers from the store alone: queued tasks are queued again,
//! attempts that were running are marked lost and their tasks requeued.
//!
//! Supervision: a single task started by [`crate::engine::Engine::start`]; it only stops
//! when every sender is gone.

pub mod messages;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::control_plane::RunRequest;
use crate::domain::{now_ms, rfc3339_ms, Capability, InstanceId, TaskId, TaskState};
use crate::exec_handle::{Append, FrameLog};
use crate::guard::GuardSpec;
use crate::manifest::ManifestWriter;
use crate::protocol::{Assignment, AttemptKey, FinalStatus, Outcome, ServerMsg, StreamKind};
use crate::queue::{cap_set, unsatisfiable_reason, CapSet, Queue};
use crate::store::writer::{StoreWriter, Then, Write};
use crate::store::{AttemptEnd, AttemptState, Store, StoreError, TaskRow, TaskUpdate};
use messages::*;

/// The capabilities of each connected instance, shared read-mostly with the edges so a
/// submission can say at once why it will wait.
pub type Offers = Arc<RwLock<HashMap<InstanceId, BTreeSet<Capability>>>>;

/// True if some connected instance offers every capability in `caps`.
pub fn offered(offers: &Offers, caps: &CapSet) -> bool {
    let offers = offers.read().unwrap_or_else(|e| e.into_inner());
    offers.values().any(|o| caps.iter().all(|c| o.contains(c)))
}

/// A task that is queued or running.
struct LiveTask {
    row: TaskRow,
    request: RunRequest,
    caps: CapSet,
    /// Place in line, kept when an attempt is lost.
    seq: u64,
    attempt: Option<AttemptKey>,
    cancel_requested: bool,
    /// Set when flotilla stopped the attempt (the guard blocked it): the task fails so.
    failure: Option<String>,
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

/// How a task ends, to record.
struct Ending {
    state: TaskState,
    exit_code: Option<i32>,
    signal: Option<i32>,
    reason: Option<String>,
    /// The attempt that ended with it, if any.
    attempt: Option<(AttemptKey, AttemptEnd)>,
}

pub(crate) struct Dispatcher {
    store: Store,
    log: FrameLog,
    manifests: ManifestWriter,
    writer: StoreWriter,
    offers: Offers,
    /// The next attempt key to hand out (chosen here, recorded by the writer).
    next_key: AttemptKey,
    queue: Queue,
    tasks: HashMap<TaskId, LiveTask>,
    instances: HashMap<InstanceId, Instance>,
    attempts: HashMap<AttemptKey, LiveAttempt>,
    /// Capability sets that no connected instance offers (their tasks show why they wait).
    unsatisfiable: HashSet<CapSet>,
    next_conn: u64,
}

impl Dispatcher {
    pub(crate) fn new(
        store: Store,
        log: FrameLog,
        manifests: ManifestWriter,
        writer: StoreWriter,
        offers: Offers,
    ) -> Self {
        Self {
            store,
            log,
            manifests,
            writer,
            offers,
            next_key: 1,
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
        self.next_key = self.store.max_attempt_key().await? + 1;
        self.seal_finished().await?;
        let live = self.store.live_tasks().await?;
        let count = live.len();
        for mut row in live {
            self.log.create_handle(&row.handle);
            let request = match RunRequest::from_stored(&row.request) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(task = %row.id, error = %e, "stored request unreadable; task failed");
                    let reason = format!("stored request unreadable: {e}");
                    self.finish(&mut row, failed(reason, None), None);
                    continue;
                }
            };
            if row.state == TaskState::Running && row.attempts >= row.max_attempts {
                let reason = format!(
                    "attempt {} lost when the orchestrator restarted; no attempts left",
                    row.attempts
                );
                self.finish(&mut row, failed(reason, None), None);
                continue;
            }
            if row.state == TaskState::Running {
                let update = queued(format!(
                    "attempt {} lost when the orchestrator restarted; requeued",
                    row.attempts
                ));
                self.store.update_task(&row.id, &update, now).await?;
                row.state = TaskState::Queued;
                row.reason = update.reason;
            }
            self.manifests.touch(&row.id);
            self.enqueue(row, request);
        }
        Ok(count)
    }

    /// Appends the status frame of every finished task whose handle lacks one: a crash
    /// between committing a final state and sealing its handle must not leave observers
    /// waiting forever.
    async fn seal_finished(&mut self) -> Result<(), StoreError> {
        for row in self.store.finished_tasks().await? {
            let index = self.log.create_handle(&row.handle);
            if index.watermark().sealed {
                continue;
            }
            tracing::warn!(task = %row.id, "finished task's handle was not sealed; sealing it");
            let seal = status_frame(
                &row,
                FinalStatus {
                    state: row.state,
                    exit_code: row.exit_code,
                    signal: row.signal,
                    attempts: row.attempts,
                    reason: row.reason.clone(),
                },
            );
            if let Err(e) = self.log.append(seal).await {
                tracing::error!(task = %row.id, error = %e, "could not seal a handle");
            }
        }
        Ok(())
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
                failure: None,
            },
        );
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Enqueue(e) => self.enqueue_new(e.row, e.request),
                Cmd::Cancel(m) => self.cancel(m).await,
                Cmd::Connect(m) => self.connect(m),
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
                            self.exited(&instance, attempt, outcome)
                        }
                        FromInstance::Gone => self.gone(&instance),
                    }
                }
                Cmd::Instances(reply) => {
                    let _ = reply.send(self.instance_views());
                }
                Cmd::GuardBlock { attempt, reason } => self.guard_block(attempt, reason),
            }
            self.pump();
        }
    }

    /// A task the edge has just committed to the store joins the queue.
    fn enqueue_new(&mut self, row: TaskRow, request: RunRequest) {
        let caps = cap_set(&request.capabilities);
        let satisfiable = self.satisfiable(&caps);
        if !satisfiable {
            self.unsatisfiable.insert(caps.clone());
        }
        // The edge judged with the instances it saw; if that changed since, say so.
        if satisfiable == row.reason.is_some() {
            let update = TaskUpdate {
                reason: (!satisfiable).then(|| unsatisfiable_reason(&caps)),
                ..queued(String::new())
            };
            self.writer.send(
                vec![Write::UpdateTask {
                    task: row.id.clone(),
                    update,
                    now_ms: now_ms(),
                }],
                Then::default(),
            );
        }
        self.enqueue(row, request);
    }

    fn satisfiable(&self, caps: &CapSet) -> bool {
        self.instances
            .values()
            .any(|i| caps.iter().all(|c| i.caps.contains(c)))
    }

    /// Cancels a task. A queued one ends here, and the client hears so once that is
    /// committed; a running one is killed by its agent and ends when the agent says so.
    async fn cancel(&mut self, m: Cancel) {
        let task = &m.task;
        let Some(live) = self.tasks.get_mut(task) else {
            let result = match self.store.get_task(task).await {
                Ok(Some(row)) => Err(CancelError::Finished {
                    task: task.clone(),
                    state: row.state,
                }),
                Ok(None) => Err(CancelError::NotFound(task.clone())),
                Err(e) => Err(CancelError::Store(e)),
            };
            let _ = m.reply.send(result);
            return;
        };
        live.cancel_requested = true;
        if let Some(attempt) = live.attempt {
            if let Some(inst) = self
                .attempts
                .get(&attempt)
                .and_then(|a| self.instances.get(&a.instance))
            {
                send_in_order(&self.writer, &inst.session, ServerMsg::Cancel { attempt });
            }
            tracing::info!(task = %task, attempt, "cancel sent to the agent");
            let _ = m.reply.send(Ok(CancelOutcome::Cancelling));
            return;
        }
        let caps = live.caps.clone();
        self.queue.remove(task, &caps);
        if let Some(mut live) = self.tasks.remove(task) {
            let ending = Ending {
                state: TaskState::Cancelled,
                exit_code: None,
                signal: None,
                reason: Some("cancelled while queued".to_owned()),
                attempt: None,
            };
            let reply = m.reply;
            let after: Box<dyn FnOnce() + Send> = Box::new(move || {
                let _ = reply.send(Ok(CancelOutcome::Cancelled));
            });
            self.finish(&mut live.row, ending, Some(after));
        }
    }

    fn connect(&mut self, m: Connect) {
        if self.instances.contains_key(&m.instance) {
            tracing::warn!(instance = %m.instance, "instance reconnected; its old connection is dropped");
            self.gone(&m.instance);
        }
        self.next_conn += 1;
        let conn = self.next_conn;
        tracing::info!(instance = %m.instance, slots = m.slots, pid = m.pid, "instance connected");
        self.offers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.instance.clone(), m.capabilities.clone());
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
        self.refresh_reasons();
    }

    /// An instance disconnected: each attempt it ran is lost; its task is requeued at its
    /// old place in line, or fails once it has used all its attempts.
    fn gone(&mut self, instance: &InstanceId) {
        let Some(inst) = self.instances.remove(instance) else {
            return;
        };
        self.offers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
        tracing::warn!(instance = %instance, running = inst.running.len(), "instance gone");
        for attempt in inst.running {
            let Some(a) = self.attempts.remove(&attempt) else {
                continue;
            };
            let Some(mut live) = self.tasks.remove(&a.task) else {
                continue;
            };
            live.attempt = None;
            let end = AttemptEnd {
                state: AttemptState::Lost,
                exit_code: None,
                signal: None,
                detail: Some(format!("instance {instance} disconnected")),
            };
            let n = live.row.attempts;
            if live.cancel_requested {
                let ending = Ending {
                    state: TaskState::Cancelled,
                    exit_code: None,
                    signal: None,
                    reason: Some(format!(
                        "cancelled; attempt {n} lost with instance {instance}"
                    )),
                    attempt: Some((attempt, end)),
                };
                self.finish(&mut live.row, ending, None);
            } else if n >= live.row.max_attempts {
                let reason = format!(
                    "attempt {n} lost with instance {instance}; no attempts left (max {})",
                    live.row.max_attempts
                );
                self.finish(&mut live.row, failed(reason, Some((attempt, end))), None);
            } else {
                let update = queued(format!(
                    "attempt {n} lost with instance {instance}; requeued"
                ));
                let now = now_ms();
                self.writer.send(
                    vec![
                        Write::EndAttempt {
                            key: attempt,
                            end,
                            now_ms: now,
                        },
                        Write::UpdateTask {
                            task: live.row.id.clone(),
                            update,
                            now_ms: now,
                        },
                    ],
                    Then {
                        touch: Some(live.row.id.clone()),
                        ..Then::default()
                    },
                );
                tracing::info!(task = %live.row.id, attempt = n, "task requeued after a lost attempt");
                live.row.state = TaskState::Queued;
                self.queue
                    .requeue(live.row.id.clone(), live.caps.clone(), live.seq);
                self.tasks.insert(live.row.id.clone(), live);
            }
        }
        self.refresh_reasons();
    }

    /// The guard blocked an attempt's output: the agent kills it, and the task fails
    /// with the guard's reason rather than as cancelled. No retry: it would print the same.
    fn guard_block(&mut self, attempt: AttemptKey, reason: String) {
        let Some(a) = self.attempts.get(&attempt) else {
            return;
        };
        let Some(live) = self.tasks.get_mut(&a.task) else {
            return;
        };
        tracing::warn!(task = %a.task, attempt, reason = %reason, "stopping a task the guard blocked");
        live.failure.get_or_insert(reason);
        live.cancel_requested = true;
        if let Some(inst) = self.instances.get(&a.instance) {
            send_in_order(&self.writer, &inst.session, ServerMsg::Cancel { attempt });
        }
    }

    fn exited(&mut self, instance: &InstanceId, attempt: AttemptKey, outcome: Outcome) {
        if self.attempts.get(&attempt).map(|a| &a.instance) != Some(instance) {
            tracing::warn!(attempt, instance = %instance, "exit of an attempt this instance does not run ignored");
            return;
        }
        let Some(a) = self.attempts.remove(&attempt) else {
            return;
        };
        if let Some(inst) = self.instances.get_mut(instance) {
            inst.running.remove(&attempt);
        }
        let Some(mut live) = self.tasks.remove(&a.task) else {
            return;
        };
        let (astate, mut state, code, signal, mut reason) = match outcome {
            // A process that ended on its own before a cancel reached it keeps its outcome:
            // the agent reports `Cancelled` only when it did the killing.
            Outcome::Exited { code: Some(0), .. } => (
                AttemptState::Exited,
                TaskState::Succeeded,
                Some(0),
                None,
                None,
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
                None,
                Some("timeout expired; process group killed".to_owned()),
            ),
            Outcome::Cancelled => (
                AttemptState::Cancelled,
                TaskState::Cancelled,
                None,
                None,
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
        if let Some(why) = live.failure.take() {
            state = TaskState::Failed;
            reason = Some(why);
        }
        let end = AttemptEnd {
            state: astate,
            exit_code: code,
            signal,
            detail: reason.clone(),
        };
        let ending = Ending {
            state,
            exit_code: code,
            signal,
            reason,
            attempt: Some((attempt, end)),
        };
        self.finish(&mut live.row, ending, None);
    }

    /// Records a task's final state (with the end of its last attempt, in one
    /// transaction); once committed, its status frame seals the handle.
    fn finish(
        &mut self,
        row: &mut TaskRow,
        ending: Ending,
        after: Option<Box<dyn FnOnce() + Send>>,
    ) {
        let now = now_ms();
        let mut writes = Vec::with_capacity(2);
        if let Some((key, end)) = ending.attempt {
            writes.push(Write::EndAttempt {
                key,
                end,
                now_ms: now,
            });
        }
        writes.push(Write::UpdateTask {
            task: row.id.clone(),
            update: TaskUpdate {
                state: ending.state,
                exit_code: ending.exit_code,
                signal: ending.signal,
                reason: ending.reason.clone(),
            },
            now_ms: now,
        });
        tracing::info!(task = %row.id, state = %ending.state, exit_code = ?ending.exit_code, "task finished");
        let seal = status_frame(
            row,
            FinalStatus {
                state: ending.state,
                exit_code: ending.exit_code,
                signal: ending.signal,
                attempts: row.attempts,
                reason: ending.reason,
            },
        );
        row.state = ending.state;
        self.writer.send(
            writes,
            Then {
                seal: Some(seal),
                touch: Some(row.id.clone()),
                after,
            },
        );
    }

    /// Assigns queued tasks to free slots until no more fit: the least loaded free
    /// instance that can run the oldest task it covers goes first.
    fn pump(&mut self) {
        'outer: while !self.queue.is_empty() {
            let mut free: Vec<InstanceId> = self
                .instances
                .iter()
                .filter(|(_, i)| (i.running.len() as u32) < i.slots)
                .map(|(id, _)| id.clone())
                .collect();
            free.sort_by(|a, b| self.load(a).cmp(&self.load(b)));
            for id in free {
                if let Some((task, _)) = self.queue.pop_for(&self.instances[&id].caps) {
                    self.assign(task, id);
                    continue 'outer;
                }
            }
            return;
        }
    }

    fn load<'a>(&self, id: &'a InstanceId) -> (u64, &'a InstanceId) {
        let i = &self.instances[id];
        // Running per slot, as a fixed-point fraction, then id for a stable order.
        (
            (i.running.len() as u64 * 1024) / u64::from(i.slots.max(1)),
            id,
        )
    }

    fn assign(&mut self, task: TaskId, instance: InstanceId) {
        let Some(live) = self.tasks.get_mut(&task) else {
            return;
        };
        let key = self.next_key;
        self.next_key += 1;
        let attempt_no = live.row.attempts + 1;
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
            guard: GuardSpec {
                level: req.privacy(),
                secret_env: req.secret_env.clone(),
            },
        };
        self.attempts.insert(
            key,
            LiveAttempt {
                task: task.clone(),
                instance: instance.clone(),
            },
        );
        let Some(inst) = self.instances.get_mut(&instance) else {
            return;
        };
        inst.running.insert(key);
        // The attempt is on record before the agent hears of it: every execution that
        // happens is a recorded attempt, even if the server dies a moment later.
        let session = inst.session.clone();
        self.writer.send(
            vec![Write::StartAttempt {
                key,
                task: task.clone(),
                attempt_no,
                instance: instance.clone(),
                now_ms: now_ms(),
            }],
            Then {
                touch: Some(task.clone()),
                after: Some(Box::new(move || {
                    let _ = session.send(ServerMsg::Assign(assignment));
                })),
                ..Then::default()
            },
        );
        tracing::info!(task = %task, attempt = attempt_no, instance = %instance, "task dispatched");
    }

    /// Updates the visible reason of queued tasks whose capability set became
    /// (un)satisfiable when an instance joined or left.
    fn refresh_reasons(&mut self) {
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
                    reason: unsat.then(|| unsatisfiable_reason(&caps)),
                    ..queued(String::new())
                };
                self.writer.send(
                    vec![Write::UpdateTask {
                        task: task.clone(),
                        update,
                        now_ms: now_ms(),
                    }],
                    Then {
                        touch: Some(task),
                        ..Then::default()
                    },
                );
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

/// Sends `msg` to an agent once every change queued before it is committed. Assignments
/// go out only after their attempt is recorded, so a cancel sent straight away could
/// overtake the assignment it cancels; queued behind it on the writer, it cannot.
fn send_in_order(writer: &StoreWriter, session: &mpsc::UnboundedSender<ServerMsg>, msg: ServerMsg) {
    let session = session.clone();
    writer.send(
        Vec::new(),
        Then {
            after: Some(Box::new(move || {
                let _ = session.send(msg);
            })),
            ..Then::default()
        },
    );
}

/// The frame that ends a task's handle.
fn status_frame(row: &TaskRow, status: FinalStatus) -> Append {
    Append {
        handle: row.handle.clone(),
        attempt: row.attempts,
        kind: StreamKind::Status,
        // unwrap: FinalStatus is plain data and always serialises.
        data: serde_json::to_vec(&status).unwrap(),
        ack: None,
    }
}

/// A queued task's state with the reason it waits.
fn queued(reason: String) -> TaskUpdate {
    TaskUpdate {
        state: TaskState::Queued,
        exit_code: None,
        signal: None,
        reason: Some(reason),
    }
}

/// A failure without an exit status.
fn failed(reason: String, attempt: Option<(AttemptKey, AttemptEnd)>) -> Ending {
    Ending {
        state: TaskState::Failed,
        exit_code: None,
        signal: None,
        reason: Some(reason),
        attempt,
    }
}

#[cfg(test)]
mod tests;
