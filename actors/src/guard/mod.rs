//! Guard pipeline: every output chunk passes here between an instance and the frame log.
//!
//! ```text
//! InstanceSession ──chunk──► Guard worker (per handle) ──released text──► FrameLog
//!                                  │ decisions                 (acked once durable)
//!                                  ▼
//!                     StoreWriter (guard_decisions) → manifest, metrics.json; counters
//! ```
//!
//! Each attempt's output goes to one worker thread, picked by its handle, so the frames of
//! a handle stay in order across attempts. The worker runs one `StreamRedactor` per stream
//! (stdout, stderr) with the attempt's policy: the mode set for its privacy level (capped
//! by the rollout phase), the secrets it was given, and the overrides in force.
//!
//! - `off`: bytes pass as they are.
//! - `shadow`: bytes pass as they are, at once; the redactor only records decisions.
//! - `enforce`: only what the redactor releases is stored. It holds back at most 4 KiB
//!   (the tail that may still be the start of a secret) for at most [`HOLD_MS`]. A chunk
//!   is acknowledged to the agent only once nothing of it is held, so a held tail is
//!   never acknowledged before it is durable. A block becomes a `guard` frame; with
//!   `fail_on_block` the attempt is stopped and its task fails.
//!
//! Switching to enforce needs a `guard-policy` approval in force ([`approvals`]).

pub mod approvals;
mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use flotilla_guard::env::TaskSecrets;
use flotilla_guard::policy::Policy;
pub use flotilla_guard::policy::{Level, Mode};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::{now_ms, rfc3339_ms, HandleId, Scope, TaskId};
use crate::exec_handle::{AckTo, FrameLog};
use crate::files::write_atomic;
use crate::protocol::{Assignment, AttemptKey, StreamKind};
use crate::store::writer::{StoreWriter, Then, Write};
use crate::store::GuardRunRow;
use approvals::{Approval, ApprovalError, ApprovalRequest, Approvers, Registry};
use worker::{Job, OpenAttempt};

/// Longest a partial token is held back before it is released (scanned as it is).
pub const HOLD_MS: u64 = 50;
/// Decisions stored per attempt; beyond this they are counted, not stored one by one.
pub const MAX_STORED_DECISIONS: usize = 1000;

/// The guard's rollout phase: `shadow` enforces nothing whatever the modes say,
/// `limited` enforces only for `restricted` and `sensitive` tasks, `full` applies the
/// modes as set. The same phases as every rollout's.
pub use crate::rollout::Phase;

/// The guard's configuration (`[guard]` in flotilla.toml); modes change at runtime.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// The mode for every level not named in `levels`.
    pub mode: Mode,
    pub phase: Phase,
    /// Per privacy level modes.
    pub levels: BTreeMap<Level, Mode>,
    pub approvers: Approvers,
    /// A block stops the attempt and fails its task.
    pub fail_on_block: bool,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Run `restricted` tasks while their level is not enforced (the operator's opt-out;
    /// `sensitive` ones are refused whatever this says).
    pub run_restricted_unenforced: bool,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self {
            mode: Mode::Shadow,
            phase: Phase::Full,
            levels: BTreeMap::new(),
            approvers: Approvers::default(),
            fail_on_block: true,
            workers: 0,
            run_restricted_unenforced: false,
        }
    }
}

impl GuardSettings {
    /// The mode a task of `level` runs under: its level's mode, capped by the phase.
    pub fn effective(&self, level: Level) -> Mode {
        let wanted = self.levels.get(&level).copied().unwrap_or(self.mode);
        let cap = match (self.phase, level) {
            (Phase::Shadow, _) | (Phase::Limited, Level::Standard) => Mode::Shadow,
            _ => Mode::Enforce,
        };
        wanted.min(cap)
    }

