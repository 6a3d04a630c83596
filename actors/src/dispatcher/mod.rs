//! Dispatcher: owns the queue, the table of connected instances, the running attempts
//! and their leases, and decides which instance runs which task.
//!
//! Policy: the free instances, ranked by the placement policy (`placement.rs`), each
//! take the oldest queued task whose required capabilities they offer and whose limited
//! capabilities are under their limits. The dispatcher never waits on the database: it
//! hands every change to the [`StoreWriter`], which commits them in order, many per
//! transaction, then sends assignments and seals handles. A restart recovers from the
//! store: queued tasks are queued again, running attempts wait for their agents to
//! re-attach (`recovery.rs`).
//!
//! By concern: this file has the loop, the queue and assignment; `instances.rs` the
//! connections (hello, heartbeats, departure, controls, views); `recovery.rs` start-up,
//! leases and lost attempts; `outcome.rs` how attempts and tasks end; `messages.rs` the
//! commands with their reply types.
//!
//! Supervision: a single task started by [`crate::engine::Engine::start`], holding a
//! lifeline: its end, by panic or otherwise, ends the process.

mod fanout;
pub mod honoured;
mod instances;
pub mod messages;
mod outcome;
pub mod placement;
pub(crate) mod recovery;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::control_plane::{FanMode, RetryOn, RunRequest};
use crate::domain::{now_ms, rfc3339_ms, Capability, End, InstanceId, TaskId, TaskState};
use crate::events::{
    AttemptLost, AttemptStarted, Event, InstanceConnected, InstanceGone, InstanceSuspect, LossKind,
    TaskDispatched, TaskFinished, TaskRecovered,
};
use crate::exec_handle::{Append, FrameLog};
use crate::fleet::FleetSettings;
use crate::guard::GuardSpec;
use crate::lifeline::fault_injected;
use crate::manifest::ManifestWriter;
use crate::protocol::{
    Assignment, AttemptKey, FinalStatus, HeldAttempt, Outcome, ServerMsg, StreamKind,
};
use crate::queue::{cap_set, unsatisfiable_reason, CapSet, Lane, Queue};
use crate::seal::Sealer;
use crate::store::writer::{StoreWriter, Then, Write};
use crate::store::{
    AttemptEnd, AttemptState, Checkpoint, CheckpointAction, Store, StoreError, TaskRow, TaskUpdate,
};
use fanout::Family;
use messages::*;
use outcome::{queued, status_frame};
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
    /// Where it waits: its capabilities, fair-share group, family and priority.
    lane: Lane,
    /// Place in line, kept when an attempt is lost.
    seq: u64,
    attempt: Option<AttemptKey>,
    /// Set when a cancel was asked for, with why (a client, or a sibling shard's end).
    cancelled: Option<String>,
    /// Set when flotilla stopped the attempt (the guard blocked it): the task fails so.
    failure: Option<String>,
    /// The instances its attempts were lost on, in a row (a poison task takes them down).
    lost_on: Vec<InstanceId>,
    /// Retries after a timeout or non-zero exit so far (each waits twice as long).
    retries: u32,
    /// The instance its last attempt left and why: its next start is a reschedule.
    moved_from: Option<(InstanceId, String)>,
    /// When its last attempt was found lost: its next start ends the repair.
    lost_ms: Option<i64>,
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
    /// When its being heard from was last recorded in the store.
    heard_written_ms: i64,
    /// How long its recent attempts ran, from spawn to exit (a moving average).
    recent_run_ms: Option<f64>,
    /// Its agent holds an assignment beyond its free slots until one frees (an agent
    /// that does not would run it at once, over its slots).
    holds_ahead: bool,
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
    /// When it was given to its instance.
    dispatched_ms: i64,
    /// When its agent said its process started (an attempt sent ahead waits first).
    spawned_ms: Option<i64>,
    /// Sent ahead of a free slot: it waits on the agent until one frees.
    ahead: bool,
}

