//! Named events: each lifecycle event the operator may want to see is one type here that
//! writes one structured log line and updates its metrics in the one [`Registry`]. Call
//! sites only build the event and call [`emit`](Event::emit); what is logged and counted
//! for it lives in one place, and `/metrics` serves the registry.

pub mod registry;
pub mod scrape;

use std::sync::LazyLock;

use crate::domain::{HandleId, InstanceId, TaskId, TaskState};
use registry::SECONDS;
pub use registry::{Metric, Registry};

const TASKS_ACCEPTED: Metric = Metric::counter(
    "flotilla_tasks_accepted_total",
    "Tasks accepted (stored and queued); a fanned-out task counts once.",
);
const ATTEMPTS_STARTED: Metric = Metric::counter(
    "flotilla_attempts_started_total",
    "Attempts given to an instance, by instance.",
);
const QUEUE_WAIT: Metric = Metric::histogram(
    "flotilla_task_queue_wait_seconds",
    "From a task's acceptance to its first attempt's dispatch.",
    SECONDS,
);
const TASKS_FINISHED: Metric = Metric::counter(
    "flotilla_tasks_finished_total",
    "Tasks that reached a final state, by outcome.",
);
const TASK_TOTAL: Metric = Metric::histogram(
    "flotilla_task_total_seconds",
    "From a task's acceptance to its final state, by outcome.",
    SECONDS,
);
const ATTEMPTS_LOST: Metric = Metric::counter(
    "flotilla_attempts_lost_total",
    "Attempts lost with their instance (disconnected, silent, or not taken back after a restart), by instance.",
);
const ATTEMPTS_FENCED: Metric = Metric::counter(
    "flotilla_attempts_fenced_total",
    "Attempts fenced: lease run out on a connected instance, or held or reported by an instance they were not given to, by instance.",
);
const TASKS_REQUEUED: Metric = Metric::counter(
    "flotilla_tasks_requeued_total",
    "Tasks queued again after an attempt was lost.",
);
const RECOVERY: Metric = Metric::histogram(
    "flotilla_recovery_seconds",
    "From an attempt's loss being noticed to its task's next dispatch (time to repair).",
    SECONDS,
);
const INSTANCE_CONNECTS: Metric = Metric::counter(
    "flotilla_instance_connects_total",
    "Agent connections taken as an instance, by instance.",
);
const INSTANCE_LOSSES: Metric = Metric::counter(
    "flotilla_instance_losses_total",
    "Instances gone (disconnected or silent), by instance.",
);
const OBSERVER_JOINS: Metric = Metric::counter(
    "flotilla_observer_joins_total",
    "Observers that joined a handle's stream, by policy.",
);
const OBSERVER_LEAVES: Metric = Metric::counter(
    "flotilla_observer_leaves_total",
    "Observers that left, by why: ended, closed, stalled, lagging, unanswered, dropped, error.",
);
const INSTANCE_RESTARTS: Metric = Metric::counter(
    "flotilla_instance_restarts_total",
    "Local agents restarted by the supervisor after they exited, by instance.",
);

const ALERT_CHANGES: Metric = Metric::counter(
    "flotilla_alert_transitions_total",
    "Alerts that changed state, by alert and the state they moved to.",
);

const ROLLOUT_CHANGES: Metric = Metric::counter(
    "flotilla_rollout_changes_total",
    "Rollout phase changes, by component, the phase moved to, and whether it was an automatic rollback.",
);

const INSTANCE_SUSPECTS: Metric = Metric::counter(
    "flotilla_instance_suspects_total",
    "Instances that went silent past their lease (suspect: their attempts are lost and a local one is killed and restarted), by instance.",
);
const GUARD_DECISIONS: Metric = Metric::counter(
    "flotilla_guard_decisions_total",
    "Decisions of the privacy guard about values in task output.",
);
const GUARD_BLOCKED: Metric = Metric::counter(
    "flotilla_guard_blocked_attempts_total",
    "Attempts stopped because the guard blocked their output.",
);
const GUARD_WORKER_RESTARTS: Metric = Metric::counter(
    "flotilla_guard_worker_restarts_total",
    "Guard workers that failed and were restarted in place.",
);
const VALIDATION_REQUESTS: Metric = Metric::counter(
    "flotilla_validation_requests_total",
    "Requests checked against their schema.",
);
const VALIDATION_ROLLBACKS: Metric = Metric::counter(
    "flotilla_validation_rollbacks_total",
    "Times enforcement rolled back to shadow.",
);