    /// Why a task of `level` may not be accepted now, if it may not: a `sensitive` (or,
    /// unless the operator opted out, `restricted`) task whose level is not enforced
    /// would have its output stored unredacted.
    pub fn refusal(&self, level: Level) -> Option<String> {
        let mode = self.effective(level);
        let must = match level {
            Level::Sensitive => true,
            Level::Restricted => !self.run_restricted_unenforced,
            Level::Standard => false,
        };
        if !must || mode == Mode::Enforce {
            return None;
        }
        let why = if self.levels.get(&level).copied().unwrap_or(self.mode) == Mode::Enforce {
            format!("the rollout phase is {}", self.phase.as_str())
        } else {
            format!("the guard runs it in {} mode", mode.as_str())
        };
        Some(format!(
            "privacy level {} is not enforced here ({why}), so the task's output would be stored \
             unredacted; missing: enforcement for {} tasks, which needs an approved guard-policy \
             approval (`flotilla guard approval request --kind policy`) and the guard switched to \
             enforce (`PUT /admin/guard/modes`) in phase full{}",
            level.as_str(),
            level.as_str(),
            if level == Level::Restricted {
                ", or the operator's opt-out `guard.run-restricted-unenforced`"
            } else {
                ""
            }
        ))
    }

    /// Whether any level is enforced.
    pub fn enforces(&self) -> bool {
        Level::ALL
            .into_iter()
            .any(|l| self.effective(l) == Mode::Enforce)
    }
}

/// Why the guard refused a change.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "enforcement needs a recorded policy approval, and there is none in force: missing \
         evidence is an approved, unexpired `guard-policy` approval in {registry} (request \
         one with `flotilla guard approval request --kind policy`, have an approver approve it)"
    )]
    NoPolicyApproval { registry: String },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

/// A change of modes asked for through the admin API.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModeChange {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    /// Level name → mode name; a level mapped to `null` is no longer set.
    #[serde(default)]
    pub levels: Option<BTreeMap<String, Option<String>>>,
    /// Who switches, recorded.
    pub by: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Which approvals the rollout gates find in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InForce {
    pub policy: Option<String>,
    pub signoff: Option<String>,
}

/// The guard as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardView {
    pub mode: &'static str,
    pub phase: &'static str,
    pub levels: BTreeMap<&'static str, &'static str>,
    /// The mode each level actually runs under.
    pub effective: BTreeMap<&'static str, &'static str>,
    pub policy_approval: Option<String>,
    pub approvers: Vec<String>,
    pub after_hours_owner: Option<String>,
    pub fail_on_block: bool,
    pub hold_back_ms: u64,
    pub hold_back_bytes: usize,
}

/// One recorded switch of modes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Switch {
    at: String,
    by: String,
    reason: Option<String>,
    mode: &'static str,
    phase: &'static str,
    levels: BTreeMap<&'static str, &'static str>,
    policy_approval: Option<String>,
}

/// What the guard needs of a task beyond its assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardSpec {
    pub level: Level,
    /// Environment variables marked secret by the request (besides those named so).
    pub secret_env: Vec<String>,
}

/// What the guard's hot path counts for `/metrics` (its decisions, blocks and restarts are
/// named events: `crate::events`).
#[derive(Default)]
pub struct Counters {
    /// Bytes of output scanned, read into the registry at each scrape.
    pub bytes: AtomicU64,
}

/// Asks the dispatcher to stop an attempt whose output was blocked.
pub type OnBlock = Arc<dyn Fn(AttemptKey, String) + Send + Sync>;

struct Inner {
    engine: Arc<flotilla_guard::Engine>,
    settings: RwLock<GuardSettings>,
    registry: Mutex<Registry>,
    /// Bumped on every approval change, so workers refresh their allowlists.
    generation: Arc<AtomicU64>,
    counters: Arc<Counters>,
    history: Mutex<Vec<Switch>>,
    /// `.runs/<scope>/guard/modes.json`: every switch of modes.
    modes_file: std::path::PathBuf,
    writer: StoreWriter,
    workers: Vec<std::sync::mpsc::Sender<Job>>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

impl Guard {
    /// Loads the approvals and starts the workers. Refuses settings that enforce
    /// anywhere without a policy approval in force.
    pub fn start(
        settings: GuardSettings,
        artifacts: &Path,
        scope: &Scope,
        log: FrameLog,
        writer: StoreWriter,
        on_block: OnBlock,
    ) -> Result<Self, GuardError> {
        let registry = Registry::load(artifacts, scope)?;
        if settings.enforces() && registry.policy_in_force(now_ms()).is_none() {
            return Err(GuardError::NoPolicyApproval {
                registry: registry.path().display().to_string(),
            });
        }
        let engine = engine();
        let counters = Arc::new(Counters::default());
        let generation = Arc::new(AtomicU64::new(0));
        let n = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = (0..n)
            .map(|i| {
                worker::spawn(
                    i,
                    log.clone(),
                    writer.clone(),
                    counters.clone(),
                    on_block.clone(),
                )
            })
            .collect();
        let guard = Self {
            inner: Arc::new(Inner {
                engine,
                settings: RwLock::new(settings),
                registry: Mutex::new(registry),
                generation,
                counters,
                history: Mutex::new(Vec::new()),
                modes_file: artifacts
                    .join(".runs")
                    .join(scope.as_str())
                    .join("guard")
                    .join("modes.json"),
                writer,
                workers,
            }),
        };
        Ok(guard)
    }

