//! Messages the dispatcher accepts. Each carries its reply channel where it has a reply.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::{mpsc, oneshot};

use crate::control_plane::{FieldError, RunRequest};
use crate::domain::{Capability, InstanceId, TaskId, TaskState};
use crate::protocol::{Assignment, AttemptKey, HeldAttempt, Outcome, ServerMsg};
use crate::store::{StoreError, TaskRow};

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("a task with id {0} already exists")]
    Duplicate(TaskId),
    #[error(transparent)]
    Store(StoreError),
    #[error("the dispatcher has stopped")]
    Stopped,
    #[error("sealing the secret env values: {0}")]
    Seal(crate::seal::SealError),
    /// The task's privacy level is not enforced, and its output would be stored in clear.
    #[error("{0}")]
    Unenforced(String),
    /// The request asks for what the scheduler cannot honour.
    #[error("the scheduler cannot honour: {}", .0.iter().map(|e| e.pointer.as_str()).collect::<Vec<_>>().join(", "))]
    Unsupported(Vec<FieldError>),
    /// The state dir does not take writes now (disk full, I/O error): nothing new is
    /// accepted until it does.
    #[error("not accepting tasks while the state dir does not take writes: {0}")]
    Unavailable(String),
}

/// Cancel a task: a queued one ends at once, a running one is killed by its agent.
pub struct Cancel {
    pub task: TaskId,
    pub reply: oneshot::Sender<Result<CancelOutcome, CancelError>>,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was queued and is now cancelled.
    Cancelled,
    /// The task is running; its agent was told to kill the process group.
    Cancelling,
}

/// Why a cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no task {0}")]
    NotFound(TaskId),
    #[error("task {task} already finished ({state})")]
    Finished { task: TaskId, state: TaskState },
    #[error(transparent)]
    Store(StoreError),
}

/// An agent said hello on a new connection.
pub struct Connect {
    pub instance: InstanceId,
    pub capabilities: BTreeSet<Capability>,
    pub slots: u32,
    pub pid: u32,
    /// Attempts the agent offers back from an earlier connection.
    pub held: Vec<HeldAttempt>,
    /// The agent holds assignments beyond its free slots until one frees (it named
    /// the `slots` feature): short tasks may be sent to it ahead.
    pub holds_ahead: bool,
    /// Where the dispatcher sends assignments and cancels for this connection.
    pub session: mpsc::UnboundedSender<ServerMsg>,
    pub reply: oneshot::Sender<Result<Welcomed, ConnectError>>,
}

/// A connection the dispatcher registered.
#[derive(Debug)]
pub struct Welcomed {
    /// The connection's generation, to quote in later messages.
    pub conn: u64,
    /// Held attempts taken back, each with the last chunk seq the log holds of it.
    pub resumed: Vec<(Assignment, u64)>,
    /// Held attempts the agent must kill.
    pub fenced: Vec<AttemptKey>,
}

/// Why a hello was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("instance id {instance} is in use by a connected agent (pid {pid})")]
    InUse { instance: InstanceId, pid: u32 },
}

/// Messages from a registered connection.
pub enum FromInstance {
    Started {
        attempt: AttemptKey,
        pid: u32,
    },
    Exited {
        attempt: AttemptKey,
        outcome: Outcome,
    },
    /// The attempts the agent runs, every heartbeat interval.
    Heartbeat {
        running: Vec<AttemptKey>,
    },
    /// The connection closed; `silent` if it was closed for saying nothing for a lease
    /// timeout (the instance is suspect: a local one is killed and restarted).
    Gone {
        silent: bool,
    },
}

/// A task committed to the store by the edge; it joins the queue.
pub struct Enqueue {
    pub row: TaskRow,
    pub request: RunRequest,
    /// A fanned-out task's shards, each a task of its own (none for a plain task).
    pub shards: Vec<(TaskRow, RunRequest)>,
}

/// Everything the dispatcher handles.
pub enum Cmd {
    /// A task committed to the store by the edge; it joins the queue.
    Enqueue(Box<Enqueue>),
    Cancel(Cancel),
    Connect(Connect),
    Instance {
        instance: InstanceId,
        conn: u64,
        msg: FromInstance,
    },
    Instances(oneshot::Sender<Vec<InstanceView>>),
    /// The queue by required capabilities.
    Queue(oneshot::Sender<Vec<QueueView>>),
    /// An operator cordons, uncordons or drains an instance.
    Control {
        instance: InstanceId,
        action: InstanceAction,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    Readiness(oneshot::Sender<Readiness>),
    /// A local instance's supervisor gave up on it (too many restarts).
    InstanceFailed {
        instance: InstanceId,
        reason: String,
    },
    /// Stop an attempt (the guard blocked its output, or it wrote past its output cap);
    /// its task fails with `reason`.
    StopAttempt {
        attempt: AttemptKey,
        reason: String,
    },
}

/// Whether the engine can take work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadyState {
    Ready,
    /// Work is taken, but something limits it (the reasons say what).
    Degraded,
    NotReady,
}

/// The engine's readiness, as `GET /readyz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub status: ReadyState,
    pub reasons: Vec<String>,
}

/// What an operator does to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAction {
    /// No new work; what it runs goes on.
    Cordon,
    Uncordon,
    /// Cordon, and show `draining` until it runs nothing, then `drained`.
    Drain,
    /// Kill a local agent (its attempts are rescheduled) and let the supervisor start it
    /// again.
    Restart,
}

impl InstanceAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cordon" => Some(Self::Cordon),
            "uncordon" => Some(Self::Uncordon),
            "drain" => Some(Self::Drain),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }
}

/// Why an operator's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no connected instance {0}")]
    NotFound(InstanceId),
    #[error("instance {0} is not a local agent of this server: restart it where it runs")]
    NotLocal(InstanceId),
}

/// The tasks waiting for one set of capabilities.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// The capabilities they require (none: any instance).
    pub capabilities: Vec<Capability>,
    pub depth: usize,
    /// When the one waiting longest was accepted (ms since the epoch).
    pub oldest_ms: Option<i64>,
}

impl QueueView {
    /// How long the task waiting longest has waited at `now_ms`.
    pub fn oldest_wait_ms(&self, now_ms: i64) -> Option<i64> {
        self.oldest_ms.map(|at| (now_ms - at).max(0))
    }
}

/// How many of `instances` are in each state.
pub fn instances_by_state(instances: &[InstanceView]) -> BTreeMap<&'static str, usize> {
    let mut by_state = BTreeMap::new();
    for i in instances {
        *by_state.entry(i.state).or_default() += 1;
    }
    by_state
}

/// Slots and running attempts of the instances not failed, and running over slots (0
/// without slots).
pub fn fleet_load(instances: &[InstanceView]) -> (u64, u64, f64) {
    let working = instances.iter().filter(|i| i.state != "failed");
    let (slots, running) = working.fold((0u64, 0u64), |(s, r), i| {
        (s + u64::from(i.slots), r + i.running.len() as u64)
    });
    let utilization = if slots == 0 {
        0.0
    } else {
        (running as f64 / slots as f64).min(1.0)
    };
    (slots, running, utilization)
}

/// A connected instance, as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: InstanceId,
    pub capabilities: Vec<Capability>,
    pub slots: u32,
    pub running: Vec<TaskId>,
    pub pid: u32,
    pub connected_at: String,
    /// `ready`, `quiet` (missed a heartbeat), `cooling` (after a lost attempt),
    /// `cordoned`, `draining` or `drained`: only `ready` takes new work. `failed`: its
    /// supervisor gave up on it; it is shown as it was last connected.
    pub state: &'static str,
    /// Why it is `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