const DISPATCH_LATENCY: Metric = Metric::histogram(
    "flotilla_dispatch_latency_seconds",
    "From an attempt's dispatch to its agent saying the process started (attempts sent ahead of a free slot left out).",
    SECONDS,
);
const DELIVERY_LATENCY: Metric = Metric::histogram(
    "flotilla_observer_latency_seconds",
    "From a frame being stored (durable) to its being handed to an observer's socket; one frame in 64 an observer reads from the log.",
    SECONDS,
);

/// Every family the events update, with whether it has an unlabelled series to show
/// at 0 before anything happened.
const ALL: &[(&Metric, bool)] = &[
    (&TASKS_ACCEPTED, true),
    (&ATTEMPTS_STARTED, false),
    (&QUEUE_WAIT, true),
    (&TASKS_FINISHED, false),
    (&TASK_TOTAL, false),
    (&ATTEMPTS_LOST, false),
    (&ATTEMPTS_FENCED, false),
    (&TASKS_REQUEUED, true),
    (&RECOVERY, true),
    (&INSTANCE_CONNECTS, false),
    (&INSTANCE_LOSSES, false),
    (&INSTANCE_RESTARTS, false),
    (&OBSERVER_JOINS, false),
    (&OBSERVER_LEAVES, false),
    (&ALERT_CHANGES, false),
    (&ROLLOUT_CHANGES, false),
    (&INSTANCE_SUSPECTS, false),
    (&GUARD_DECISIONS, false),
    (&GUARD_BLOCKED, true),
    (&GUARD_WORKER_RESTARTS, true),
    (&VALIDATION_REQUESTS, false),
    (&VALIDATION_ROLLBACKS, true),
    (&DISPATCH_LATENCY, true),
    (&DELIVERY_LATENCY, true),
];

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::default();
    for (m, zero) in ALL {
        r.declare(m, *zero);
    }
    r
});

/// The process's metrics registry.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Something that happened, logged and counted.
pub trait Event {
    fn emit(self);
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

fn by_instance(instance: &str) -> registry::Labels {
    vec![("instance", instance.to_owned())]
}

/// A submission was stored and queued.
pub struct TaskAccepted<'a> {
    pub task: &'a TaskId,
    /// Shards a fanned-out task was split into (0: not fanned out).
    pub shards: usize,
}

impl Event for TaskAccepted<'_> {
    fn emit(self) {
        tracing::info!(task = %self.task, shards = self.shards, "task accepted");
        registry().add(&TASKS_ACCEPTED, vec![], 1.0);
    }
}

/// An attempt of a task was given to an instance.
pub struct TaskDispatched<'a> {
    pub task: &'a TaskId,
    pub attempt: u32,
    pub instance: &'a InstanceId,
    /// From acceptance to this dispatch, for a first attempt.
    pub queue_wait_ms: Option<i64>,
}

impl Event for TaskDispatched<'_> {
    fn emit(self) {
        tracing::info!(task = %self.task, attempt = self.attempt, instance = %self.instance, queue_wait_ms = ?self.queue_wait_ms, "task dispatched");
        let r = registry();
        r.add(&ATTEMPTS_STARTED, by_instance(self.instance.as_str()), 1.0);
        if let Some(ms) = self.queue_wait_ms {
            r.observe(&QUEUE_WAIT, vec![], seconds(ms));
        }
    }
}

/// A task reached its final state.
pub struct TaskFinished<'a> {
    pub task: &'a TaskId,
    pub state: TaskState,
    pub exit_code: Option<i32>,
    /// From acceptance to the end.
    pub total_ms: i64,
}

impl Event for TaskFinished<'_> {
    fn emit(self) {
        tracing::info!(task = %self.task, state = %self.state, exit_code = ?self.exit_code, total_ms = self.total_ms, "task finished");
        let r = registry();
        let outcome = vec![("outcome", self.state.as_str().to_owned())];
        r.add(&TASKS_FINISHED, outcome.clone(), 1.0);
        r.observe(&TASK_TOTAL, outcome, seconds(self.total_ms));
    }
}

/// Why an attempt's instance no longer runs it.
#[derive(Debug, Clone, Copy)]
pub enum LossKind {
    /// Its instance disconnected or went silent, or the server restarted and no agent
    /// took it back.
    Lost,
    /// Its lease ran out while its instance was still connected, or an instance held or
    /// reported it without the server's say-so.
    Fenced,
}