    /// Why a task of `level` may not be accepted now ([`GuardSettings::refusal`]).
    pub fn refusal(&self, level: Level) -> Option<String> {
        self.settings().refusal(level)
    }

    fn settings(&self) -> std::sync::RwLockReadGuard<'_, GuardSettings> {
        self.inner
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub fn view(&self) -> GuardView {
        let s = self.settings().clone();
        GuardView {
            mode: s.mode.as_str(),
            phase: s.phase.as_str(),
            levels: s
                .levels
                .iter()
                .map(|(l, m)| (l.as_str(), m.as_str()))
                .collect(),
            effective: Level::ALL
                .into_iter()
                .map(|l| (l.as_str(), s.effective(l).as_str()))
                .collect(),
            policy_approval: self
                .registry()
                .policy_in_force(now_ms())
                .map(|a| a.id.clone()),
            approvers: s.approvers.approvers.clone(),
            after_hours_owner: s.approvers.after_hours_owner.clone(),
            fail_on_block: s.fail_on_block,
            hold_back_ms: HOLD_MS,
            hold_back_bytes: flotilla_guard::stream::MAX_HOLD,
        }
    }

    /// Switches modes. Enforcement anywhere needs a policy approval in force; the switch
    /// is recorded in `.runs/<scope>/guard/modes.json` and the log. Running attempts keep the mode
    /// they started with.
    pub fn change(&self, change: ModeChange) -> Result<GuardView, GuardError> {
        let invalid = |field, message: String| GuardError::Invalid { field, message };
        if !approvals::is_person_name(&change.by) {
            return Err(invalid("by", "must name who switches".to_owned()));
        }
        let mut next = self.settings().clone();
        if let Some(m) = &change.mode {
            next.mode = Mode::parse(m)
                .ok_or_else(|| invalid("mode", format!("{m:?} is not off, shadow or enforce")))?;
        }
        if let Some(p) = &change.phase {
            next.phase = Phase::parse(p)
                .ok_or_else(|| invalid("phase", format!("{p:?} is not shadow, limited or full")))?;
        }
        for (level, mode) in change.levels.iter().flatten() {
            let l = Level::parse(level).ok_or_else(|| {
                invalid(
                    "levels",
                    format!("{level:?} is not standard, restricted or sensitive"),
                )
            })?;
            match mode {
                None => {
                    next.levels.remove(&l);
                }
                Some(m) => {
                    let m = Mode::parse(m).ok_or_else(|| {
                        invalid("levels", format!("{m:?} is not off, shadow or enforce"))
                    })?;
                    next.levels.insert(l, m);
                }
            }
        }
        let approval = self
            .registry()
            .policy_in_force(now_ms())
            .map(|a| a.id.clone());
        if next.enforces() && approval.is_none() {
            return Err(GuardError::NoPolicyApproval {
                registry: self.registry().path().display().to_string(),
            });
        }
        let switch = Switch {
            at: rfc3339_ms(now_ms()),
            by: change.by.clone(),
            reason: change.reason.clone(),
            mode: next.mode.as_str(),
            phase: next.phase.as_str(),
            levels: next
                .levels
                .iter()
                .map(|(l, m)| (l.as_str(), m.as_str()))
                .collect(),
            policy_approval: approval,
        };
        tracing::info!(by = %switch.by, mode = switch.mode, phase = switch.phase, levels = ?switch.levels, "guard modes switched");
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = next;
        let mut history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        history.push(switch);
        let path = &self.inner.modes_file;
        // unwrap: plain data always serialises.
        let doc = serde_json::to_vec_pretty(&serde_json::json!({ "switches": *history })).unwrap();
        drop(history);
        if let Err(e) = write_atomic(path, &doc) {
            tracing::error!(path = %path.display(), error = %e, "guard mode switch not recorded on disk");
        }
        Ok(self.view())
    }