/// The settings the dispatcher schedules by.
pub(crate) struct Rules {
    pub fleet: FleetSettings,
    pub scheduler: SchedulerSettings,
    /// Opens the secret env values (stored sealed) that assignments carry.
    pub sealer: Arc<Sealer>,
    /// The cooldown's rollout phase.
    pub cooldown: crate::rollout::PhaseCell,
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
    /// Running attempts per fair-share group.
    running_groups: HashMap<String, u32>,
    /// Each fair-share group's account: what its starts cost (see `placement::charge`).
    accounts: HashMap<String, u64>,
    /// Instances an operator cordoned (false) or is draining (true); kept across
    /// reconnects.
    cordoned: HashMap<InstanceId, bool>,
    /// Local instances their supervisor gave up on, as they were last seen, with why.
    failed: HashMap<InstanceId, (InstanceView, String)>,
    /// How each departed instance was last seen (what a `failed` one is shown as).
    last_seen: HashMap<InstanceId, InstanceView>,
    /// Tasks waiting out a retry's backoff, by when they queue again.
    delayed: BTreeSet<(i64, TaskId)>,
    /// Fanned-out tasks whose shards are not all final, by parent id.
    families: HashMap<TaskId, Family>,
    /// Opens secret env values (stored sealed) to build assignments.
    sealer: Arc<Sealer>,
    /// The cooldown's rollout phase: applied, applied to half the fleet, or only logged.
    cooldown_phase: crate::rollout::PhaseCell,
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
            sealer: rules.sealer,
            cooldown_phase: rules.cooldown,
            fleet: rules.fleet,
            suspects,
            scheduler: rules.scheduler,
            losses: HashMap::new(),
            running_caps: BTreeMap::new(),
            running_groups: HashMap::new(),
            accounts: HashMap::new(),
            cordoned: HashMap::new(),
            failed: HashMap::new(),
            last_seen: HashMap::new(),
            delayed: BTreeSet::new(),
            families: HashMap::new(),
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

    /// Where a task of `request` waits.
    fn lane(&self, row: &TaskRow, request: &RunRequest) -> Lane {
        Lane {
            caps: cap_set(&request.capabilities),
            group: self.scheduler.group_of(&request.labels),
            family: row.parent.clone(),
            priority: request.priority(),
        }
    }

    fn live(row: TaskRow, request: RunRequest, lane: Lane, seq: u64) -> LiveTask {
        LiveTask {
            row,
            request,
            lane,
            seq,
            attempt: None,
            cancelled: None,
            failure: None,
            lost_on: Vec::new(),
            retries: 0,
            moved_from: None,
            lost_ms: None,
        }
    }