impl LossKind {
    fn as_str(self) -> &'static str {
        match self {
            LossKind::Lost => "lost",
            LossKind::Fenced => "fenced",
        }
    }
}

/// An attempt was lost or fenced on an instance.
pub struct AttemptLost<'a> {
    pub attempt: u64,
    pub instance: &'a InstanceId,
    pub kind: LossKind,
    pub reason: &'a str,
}

impl Event for AttemptLost<'_> {
    fn emit(self) {
        tracing::warn!(attempt = self.attempt, instance = %self.instance, kind = self.kind.as_str(), reason = %self.reason, "attempt lost");
        let metric = match self.kind {
            LossKind::Lost => &ATTEMPTS_LOST,
            LossKind::Fenced => &ATTEMPTS_FENCED,
        };
        registry().add(metric, by_instance(self.instance.as_str()), 1.0);
    }
}

/// A task whose attempt was lost is queued again.
pub struct TaskRequeued<'a> {
    pub task: &'a TaskId,
    pub attempt: u32,
    pub reason: &'a str,
}

impl Event for TaskRequeued<'_> {
    fn emit(self) {
        tracing::info!(task = %self.task, attempt = self.attempt, reason = %self.reason, "task requeued after a lost attempt");
        registry().add(&TASKS_REQUEUED, vec![], 1.0);
    }
}

/// A task whose attempt was lost runs again: the time to repair.
pub struct TaskRecovered<'a> {
    pub task: &'a TaskId,
    pub from: &'a InstanceId,
    pub to: &'a InstanceId,
    /// From the loss being noticed to the new attempt's dispatch.
    pub repair_ms: i64,
}

impl Event for TaskRecovered<'_> {
    fn emit(self) {
        tracing::info!(task = %self.task, from = %self.from, to = %self.to, repair_ms = self.repair_ms, "task running again after a lost attempt");
        registry().observe(&RECOVERY, vec![], seconds(self.repair_ms));
    }
}

/// An agent said hello and was taken as an instance.
pub struct InstanceConnected<'a> {
    pub instance: &'a InstanceId,
    pub slots: u32,
    pub pid: u32,
    pub reattached: usize,
}

impl Event for InstanceConnected<'_> {
    fn emit(self) {
        tracing::info!(instance = %self.instance, slots = self.slots, pid = self.pid, reattached = self.reattached, "instance connected");
        registry().add(&INSTANCE_CONNECTS, by_instance(self.instance.as_str()), 1.0);
    }
}

/// An instance's connection ended or it was declared gone.
pub struct InstanceGone<'a> {
    pub instance: &'a InstanceId,
    pub running: usize,
}

impl Event for InstanceGone<'_> {
    fn emit(self) {
        tracing::warn!(instance = %self.instance, running = self.running, "instance gone");
        registry().add(&INSTANCE_LOSSES, by_instance(self.instance.as_str()), 1.0);
    }
}

/// The supervisor restarts a local agent that exited.
pub struct InstanceRestarted<'a> {
    pub instance: &'a str,
    pub pid: u32,
    pub status: &'a str,
    pub restart_in_ms: u64,
}

impl Event for InstanceRestarted<'_> {
    fn emit(self) {
        tracing::warn!(instance = %self.instance, pid = self.pid, status = %self.status, restart_in_ms = self.restart_in_ms, "local agent exited; restarting");
        registry().add(&INSTANCE_RESTARTS, by_instance(self.instance), 1.0);
    }
}

/// An observer joined a handle's stream.
pub struct ObserverJoined<'a> {
    pub observer: &'a str,
    pub handle: &'a HandleId,
    pub from: u64,
    pub policy: &'a str,
}

impl Event for ObserverJoined<'_> {
    fn emit(self) {
        tracing::debug!(observer = %self.observer, handle = %self.handle, from = self.from, policy = %self.policy, "observer joined");
        registry().add(
            &OBSERVER_JOINS,
            vec![("policy", self.policy.to_owned())],
            1.0,
        );
    }
}

/// An observer left, with the reason its session recorded.
pub struct ObserverLeft<'a> {
    pub observer: &'a str,
    pub handle: &'a HandleId,
    pub frames: u64,
    pub reason: &'a str,
}