    /// The ids of the policy approval and the sponsor sign-off in force at `now`.
    pub fn approvals_in_force(&self, now: i64) -> InForce {
        let r = self.registry();
        InForce {
            policy: r.policy_in_force(now).map(|a| a.id.clone()),
            signoff: r.signoff_in_force(now).map(|a| a.id.clone()),
        }
    }

    pub fn approvals(&self) -> Vec<Approval> {
        self.registry().list(now_ms())
    }

    pub fn request_approval(&self, req: ApprovalRequest) -> Result<Approval, ApprovalError> {
        let a = self.registry().request(req, now_ms())?;
        tracing::info!(id = %a.id, kind = ?a.kind, by = %a.requested_by, "guard approval requested");
        Ok(a)
    }

    pub fn approve(&self, id: &str, by: &str) -> Result<Approval, ApprovalError> {
        let approvers = self.settings().approvers.clone();
        let a = self.registry().approve(id, by, &approvers, now_ms())?;
        self.inner.generation.fetch_add(1, Ordering::Release);
        tracing::info!(id = %a.id, kind = ?a.kind, by = %by, "guard approval approved");
        Ok(a)
    }

    pub fn revoke(&self, id: &str, by: &str) -> Result<Approval, ApprovalError> {
        let a = self.registry().revoke(id, by, now_ms())?;
        self.inner.generation.fetch_add(1, Ordering::Release);
        tracing::info!(id = %a.id, kind = ?a.kind, by = %by, "guard approval revoked");
        Ok(a)
    }

    fn worker_for(&self, handle: &HandleId) -> &std::sync::mpsc::Sender<Job> {
        // FNV-1a over the handle: stable, and every attempt of a handle meets one worker.
        let h = handle
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        &self.inner.workers[(h % self.inner.workers.len() as u64) as usize]
    }

    /// Hands a job to the handle's worker. A worker that is gone stores nothing (nothing
    /// unguarded reaches the log); its agents stall on unacknowledged chunks.
    fn send(&self, handle: &HandleId, job: Job) {
        if self.worker_for(handle).send(job).is_err() {
            tracing::error!(handle = %handle, "guard worker gone; output of this handle is not stored");
        }
    }

    /// An attempt was assigned: its streams are guarded from now on.
    pub fn open(&self, a: &Assignment) {
        let (mode, fail_on_block) = {
            let s = self.settings();
            (s.effective(a.guard.level), s.fail_on_block)
        };
        let now = now_ms();
        let (allow, policy_approval) = {
            let reg = self.registry();
            (
                reg.allowlist(&a.task, now),
                reg.policy_in_force(now).map(|p| p.id.clone()),
            )
        };
        let secrets = TaskSecrets::new(&a.env, &a.guard.secret_env);
        let open = OpenAttempt {
            attempt: a.attempt,
            task: a.task.clone(),
            handle: a.handle.clone(),
            attempt_no: a.attempt_no,
            policy: Policy {
                mode,
                level: a.guard.level,
            },
            engine: self.inner.engine.clone(),
            secrets: Arc::new(secrets),
            allow: Arc::new(allow),
            refresh: self.allowlist_source(a.task.clone()),
            fail_on_block,
        };
        let overrides = open.allow.ids();
        self.send(&a.handle, Job::Open(Box::new(open)));
        // Recorded with the attempt, so its manifest names the evidence it ran under.
        record(
            &self.inner.writer,
            &a.task,
            vec![Write::GuardRun {
                task: a.task.clone(),
                run: GuardRunRow {
                    attempt_no: a.attempt_no,
                    mode: mode.as_str().to_owned(),
                    level: a.guard.level.as_str().to_owned(),
                    policy_approval: (mode == Mode::Enforce).then_some(policy_approval).flatten(),
                    overrides,
                    decisions: 0,
                },
            }],
        );
    }

