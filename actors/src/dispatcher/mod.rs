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

pub mod honoured;
pub mod messages;
pub mod placement;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::control_plane::RunRequest;
use crate::domain::{now_ms, rfc3339_ms, Capability, InstanceId, TaskId, TaskState};
use crate::exec_handle::{Append, FrameLog};
use crate::fleet::FleetSettings;
use crate::guard::GuardSpec;
use crate::lifeline::fault_injected;
use crate::manifest::ManifestWriter;
use crate::protocol::{
    Assignment, AttemptKey, FinalStatus, HeldAttempt, Outcome, ServerMsg, StreamKind,
};
use crate::queue::{cap_set, unsatisfiable_reason, CapSet, Queue};
use crate::store::writer::{StoreWriter, Then, Write};
use crate::store::{AttemptEnd, AttemptState, Store, StoreError, TaskRow, TaskUpdate};
use messages::*;
use placement::{cooldown_ms, limited, rank, Load, SchedulerSettings};

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
    /// When it last said anything. One that missed a heartbeat gets no new work: it may
    /// be hung, and its lease is about to run out.
    last_heard_ms: i64,
}

struct LiveAttempt {
    task: TaskId,
    instance: InstanceId,
    /// The attempt is lost unless its instance reports it running before this time.
    lease_until_ms: i64,
    /// How far each heartbeat that lists it moves the lease on.
    lease_ms: i64,
    /// Recovered at start and waiting for its agent to re-attach it.
    orphan: bool,
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

/// The settings the dispatcher schedules by.
pub(crate) struct Rules {
    pub fleet: FleetSettings,
    pub scheduler: SchedulerSettings,
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
    fleet: FleetSettings,
    /// Attempts recovered at start that no agent has re-attached yet.
    orphans: usize,
    /// Instances that went silent, for whoever supervises them.
    suspects: tokio::sync::broadcast::Sender<InstanceId>,
    scheduler: SchedulerSettings,
    /// Lost attempts in a row per instance, and until when it cools down (it survives a
    /// reconnect: a flapping agent must not shed its cooldown by reconnecting).
    losses: HashMap<InstanceId, (u32, i64)>,
    /// Running attempts per limited capability.
    running_caps: BTreeMap<Capability, u32>,
    /// Instances an operator cordoned (false) or is draining (true); kept across
    /// reconnects.
    cordoned: HashMap<InstanceId, bool>,
}

impl Dispatcher {
    pub(crate) fn new(
        store: Store,
        log: FrameLog,
        manifests: ManifestWriter,
        writer: StoreWriter,
        offers: Offers,
        rules: Rules,
        suspects: tokio::sync::broadcast::Sender<InstanceId>,
    ) -> Self {
        Self {
            fleet: rules.fleet,
            suspects,
            scheduler: rules.scheduler,
            losses: HashMap::new(),
            running_caps: BTreeMap::new(),
            cordoned: HashMap::new(),
            orphans: 0,
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

    /// Rebuilds the queue from the store after a start. Local agents outlive a crash of
    /// the server, so each attempt that was running waits up to the re-attach grace for
    /// its agent to offer it back; one that is not re-attached by then is lost, and its
    /// task is queued again (or fails if out of attempts). Queued tasks queue again.
    pub(crate) async fn recover(&mut self) -> Result<usize, StoreError> {
        let now = now_ms();
        let open: HashMap<TaskId, crate::store::OpenAttempt> = self
            .store
            .open_attempts()
            .await?
            .into_iter()
            .map(|a| (a.task.clone(), a))
            .collect();
        self.next_key = self.store.max_attempt_key().await? + 1;
        self.seal_finished().await?;
        let live = self.store.live_tasks().await?;
        let count = live.len();
        let deadline = now + self.fleet.reattach_grace_ms as i64;
        let mut awaited = HashSet::new();
        for row in live {
            let orphan = open
                .get(&row.id)
                .filter(|a| row.state == TaskState::Running && a.attempt_no == row.attempts);
            if let Some(a) = orphan {
                let Ok(request) = RunRequest::from_stored(&row.request) else {
                    continue; // fails below, with the attempt lost, like any unreadable row
                };
                self.log.create_handle(&row.handle);
                tracing::info!(task = %row.id, attempt = a.key, instance = %a.instance, grace_ms = self.fleet.reattach_grace_ms, "waiting for the agent to re-attach a running attempt");
                awaited.insert(a.key);
                self.manifests.touch(&row.id);
                self.attempts.insert(
                    a.key,
                    LiveAttempt {
                        task: row.id.clone(),
                        instance: a.instance.clone(),
                        lease_until_ms: deadline,
                        lease_ms: lease_ms(&request, &self.fleet),
                        orphan: true,
                    },
                );
                self.orphans += 1;
                let caps = cap_set(&request.capabilities);
                self.tasks.insert(
                    row.id.clone(),
                    LiveTask {
                        row,
                        request,
                        caps,
                        seq: self.queue.reserve(),
                        attempt: Some(a.key),
                        cancel_requested: false,
                        failure: None,
                    },
                );
            }
        }
        // Every other open attempt belongs to no live task any more.
        for a in open.values().filter(|a| !awaited.contains(&a.key)) {
            let end = lost("the orchestrator restarted and its task is no longer live".into());
            self.store.end_attempt(a.key, &end, now).await?;
        }
        let live = self.store.live_tasks().await?;
        for mut row in live {
            if self.tasks.contains_key(&row.id) {
                continue;
            }
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

    /// Appends the status frame of every finished task whose handle lacks one, and
    /// rewrites every manifest older than its task: a crash between committing a final
    /// state and sealing its handle (or writing its manifest) must not leave observers
    /// waiting forever, nor evidence behind the store.
    async fn seal_finished(&mut self) -> Result<(), StoreError> {
        for row in self.store.finished_tasks().await? {
            self.manifests.touch_if_stale(&row);
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
        // Leases are checked a few times per heartbeat: an expiry is acted on within
        // a quarter of a heartbeat of its time.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            self.fleet.heartbeat_ms / 4,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let cmd = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return,
                },
                _ = tick.tick() => {
                    self.expire_leases();
                    self.pump();
                    continue;
                }
            };
            match cmd {
                Cmd::Enqueue(_) if fault_injected("dispatcher") => {
                    panic!("injected fault: dispatcher")
                }
                Cmd::Enqueue(e) => self.enqueue_new(e.row, e.request),
                Cmd::Cancel(m) => self.cancel(m).await,
                Cmd::Connect(m) => self.connect(m),
                Cmd::Instance {
                    instance,
                    conn,
                    msg,
                } => {
                    match self.instances.get_mut(&instance) {
                        Some(i) if i.conn == conn => i.last_heard_ms = now_ms(),
                        _ => continue, // a message from a connection that was replaced
                    }
                    match msg {
                        FromInstance::Started { attempt, pid } => {
                            tracing::debug!(attempt, pid, instance = %instance, "attempt started");
                        }
                        FromInstance::Exited { attempt, outcome } => {
                            self.exited(&instance, attempt, outcome)
                        }
                        FromInstance::Heartbeat { running } => self.heartbeat(&instance, &running),
                        FromInstance::Gone { silent } => {
                            if silent {
                                let _ = self.suspects.send(instance.clone());
                            }
                            self.gone(&instance)
                        }
                    }
                }
                Cmd::Instances(reply) => {
                    let _ = reply.send(self.instance_views());
                }
                Cmd::Control {
                    instance,
                    action,
                    reply,
                } => {
                    let _ = reply.send(self.control(instance, action));
                }
                Cmd::Readiness(reply) => {
                    let _ = reply.send(self.readiness());
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

    /// Registers a new connection. An id that is connected already is refused (the
    /// agent retries: a connection that died without a word keeps its id until its
    /// lease runs out). Attempts the agent holds from before a restart are taken back
    /// if they were recovered for this instance, and fenced otherwise.
    fn connect(&mut self, m: Connect) {
        if let Some(inst) = self.instances.get(&m.instance) {
            tracing::warn!(instance = %m.instance, pid = m.pid, holder = inst.pid, "hello refused: instance id in use");
            let _ = m.reply.send(Err(ConnectError::InUse {
                instance: m.instance.clone(),
                pid: inst.pid,
            }));
            return;
        }
        self.next_conn += 1;
        let conn = self.next_conn;
        let now = now_ms();
        let mut resumed = Vec::new();
        let mut fenced = Vec::new();
        let mut running = HashSet::new();
        for HeldAttempt { attempt, .. } in &m.held {
            let ours = self
                .attempts
                .get(attempt)
                .is_some_and(|a| a.orphan && a.instance == m.instance);
            let assignment = ours.then(|| self.assignment(*attempt)).flatten();
            let Some(assignment) = assignment else {
                tracing::warn!(instance = %m.instance, attempt, "held attempt fenced: it is not this instance's any more");
                fenced.push(*attempt);
                continue;
            };
            if let Some(a) = self.attempts.get_mut(attempt) {
                a.orphan = false;
                a.lease_until_ms = now + a.lease_ms;
            }
            self.orphans -= 1;
            running.insert(*attempt);
            tracing::info!(instance = %m.instance, attempt, task = %assignment.task, "attempt re-attached");
            let after = self.log.recovered_seq(*attempt);
            resumed.push((assignment, after));
        }
        // Recovered for this instance but not offered back: the agent lost them.
        let missing: Vec<AttemptKey> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.orphan && a.instance == m.instance)
            .map(|(k, _)| *k)
            .collect();
        tracing::info!(instance = %m.instance, slots = m.slots, pid = m.pid, reattached = resumed.len(), "instance connected");
        self.offers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.instance.clone(), m.capabilities.clone());
        self.instances.insert(
            m.instance.clone(),
            Instance {
                caps: m.capabilities,
                slots: m.slots,
                running,
                session: m.session,
                conn,
                pid: m.pid,
                connected_ms: now,
                last_heard_ms: now,
            },
        );
        for attempt in missing {
            self.orphans -= 1;
            let detail = format!(
                "instance {} came back after the restart without this attempt",
                m.instance
            );
            self.lose(attempt, detail);
        }
        self.forget_recovered_seqs();
        let _ = m.reply.send(Ok(Welcomed {
            conn,
            resumed,
            fenced,
        }));
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
            self.lose(attempt, format!("instance {instance} disconnected"));
        }
        self.refresh_reasons();
    }

    /// A heartbeat renews the lease of every attempt it lists that the server gave this
    /// instance; anything else it lists is fenced, so the agent kills it.
    fn heartbeat(&mut self, instance: &InstanceId, running: &[AttemptKey]) {
        let now = now_ms();
        let mut strangers = Vec::new();
        let Some(inst) = self.instances.get(instance) else {
            return;
        };
        for key in running {
            match self.attempts.get_mut(key) {
                Some(a) if inst.running.contains(key) => {
                    a.lease_until_ms = now + a.lease_ms;
                }
                _ => strangers.push(*key),
            }
        }
        if !strangers.is_empty() {
            tracing::warn!(instance = %instance, attempts = ?strangers, "fencing attempts the server did not give this instance");
            let msg = ServerMsg::Fence {
                attempts: strangers,
                reason: format!("not assigned to {instance}, or no longer"),
            };
            send_in_order(&self.writer, &inst.session, msg);
        }
    }

    /// Attempts whose lease ran out are lost (and fenced on their agent, should it still
    /// run them); recovered attempts whose agent did not come back within the grace too.
    fn expire_leases(&mut self) {
        let now = now_ms();
        let expired: Vec<(AttemptKey, bool)> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.lease_until_ms < now)
            .map(|(k, a)| (*k, a.orphan))
            .collect();
        for (key, orphan) in expired {
            let Some(a) = self.attempts.get(&key) else {
                continue;
            };
            let instance = a.instance.clone();
            let detail = if orphan {
                self.orphans -= 1;
                format!(
                    "not re-attached by instance {instance} within {} ms of the restart",
                    self.fleet.reattach_grace_ms
                )
            } else {
                format!(
                    "lease expired: instance {instance} did not report it for {} ms",
                    a.lease_ms
                )
            };
            tracing::warn!(attempt = key, instance = %instance, reason = %detail, "attempt lost");
            if let Some(inst) = self.instances.get_mut(&instance) {
                inst.running.remove(&key);
                let msg = ServerMsg::Fence {
                    attempts: vec![key],
                    reason: detail.clone(),
                };
                send_in_order(&self.writer, &inst.session, msg);
            }
            self.lose(key, detail);
        }
        self.forget_recovered_seqs();
    }

    /// Once no recovered attempt waits any more, the log's recovered seqs are not needed.
    fn forget_recovered_seqs(&mut self) {
        if self.orphans == 0 {
            self.log.forget_recovered();
        }
    }

    /// One attempt is lost (`detail` says why): its task is requeued at its old place in
    /// line, or fails once it has used all its attempts, or ends cancelled if a cancel
    /// was asked for meanwhile.
    fn lose(&mut self, attempt: AttemptKey, detail: String) {
        let Some(a) = self.attempts.remove(&attempt) else {
            return;
        };
        if let Some(inst) = self.instances.get_mut(&a.instance) {
            inst.running.remove(&attempt);
        }
        let Some(mut live) = self.tasks.remove(&a.task) else {
            return;
        };
        self.release_caps(&live.caps);
        self.cool_down(&a.instance);
        live.attempt = None;
        let end = lost(detail.clone());
        let n = live.row.attempts;
        if live.cancel_requested {
            let ending = Ending {
                state: TaskState::Cancelled,
                exit_code: None,
                signal: None,
                reason: Some(format!("cancelled; attempt {n} lost: {detail}")),
                attempt: Some((attempt, end)),
            };
            self.finish(&mut live.row, ending, None);
        } else if n >= live.row.max_attempts {
            let reason = format!(
                "attempt {n} lost ({detail}); no attempts left (max {})",
                live.row.max_attempts
            );
            self.finish(&mut live.row, failed(reason, Some((attempt, end))), None);
        } else {
            let update = queued(format!("attempt {n} lost ({detail}); requeued"));
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
            tracing::info!(task = %live.row.id, attempt = n, reason = %detail, "task requeued after a lost attempt");
            live.row.state = TaskState::Queued;
            self.queue
                .requeue(live.row.id.clone(), live.caps.clone(), live.seq);
            self.tasks.insert(live.row.id.clone(), live);
        }
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
        let Some(session) = self.instances.get(instance).map(|i| i.session.clone()) else {
            return;
        };
        // The agent keeps an outcome until it hears the server recorded it (or that the
        // attempt is not its own): a crash before the commit must not lose it.
        let done = move || {
            let _ = session.send(ServerMsg::Done { attempt });
        };
        if self.attempts.get(&attempt).map(|a| &a.instance) != Some(instance) {
            tracing::warn!(attempt, instance = %instance, "exit of an attempt this instance does not run ignored (fenced)");
            send_in_order(
                &self.writer,
                &self.instances[instance].session,
                ServerMsg::Done { attempt },
            );
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
        self.release_caps(&live.caps);
        if matches!(outcome, Outcome::Exited { code: Some(0), .. })
            && self.losses.remove(instance).is_some()
        {
            tracing::info!(instance = %instance, "instance succeeded again; its cooldown ends");
        }
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
        self.finish(&mut live.row, ending, Some(Box::new(done)));
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

    /// Assigns queued tasks to free slots until no more fit: instances in the order the
    /// placement policy ranks them, each taking the oldest task it can run whose
    /// capabilities are under their limits.
    fn pump(&mut self) {
        let now = now_ms();
        let quiet_since = now - 2 * self.fleet.heartbeat_ms as i64;
        while !self.queue.is_empty() {
            let loads: Vec<Load> = self
                .instances
                .iter()
                .map(|(id, i)| Load {
                    id,
                    running: i.running.len() as u32,
                    slots: i.slots,
                    held_back: i.last_heard_ms < quiet_since
                        || self.losses.get(id).is_some_and(|(_, until)| *until > now)
                        || self.cordoned.contains_key(id),
                })
                .collect();
            let ranked: Vec<InstanceId> = rank(&loads, self.scheduler.policy)
                .into_iter()
                .cloned()
                .collect();
            let limits = &self.scheduler.limits;
            let running = &self.running_caps;
            let picked = ranked.into_iter().find_map(|id| {
                let caps = &self.instances[&id].caps;
                self.queue
                    .pop_for_where(caps, |lane| limited(lane, limits, running).is_none())
                    .map(|(task, _)| (task, id))
            });
            match picked {
                Some((task, id)) => self.assign(task, id),
                None => return,
            }
        }
    }

    fn assign(&mut self, task: TaskId, instance: InstanceId) {
        let Some(live) = self.tasks.get_mut(&task) else {
            return;
        };
        let key = self.next_key;
        self.next_key += 1;
        let attempt_no = live.row.attempts + 1;
        for cap in live
            .caps
            .iter()
            .filter(|c| self.scheduler.limits.contains_key(*c))
        {
            *self.running_caps.entry(cap.clone()).or_default() += 1;
        }
        live.row.attempts = attempt_no;
        live.row.state = TaskState::Running;
        live.row.instance = Some(instance.clone());
        live.attempt = Some(key);
        let lease = lease_ms(&live.request, &self.fleet);
        self.attempts.insert(
            key,
            LiveAttempt {
                task: task.clone(),
                instance: instance.clone(),
                lease_until_ms: now_ms() + lease,
                lease_ms: lease,
                orphan: false,
            },
        );
        let Some(assignment) = self.assignment(key) else {
            return;
        };
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

    /// An attempt of a task requiring `caps` ended: its limited capabilities free up.
    fn release_caps(&mut self, caps: &CapSet) {
        for cap in caps {
            if let Some(n) = self.running_caps.get_mut(cap) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// An attempt on `instance` was lost: it gets no new work for a while, twice as long
    /// as last time, until one of its attempts succeeds.
    fn cool_down(&mut self, instance: &InstanceId) {
        let entry = self.losses.entry(instance.clone()).or_insert((0, 0));
        entry.0 = entry.0.saturating_add(1);
        let ms = cooldown_ms(&self.scheduler, entry.0);
        entry.1 = now_ms() + ms as i64;
        tracing::info!(instance = %instance, losses = entry.0, cooldown_ms = ms, "instance cools down after a lost attempt");
    }

    /// What the agent needs to run attempt `key` of its task.
    fn assignment(&self, key: AttemptKey) -> Option<Assignment> {
        let live = self.tasks.get(&self.attempts.get(&key)?.task)?;
        let req = &live.request;
        Some(Assignment {
            attempt: key,
            task: live.row.id.clone(),
            handle: live.row.handle.clone(),
            attempt_no: live.row.attempts,
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
        })
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

    /// An operator's cordon, uncordon or drain (restart is the supervisor's).
    fn control(
        &mut self,
        instance: InstanceId,
        action: InstanceAction,
    ) -> Result<(), ControlError> {
        if !self.instances.contains_key(&instance) {
            return Err(ControlError::NotFound(instance));
        }
        tracing::info!(instance = %instance, action = ?action, "instance control");
        match action {
            InstanceAction::Cordon => {
                self.cordoned.insert(instance, false);
            }
            InstanceAction::Drain => {
                self.cordoned.insert(instance, true);
            }
            InstanceAction::Uncordon => {
                self.cordoned.remove(&instance);
            }
            InstanceAction::Restart => {
                let _ = self.suspects.send(instance);
            }
        }
        Ok(())
    }

    /// What an instance takes, as the API shows it.
    fn instance_state(&self, id: &InstanceId, i: &Instance) -> &'static str {
        let now = now_ms();
        match self.cordoned.get(id) {
            Some(true) if i.running.is_empty() => "drained",
            Some(true) => "draining",
            Some(false) => "cordoned",
            None if i.last_heard_ms < now - 2 * self.fleet.heartbeat_ms as i64 => "quiet",
            None if self.losses.get(id).is_some_and(|(_, until)| *until > now) => "cooling",
            None => "ready",
        }
    }

    fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if self.instances.is_empty() {
            reasons.push("no executor instance is connected: tasks wait".to_owned());
        }
        if self.orphans > 0 {
            reasons.push(format!(
                "{} running attempts wait for their agents to re-attach after a restart",
                self.orphans
            ));
        }
        Readiness {
            status: if reasons.is_empty() {
                ReadyState::Ready
            } else {
                ReadyState::Degraded
            },
            reasons,
        }
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
                state: self.instance_state(id, i),
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

/// How long an attempt of `request` may go unreported before it is lost: the task's
/// `schedule.recovery.missingHeartbeatTimeoutMs`, or the fleet's lease timeout.
fn lease_ms(request: &RunRequest, fleet: &FleetSettings) -> i64 {
    request
        .schedule
        .as_ref()
        .and_then(|s| s.recovery.as_ref())
        .and_then(|r| r.missing_heartbeat_timeout_ms)
        .unwrap_or(fleet.lease_timeout_ms) as i64
}

/// A lost attempt's end.
fn lost(detail: String) -> AttemptEnd {
    AttemptEnd {
        state: AttemptState::Lost,
        exit_code: None,
        signal: None,
        detail: Some(detail),
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