    fn enqueue(&mut self, row: TaskRow, request: RunRequest) {
        let lane = self.lane(&row, &request);
        self.wake_group(&lane.group);
        let seq = self.queue.push(row.id.clone(), &lane);
        self.tasks
            .insert(row.id.clone(), Self::live(row, request, lane, seq));
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
                    self.release_delayed();
                    self.pump();
                    continue;
                }
            };
            match cmd {
                Cmd::Enqueue(_) if fault_injected("dispatcher") => {
                    panic!("injected fault: dispatcher")
                }
                Cmd::Enqueue(e) if e.shards.is_empty() => self.enqueue_new(e.row, e.request),
                Cmd::Enqueue(e) => self.fan_out(e.row, e.request, e.shards),
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
                            let now = now_ms();
                            let dispatch_ms = self.attempts.get_mut(&attempt).and_then(|a| {
                                a.spawned_ms = Some(now);
                                (!a.ahead && !a.orphan).then_some(now - a.dispatched_ms)
                            });
                            AttemptStarted {
                                attempt,
                                instance: &instance,
                                pid,
                                dispatch_ms,
                            }
                            .emit();
                        }
                        FromInstance::Exited { attempt, outcome } => {
                            self.exited(&instance, attempt, outcome)
                        }
                        FromInstance::Heartbeat { running } => self.heartbeat(&instance, &running),
                        FromInstance::Gone { silent } => {
                            if silent {
                                InstanceSuspect {
                                    instance: &instance,
                                }
                                .emit();
                                let _ = self.suspects.send(instance.clone());
                            }
                            self.gone(&instance)
                        }
                    }
                }
                Cmd::Instances(reply) => {
                    let _ = reply.send(self.instance_views());
                }
                Cmd::Queue(reply) => {
                    let _ = reply.send(self.queue_views());
                }
                Cmd::Control {
                    instance,
                    action,
                    reply,
                } => {
                    let _ = reply.send(self.control(instance, action));
                }
                Cmd::InstanceFailed { instance, reason } => self.instance_failed(instance, reason),
                Cmd::Readiness(reply) => {
                    let _ = reply.send(self.readiness());
                }
                Cmd::StopAttempt { attempt, reason } => self.stop_attempt(attempt, reason),
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
    /// A fanned-out task cancels its shards and ends when they have.
    async fn cancel(&mut self, m: Cancel) {
        let task = &m.task;
        if self.families.contains_key(task) {
            self.cancel_family(task, "cancelled by a client");
            let _ = m.reply.send(Ok(CancelOutcome::Cancelling));
            return;
        }
        let Some(live) = self.tasks.get(task) else {
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
        if live.attempt.is_some() {
            self.cancel_live(task, "cancelled".to_owned(), None);
            let _ = m.reply.send(Ok(CancelOutcome::Cancelling));
            return;
        }
        let reply = m.reply;
        let after: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = reply.send(Ok(CancelOutcome::Cancelled));
        });
        self.cancel_live(task, "cancelled".to_owned(), Some(after));
    }

    /// Cancels a live task, saying `why`: a running one's agent is told to kill it, and
    /// it ends when the agent says so; a queued (or backing-off) one ends now, and
    /// `after` runs once that is committed.
    fn cancel_live(&mut self, task: &TaskId, why: String, after: Option<Box<dyn FnOnce() + Send>>) {
        let Some(live) = self.tasks.get_mut(task) else {
            return;
        };
        live.cancelled.get_or_insert(why.clone());
        if let Some(attempt) = live.attempt {
            if let Some(inst) = self
                .attempts
                .get(&attempt)
                .and_then(|a| self.instances.get(&a.instance))
            {
                send_in_order(&self.writer, &inst.session, ServerMsg::Cancel { attempt });
            }
            tracing::info!(task = %task, attempt, reason = %why, "cancel sent to the agent");
            return;
        }
        let lane = live.lane.clone();
        self.queue.remove(task, &lane);
        self.delayed.retain(|(_, t)| t != task);
        if let Some(mut live) = self.tasks.remove(task) {
            let end = End::because(TaskState::Cancelled, format!("{why} while queued"));
            self.finish(&mut live.row, end, None, after);
        }
    }

    /// Assigns queued tasks to free slots until no more fit: instances in the order the
    /// placement policy ranks them, each taking the oldest task it can run whose
    /// capabilities are under their limits.
    fn pump(&mut self) {
        // Free slots first; then, for instances whose tasks are short, the next task
        // ahead, queued on the agent to start the moment a slot frees.
        self.pump_within(false);
        self.pump_within(true);
    }

    fn pump_within(&mut self, ahead: bool) {
        let now = now_ms();
        let quiet_since = now - 2 * self.fleet.heartbeat_ms as i64;
        while !self.queue.is_empty() {
            let usable = |id: &InstanceId, i: &Instance| {
                i.last_heard_ms >= quiet_since && !self.cordoned.contains_key(id)
            };
            let cooling =
                |id: &InstanceId| self.losses.get(id).is_some_and(|(_, until)| *until > now);
            // A cooldown holds an instance back only while some usable instance is not
            // cooling: when every one of them has just lost work, they all keep working.
            let some_fresh = self
                .instances
                .iter()
                .any(|(id, i)| usable(id, i) && !cooling(id));
            let loads: Vec<Load> = self
                .instances
                .iter()
                .map(|(id, i)| Load {
                    id,
                    running: i.running.len() as u32,
                    slots: if ahead { ahead_slots(i) } else { i.slots },
                    held_back: !usable(id, i) || (some_fresh && cooling(id)),
                })
                .collect();
            let ranked: Vec<InstanceId> = rank(&loads, self.scheduler.policy)
                .into_iter()
                .cloned()
                .collect();
            let limits = &self.scheduler.limits;
            let running = &self.running_caps;
            let usage = |group: &str| self.accounts.get(group).copied().unwrap_or(0);
            let picked = ranked.into_iter().find_map(|id| {
                let caps = &self.instances[&id].caps;
                // A shard never joins a sibling on the same instance.
                let allowed = |lane: &Lane| {
                    limited(&lane.caps, limits, running).is_none()
                        && !lane.family.as_ref().is_some_and(|f| {
                            fanout::runs_on(&self.families, &self.tasks, &self.attempts, f, &id)
                        })
                };
                self.queue
                    .pop_for_where(caps, allowed, usage)
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
        let now = now_ms();
        let attempt_no = live.row.attempts + 1;
        let (caps, group) = (live.lane.caps.clone(), live.lane.group.clone());
        let parent = live.row.parent.clone();
        let mut writes = Vec::with_capacity(2);
        // A first attempt waited in the queue since the task was accepted.
        let queued_since = (attempt_no == 1).then_some(live.row.created_ms);
        // A start after a lost attempt ends its repair.
        let recovered = live.lost_ms.take().and_then(|ms| {
            let from = live.moved_from.as_ref()?.0.clone();
            Some((from, ms))
        });
        // A start after a lost or retried attempt is a reschedule: say from where to where.
        if let Some((from, why)) = live.moved_from.take() {
            writes.push(checkpoint(
                &task,
                CheckpointAction::Reschedule,
                why,
                Some(from),
                Some(instance.clone()),
                attempt_no,
                key,
            ));
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
                lease_until_ms: now + lease,
                lease_ms: lease,
                orphan: false,
                dispatched_ms: now,
                spawned_ms: None,
                ahead: self
                    .instances
                    .get(&instance)
                    .is_some_and(|i| i.running.len() as u32 >= i.slots),
            },
        );
        self.hold(&caps, &group);
        *self.accounts.entry(group.clone()).or_default() += self.scheduler.charge(&group);
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
        writes.push(Write::StartAttempt {
            key,
            task: task.clone(),
            attempt_no,
            instance: instance.clone(),
            now_ms: now,
            lease_until_ms: now + lease,
        });
        if let Some(parent) = parent {
            self.shard_started(&parent, &mut writes);
        }
        self.writer.send(
            writes,
            Then {
                touch: Some(task.clone()),
                after: Some(Box::new(move || {
                    let _ = session.send(ServerMsg::Assign(assignment));
                })),
                ..Then::default()
            },
        );
        TaskDispatched {
            task: &task,
            attempt: attempt_no,
            instance: &instance,
            queue_wait_ms: queued_since.map(|t| now - t),
        }
        .emit();
        if let Some((from, lost_ms)) = recovered {
            TaskRecovered {
                task: &task,
                from: &from,
                to: &instance,
                repair_ms: now - lost_ms,
            }
            .emit();
        }
    }

    /// A group that had nothing queued or running starts from the lowest account among
    /// the groups with work waiting, not from where it left off: a group idle for an
    /// hour must not then take every slot until it has caught up.
    fn wake_group(&mut self, group: &str) {
        if self.scheduler.fair_label.is_none()
            || self.queue.has_group(group)
            || self.running_groups.get(group).is_some_and(|n| *n > 0)
        {
            return;
        }
        let floor = self
            .queue
            .groups()
            .filter_map(|g| self.accounts.get(g).copied())
            .min()
            .unwrap_or(0);
        let account = self.accounts.entry(group.to_owned()).or_default();
        *account = (*account).max(floor);
    }

    /// An attempt of a task requiring `caps` in `group` runs: it holds its limited
    /// capabilities and its group's share until [`release`](Self::release).
    fn hold(&mut self, caps: &CapSet, group: &str) {
        for cap in caps
            .iter()
            .filter(|c| self.scheduler.limits.contains_key(*c))
        {
            *self.running_caps.entry(cap.clone()).or_default() += 1;
        }
        *self.running_groups.entry(group.to_owned()).or_default() += 1;
    }

    /// An attempt of a task requiring `caps` in `group` ended: its limited capabilities
    /// and its group's share free up.
    fn release(&mut self, caps: &CapSet, group: &str) {
        for cap in caps {
            if let Some(n) = self.running_caps.get_mut(cap) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(n) = self.running_groups.get_mut(group) {
            *n = n.saturating_sub(1);
        }
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
            env: self.open_env(&live.row.id, req),
            cwd: req.cwd.clone(),
            timeout_ms: req.timeout_seconds.map(|s| s * 1000),
            guard: GuardSpec {
                level: req.privacy(),
                secret_env: req.secret_env.clone(),
            },
            max_output_bytes: req.streaming.as_ref().and_then(|s| s.max_output_bytes),
        })
    }

    /// A task's env with its secret values opened: the one place they are. A value that
    /// does not open (checked at recovery, so only a damaged row) is left out and logged.
    fn open_env(&self, task: &TaskId, req: &RunRequest) -> Vec<(String, String)> {
        req.env
            .iter()
            .filter_map(|(name, value)| {
                if !req.is_secret_env(name) {
                    return Some((name.clone(), value.clone()));
                }
                match self.sealer.open(name, value) {
                    Ok(plain) => Some((name.clone(), plain.into_owned())),
                    Err(e) => {
                        tracing::error!(task = %task, variable = %name, error = %e, "secret env value left out of the assignment");
                        None
                    }
                }
            })
            .collect()
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
}

/// Tasks that ran shorter than this, recently on an instance, are sent to it ahead.
const SHORT_TASK_MS: f64 = 50.0;

/// Work sent ahead per slot covers about this long a stretch of the recent task length:
/// long enough to hide the server's round trip and a commit under load.
const AHEAD_COVER_MS: f64 = 8.0;
/// Most attempts sent ahead per slot.
const MAX_AHEAD: u32 = 4;

/// How many attempts an instance may hold, counting those sent ahead: while its recent
/// tasks ran short (and its agent can hold them), its slots and enough more per slot to
/// cover about [`AHEAD_COVER_MS`] of them (one to [`MAX_AHEAD`]); else its slots. A task
/// sent ahead waits on the agent about [`AHEAD_COVER_MS`] at most, and the round trip to
/// the server and its commit leave the slot's cycle.
fn ahead_slots(i: &Instance) -> u32 {
    ahead_capacity(i.slots, i.recent_run_ms, i.holds_ahead)
}

/// [`ahead_slots`] from its inputs: the slots, how long recent tasks ran, and whether
/// the agent can hold work beyond its slots.
fn ahead_capacity(slots: u32, recent_run_ms: Option<f64>, holds_ahead: bool) -> u32 {
    match recent_run_ms {
        Some(ms) if ms < SHORT_TASK_MS && holds_ahead => {
            // Enough to cover about AHEAD_COVER_MS of work per slot, one at least.
            let extra = (AHEAD_COVER_MS / ms.max(1.0)).clamp(1.0, MAX_AHEAD as f64) as u32;
            slots * (1 + extra)
        }
        _ => slots,
    }
}

/// A recovery checkpoint of `task` to record.
fn checkpoint(
    task: &TaskId,
    action: CheckpointAction,
    reason: String,
    from_instance: Option<InstanceId>,
    to_instance: Option<InstanceId>,
    attempt_no: u32,
    epoch: AttemptKey,
) -> Write {
    tracing::info!(task = %task, action = action.as_str(), reason = %reason, from = ?from_instance, to = ?to_instance, attempt = attempt_no, epoch, "recovery checkpoint");
    Write::Checkpoint {
        task: task.clone(),
        checkpoint: Checkpoint {
            ts_ms: now_ms(),
            action,
            reason,
            from_instance,
            to_instance,
            attempt_no,
            epoch,
        },
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

#[cfg(test)]
mod tests;