impl ObserverLeft<'_> {
    /// The reason's class, a label of few values.
    fn class(&self) -> &'static str {
        let r = self.reason;
        match () {
            _ if r.starts_with("the handle ended") => "ended",
            _ if r.starts_with("closed by the observer") => "closed",
            _ if r.starts_with("stalled") => "stalled",
            _ if r.starts_with("fell ") => "lagging",
            _ if r.starts_with("no answer to pings") => "unanswered",
            _ if r.starts_with("the connection closed") => "dropped",
            _ => "error",
        }
    }
}

impl Event for ObserverLeft<'_> {
    fn emit(self) {
        tracing::debug!(observer = %self.observer, handle = %self.handle, frames = self.frames, reason = %self.reason, "observer left");
        registry().add(
            &OBSERVER_LEAVES,
            vec![("why", self.class().to_owned())],
            1.0,
        );
    }
}

/// What the events counted, as an alert sample wants it: repairs and their seconds,
/// finished and succeeded tasks, local agent restarts (the rest is read elsewhere).
pub fn fill_sample(sample: &mut crate::alerts::Sample) {
    let r = registry();
    let (seconds, repairs) = r.total(&RECOVERY, |_| true);
    sample.repairs = repairs;
    sample.repair_seconds = seconds;
    sample.finished = r.total(&TASKS_FINISHED, |_| true).0 as u64;
    sample.succeeded = r
        .total(&TASKS_FINISHED, |l| {
            l.iter().any(|(k, v)| *k == "outcome" && v == "succeeded")
        })
        .0 as u64;
    sample.restarts = r.total(&INSTANCE_RESTARTS, |_| true).0 as u64;
}

/// An alert changed state.
pub struct AlertChanged<'a> {
    pub transition: &'a crate::alerts::Transition,
}

impl Event for AlertChanged<'_> {
    fn emit(self) {
        let t = self.transition;
        let (alert, to) = (t.alert.alert.as_str(), t.alert.state.as_str());
        match t.alert.state {
            crate::alerts::AlertState::Firing => {
                tracing::warn!(alert, from = t.from.as_str(), to, value = ?t.alert.value, reason = %t.alert.reason, "alert firing")
            }
            _ => {
                tracing::info!(alert, from = t.from.as_str(), to, value = ?t.alert.value, reason = %t.alert.reason, "alert changed")
            }
        }
        registry().add(
            &ALERT_CHANGES,
            vec![("alert", alert.to_owned()), ("to", to.to_owned())],
            1.0,
        );
    }
}

/// A component moved from one rollout phase to another.
pub struct RolloutChanged<'a> {
    pub change: &'a crate::rollout::PhaseChange,
}

impl Event for RolloutChanged<'_> {
    fn emit(self) {
        let c = self.change;
        let failed: Vec<&str> = c
            .gates
            .iter()
            .filter(|g| !g.pass)
            .map(|g| g.gate.as_str())
            .collect();
        tracing::warn!(component = c.component.as_str(), from = c.from.as_str(), to = c.to.as_str(), by = %c.by, automatic = c.automatic, reason = %c.reason, failed_gates = ?failed, "rollout phase changed");
        registry().add(
            &ROLLOUT_CHANGES,
            vec![
                ("component", c.component.as_str().to_owned()),
                ("to", c.to.as_str().to_owned()),
                ("automatic", c.automatic.to_string()),
            ],
            1.0,
        );
    }
}

/// An instance went silent past its lease.
pub struct InstanceSuspect<'a> {
    pub instance: &'a InstanceId,
}

impl Event for InstanceSuspect<'_> {
    fn emit(self) {
        tracing::warn!(instance = %self.instance, "instance silent past its lease: suspect");
        registry().add(&INSTANCE_SUSPECTS, by_instance(self.instance.as_str()), 1.0);
    }
}

/// The guard decided about one value of a task's output.
pub struct GuardDecided<'a> {
    pub attempt: u64,
    pub rule: &'a str,
    pub kind: &'a str,
    pub action: &'a str,
    pub mode: &'a str,
    pub applied: bool,
}

impl Event for GuardDecided<'_> {
    fn emit(self) {
        tracing::debug!(
            attempt = self.attempt,
            rule = self.rule,
            kind = self.kind,
            action = self.action,
            mode = self.mode,
            applied = self.applied,
            "guard decision"
        );
        let labels = vec![
            ("rule", self.rule.to_owned()),
            ("kind", self.kind.to_owned()),
            ("action", self.action.to_owned()),
            ("mode", self.mode.to_owned()),
            ("applied", self.applied.to_string()),
        ];
        registry().add(&GUARD_DECISIONS, labels, 1.0);
    }
}