    /// A closure the worker calls when approvals changed, to get the task's allowlist.
    fn allowlist_source(&self, task: TaskId) -> worker::Refresh {
        let inner = Arc::downgrade(&self.inner);
        let generation = self.inner.generation.clone();
        worker::Refresh {
            generation,
            seen: 0,
            fetch: Box::new(move || {
                let inner = inner.upgrade()?;
                let reg = inner.registry.lock().unwrap_or_else(|e| e.into_inner());
                Some(Arc::new(reg.allowlist(&task, now_ms())))
            }),
        }
    }

    /// An output chunk of an open attempt.
    pub fn chunk(
        &self,
        handle: &HandleId,
        attempt: AttemptKey,
        kind: StreamKind,
        data: Vec<u8>,
        ack: AckTo,
    ) {
        self.send(
            handle,
            Job::Chunk {
                attempt,
                kind,
                data,
                ack,
            },
        );
    }

    /// The attempt ended (or its connection did): releases what is held, records the
    /// totals, and resolves once all of it is queued on the frame log.
    pub async fn close(&self, handle: &HandleId, attempt: AttemptKey) {
        let (done, rx) = oneshot::channel();
        if self
            .worker_for(handle)
            .send(Job::Close { attempt, done })
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// The detector engine, built once per process (its automata take a few milliseconds).
pub fn engine() -> Arc<flotilla_guard::Engine> {
    static ENGINE: std::sync::OnceLock<Arc<flotilla_guard::Engine>> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(flotilla_guard::Engine::new()))
        .clone()
}

/// A stored request as it may be shown (manifests, the API): the values of secret env
/// variables become markers, and secrets found in any other string are redacted.
pub fn shown_request(stored: &str) -> serde_json::Value {
    use flotilla_guard::stream::{digest8, marker};
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(stored) else {
        return serde_json::Value::Null;
    };
    let parsed = crate::control_plane::RunRequest::from_document(&doc).ok();
    fn walk(v: &mut serde_json::Value, f: &dyn Fn(&str) -> Option<String>) {
        match v {
            serde_json::Value::String(s) => {
                if let Some(shown) = f(s) {
                    *s = shown;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, f)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| walk(i, f)),
            _ => {}
        }
    }
    if let (Some(env), Some(req)) = (doc.get_mut("env").and_then(|e| e.as_object_mut()), &parsed) {
        for (name, value) in env.iter_mut() {
            if let (true, Some(text)) = (req.is_secret_env(name), value.as_str()) {
                // A sealed value carries the digest of its plain value.
                let digest = crate::seal::sealed_digest(text)
                    .map(str::to_owned)
                    .unwrap_or_else(|| digest8(text));
                *value = marker("task-secret", &digest).into();
            }
        }
    }
    walk(&mut doc, &|s: &str| redact(s, false));
    doc
}

/// `text` with every secret and every piece of personal data replaced by its marker.
pub fn redact_all(text: &str) -> String {
    redact(text, true).unwrap_or_else(|| text.to_owned())
}

/// `text` with its findings replaced by markers (personal data too if `pii`); `None` if
/// nothing was found.
fn redact(text: &str, pii: bool) -> Option<String> {
    use flotilla_guard::stream::{digest8, marker};
    let found: Vec<_> = engine()
        .scan(text)
        .into_iter()
        .filter(|f| pii || !flotilla_guard::is_pii(f.kind))
        .collect();
    if found.is_empty() || text.starts_with("[REDACTED:") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in &found {
        if f.start < at {
            continue;
        }
        out.push_str(&text[at..f.start]);
        out.push_str(&marker(f.rule, &digest8(&text[f.start..f.end])));
        at = f.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// Writes that record the guard's work go through the store writer like the dispatcher's.
pub(crate) fn record(writer: &StoreWriter, task: &TaskId, writes: Vec<Write>) {
    writer.send(
        writes,
        Then {
            touch: Some(task.clone()),
            ..Then::default()
        },
    );
}