/// The guard blocked an attempt's output; the attempt is stopped.
pub struct GuardBlocked<'a> {
    pub attempt: u64,
    pub rule: &'a str,
    pub digest: &'a str,
    pub stream: &'a str,
}

impl Event for GuardBlocked<'_> {
    fn emit(self) {
        tracing::warn!(
            attempt = self.attempt,
            rule = self.rule,
            digest = self.digest,
            stream = self.stream,
            "stopping a task the guard blocked"
        );
        registry().add(&GUARD_BLOCKED, vec![], 1.0);
    }
}

/// A guard worker panicked and was restarted in place; the attempts it guarded stop.
pub struct GuardWorkerRestarted<'a> {
    pub attempts: &'a [u64],
}

impl Event for GuardWorkerRestarted<'_> {
    fn emit(self) {
        tracing::error!(attempts = ?self.attempts, "a guard worker panicked; restarted in place, stopping the attempts it guarded");
        registry().add(&GUARD_WORKER_RESTARTS, vec![], 1.0);
    }
}

/// A request or message was checked against its schema.
pub struct ValidationChecked<'a> {
    pub schema: &'a str,
    pub mode: &'a str,
    /// `accepted`, `accepted-with-violations`, `rejected` or `unchecked`.
    pub outcome: &'a str,
}

impl Event for ValidationChecked<'_> {
    fn emit(self) {
        tracing::debug!(
            schema = self.schema,
            mode = self.mode,
            outcome = self.outcome,
            "request checked"
        );
        let labels = vec![
            ("schema", self.schema.to_owned()),
            ("mode", self.mode.to_owned()),
            ("outcome", self.outcome.to_owned()),
        ];
        registry().add(&VALIDATION_REQUESTS, labels, 1.0);
    }
}

/// Enforcement of a schema rolled back to shadow: too many requests were rejected.
pub struct ValidationRolledBack<'a> {
    pub schema: &'a str,
    pub rollback: &'a str,
    pub rejected: usize,
    pub requests: usize,
}

impl Event for ValidationRolledBack<'_> {
    fn emit(self) {
        tracing::warn!(
            schema = self.schema,
            rollback = self.rollback,
            rejected = self.rejected,
            requests = self.requests,
            "validation rolled back from enforce to shadow: too many requests rejected"
        );
        registry().add(&VALIDATION_ROLLBACKS, vec![], 1.0);
    }
}

/// Over the guard's decisions: those that flagged a value (redacted or blocked it,
/// applied or only counted); over validation: requests checked, and those that broke
/// their schema.
pub fn guard_and_validation_totals() -> (u64, u64, u64) {
    let r = registry();
    let label = |l: &registry::Labels, key: &str| -> String {
        l.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let flagged = r
        .total(&GUARD_DECISIONS, |l| label(l, "action") != "allow")
        .0;
    let checked = r
        .total(&VALIDATION_REQUESTS, |l| label(l, "outcome") != "unchecked")
        .0;
    let broke = r
        .total(&VALIDATION_REQUESTS, |l| {
            matches!(
                label(l, "outcome").as_str(),
                "rejected" | "accepted-with-violations"
            )
        })
        .0;
    (flagged as u64, checked as u64, broke as u64)
}

/// An agent said an attempt's process started.
pub struct AttemptStarted<'a> {
    pub attempt: u64,
    pub instance: &'a InstanceId,
    pub pid: u32,
    /// From dispatch to this, unless it was sent ahead of a free slot.
    pub dispatch_ms: Option<i64>,
}

impl Event for AttemptStarted<'_> {
    fn emit(self) {
        tracing::debug!(attempt = self.attempt, pid = self.pid, instance = %self.instance, dispatch_ms = ?self.dispatch_ms, "attempt started");
        if let Some(ms) = self.dispatch_ms {
            registry().observe(&DISPATCH_LATENCY, vec![], seconds(ms));
        }
    }
}

/// A frame stored `ms` ago is handed to an observer's socket (a measurement, not an
/// event: the caller samples it).
pub fn observer_latency(ms: i64) {
    registry().observe(&DELIVERY_LATENCY, vec![], seconds(ms));
}
