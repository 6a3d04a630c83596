//! The engine: builds the actors and is the one handle the edges (HTTP, CLI) hold.
//!
//! It starts the dispatcher, the store writer, the frame-log writer and the manifest
//! writer, each with a lifeline to the [`Watchdog`] it returns: the death of any of them
//! ends the process (see `docs/ARCHITECTURE.md`, the supervision tree).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::alerts::{AlertSettings, Alerts};
use crate::auth::{expiry, TokenError, TokenSettings, Tokens};
use crate::control_plane::{Accepted, ControlPlane, ControlPlaneConfig, RunRequest, SchemaError};
use crate::dispatcher::honoured::refusals;
use crate::dispatcher::messages::*;
use crate::dispatcher::placement::SchedulerSettings;
use crate::dispatcher::{offered, Dispatcher, Offers, Rules};
use crate::domain::{now_ms, HandleId, InstanceId, RunId, Scope, TaskId, TaskState};
use crate::events::{Event, TaskAccepted};
use crate::exec_handle::{FrameLog, FrameLogError, RetentionSettings};
use crate::fleet::FleetSettings;
use crate::guard::{Guard, GuardError, GuardSettings};
use crate::health::StorageHealth;
use crate::lifeline::Watchdog;
use crate::manifest::ManifestWriter;
use crate::protocol::{AttemptKey, TruncateReason};
use crate::queue::{cap_set, unsatisfiable_reason};
use crate::rollout::{RolloutError, RolloutSettings, Rollouts};
use crate::seal::{SealError, Sealer};
use crate::state_lock::{LockError, StateLock};
use crate::store::writer::StoreWriter;
use crate::store::ObserverRecord;
use crate::store::{NewTask, Store, StoreError, TaskRow};
use crate::subscriber::registry::{ObserverRegistry, SessionRecord, StreamingSettings};

/// Where the engine keeps its state.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Database, frame log, tokens.
    pub state_dir: PathBuf,
    /// Root of `.runs/` and `out/`.
    pub artifacts_dir: PathBuf,
    /// Admin token given by the operator instead of the stored one.
    pub admin_token: Option<String>,
    /// Folder of the deployment's own evidence: `.runs/<scope>/…`, `out/<scope>/…`.
    pub scope: Scope,
    pub guard: GuardSettings,
    /// Validation modes and rollback policy (where its files go is set from `scope`).
    pub control_plane: ControlPlaneConfig,
    /// Heartbeats, leases, the re-attach grace and local restart limits.
    pub fleet: FleetSettings,
    /// Placement policy, per-capability limits, cooldown.
    pub scheduler: SchedulerSettings,
    /// Observer caps, lag limit, write timeout and pings.
    pub streaming: StreamingSettings,
    /// How long minted tokens are valid.
    pub tokens: TokenSettings,
    /// What the frame log keeps.
    pub retention: RetentionSettings,
    /// Alert rules, thresholds and where alerts are delivered.
    pub alerts: AlertSettings,
    /// The cooldown's first phase, the evidence a completion rate needs, how often
    /// advanced rollouts are checked.
    pub rollout: RolloutSettings,
}

/// A submission's result: a new task, or the task an idempotency key already named.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub row: TaskRow,
    /// A fanned-out task's shards, by index.
    pub shards: Vec<TaskRow>,
    pub existing: bool,
}

/// Errors starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    FrameLog(#[from] FrameLogError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("guard: {0}")]
    Guard(#[from] GuardError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("seal key: {0}")]
    Seal(#[from] SealError),
    #[error("rollout: {0}")]
    Rollout(#[from] RolloutError),
}

/// The dispatcher has stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the dispatcher has stopped")]
pub struct Stopped;

/// What happened at start, for the operator.
#[derive(Debug, Clone)]
pub struct StartReport {
    /// A new admin token was generated and stored.
    pub admin_token_created: bool,
    /// Tasks found queued or running in the store and queued again.
    pub recovered: usize,
}

/// Cheap to clone; every edge holds one.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Cmd>,
    pub store: Store,
    pub log: FrameLog,
    pub tokens: Tokens,
    pub control: Arc<ControlPlane>,
    pub config: Arc<EngineConfig>,
    pub guard: Guard,
    /// The observers connected now.
    pub observers: ObserverRegistry,
    /// Whether the state dir takes writes.
    pub storage: StorageHealth,
    /// Seals secret env values before they are stored.
    sealer: Arc<Sealer>,
    offers: Offers,
    /// Instances that went silent (the local supervisor kills and restarts its own).
    pub suspects: broadcast::Sender<InstanceId>,
    /// The local agents' ids.
    local: Arc<std::sync::RwLock<std::collections::HashSet<InstanceId>>>,
    /// The alerts' states (evaluated by whoever runs [`Engine::evaluate_alerts`]).
    pub(crate) alerts: Arc<std::sync::Mutex<Alerts>>,
    /// The rollouts' record and the cooldown's phase.
    pub(crate) rollouts: Arc<std::sync::Mutex<Rollouts>>,
    /// One server per state dir, for as long as any clone of the engine lives.
    _lock: Arc<StateLock>,
}

impl Engine {
    /// Opens the state, recovers what was live, and starts the actors. The [`Watchdog`]
    /// reports the first of them to die; whoever owns the process must act on it.
    pub async fn start(config: EngineConfig) -> Result<(Self, StartReport, Watchdog), EngineError> {
        let dir_err = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Dir { path, source }
        };
        std::fs::create_dir_all(&config.artifacts_dir).map_err(dir_err(&config.artifacts_dir))?;
        // The state dir holds the tokens, the database and the frame log: 0700, and its
        // files 0600, including those a server before this one left readable.
        crate::files::private_dir(&config.state_dir).map_err(dir_err(&config.state_dir))?;
        let db = config.state_dir.join("flotilla.db");
        crate::files::private_file(&db).map_err(dir_err(&db))?;
        for name in ["flotilla.db-wal", "flotilla.db-shm", "lock", "server.url"] {
            let path = config.state_dir.join(name);
            crate::files::tighten(&path).map_err(dir_err(&path))?;
        }
        // Before anything is read: a second server must not recover what the first runs.
        let lock = StateLock::acquire(&config.state_dir)?;
        let (tokens, admin_token_created) =
            Tokens::load_or_create(&config.state_dir, config.admin_token.clone())?;
        let watchdog = Watchdog::default();
        let store = Store::open(&db).await?;
        for (id, at, reason) in store.revoked_tokens().await? {
            tokens.revoke(&id, at, reason);
        }
        let sealer = Arc::new(Sealer::load_or_create(&config.state_dir)?);
        let storage = StorageHealth::default();
        let log = FrameLog::open_watched(
            &config.state_dir.join("frames"),
            watchdog.lifeline("frame-log writer"),
            storage.clone(),
            config.retention,
        )?;
        let manifests = ManifestWriter::start_watched(
            store.clone(),
            config.artifacts_dir.clone(),
            config.scope.clone(),
            watchdog.lifeline("manifest writer"),
        );
        let observer_manifests = manifests.clone();
        let offers = Offers::default();
        let (suspects, _) = broadcast::channel(64);
        let writer = StoreWriter::start(
            store.clone(),
            log.clone(),
            manifests.clone(),
            watchdog.lifeline("store writer"),
            storage.clone(),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let blocks = tx.clone();
        let guard = Guard::start(
            config.guard.clone(),
            &config.artifacts_dir,
            &config.scope,
            log.clone(),
            writer.clone(),
            Arc::new(move |attempt, reason| {
                let _ = blocks.send(Cmd::StopAttempt { attempt, reason });
            }),
        )?;
        let rollouts =
            Rollouts::load(&config.artifacts_dir, &config.scope, config.rollout.clone())?;
        let cooldown = rollouts.cooldown.clone();
        let rollouts = Arc::new(std::sync::Mutex::new(rollouts));
        let mut dispatcher = Dispatcher::new(
            store.clone(),
            log.clone(),
            manifests,
            writer,
            offers.clone(),
            Rules {
                fleet: config.fleet,
                scheduler: config.scheduler.clone(),
                sealer: sealer.clone(),
                cooldown,
            },
            suspects.clone(),
        );
        let recovered = dispatcher.recover().await?;
        let lifeline = watchdog.lifeline("dispatcher");
        tokio::spawn(async move {
            let _lifeline = lifeline;
            dispatcher.run(rx).await
        });
        let (sessions, recorded) = mpsc::unbounded_channel();
        let observers = ObserverRegistry::new(
            config.streaming,
            Some(Arc::new(move |r| {
                let _ = sessions.send(r);
            })),
        );
        tokio::spawn(record_observers(
            store.clone(),
            observer_manifests.clone(),
            recorded,
        ));
        // Damage found when a record is read goes to the task's record like damage
        // found at start.
        let (damage_tx, mut damage_rx) = mpsc::unbounded_channel();
        log.report_damage_to(damage_tx);
        {
            let (store, manifests) = (store.clone(), observer_manifests);
            tokio::spawn(async move {
                while let Some(lost) = damage_rx.recv().await {
                    let recorded =
                        crate::dispatcher::recovery::record_output_lost(&store, &manifests, &lost)
                            .await;
                    if let Err(e) = recorded {
                        tracing::warn!(handle = %lost.handle, error = %e, "output loss not recorded");
                    }
                }
            });
        }
        tokio::spawn(write_handles_state(
            log.clone(),
            store.clone(),
            observers.clone(),
            rollouts.clone(),
            config
                .artifacts_dir
                .join("out")
                .join(config.scope.as_str())
                .join("state.json"),
        ));
        let engine = Self {
            tx,
            store,
            log,
            tokens,
            control: Arc::new(ControlPlane::new(ControlPlaneConfig {
                drift_file: Some(
                    config
                        .artifacts_dir
                        .join("out")
                        .join(config.scope.as_str())
                        .join("control-plane")
                        .join("drift.json"),
                ),
                modes_file: Some(
                    config
                        .artifacts_dir
                        .join(".runs")
                        .join(config.scope.as_str())
                        .join("control-plane")
                        .join("modes.json"),
                ),
                ..config.control_plane.clone()
            })?),
            rollouts: rollouts.clone(),
            alerts: Arc::new(std::sync::Mutex::new(Alerts::new(
                config.alerts.clone(),
                now_ms(),
            ))),
            config: Arc::new(config),
            guard,
            observers,
            storage,
            sealer,
            offers,
            suspects,
            local: Default::default(),
            _lock: Arc::new(lock),
        };
        Ok((
            engine,
            StartReport {
                admin_token_created,
                recovered,
            },
            watchdog,
        ))
    }

    /// Whether the engine can take work: ready, degraded (it can, but something the
    /// operator should know limits it) or not ready, with the reasons.
    pub async fn readiness(&self) -> Readiness {
        match self.ask(Cmd::Readiness).await {
            Ok(mut r) => {
                let storage = self.storage.problems();
                if !storage.is_empty() && r.status == ReadyState::Ready {
                    r.status = ReadyState::Degraded;
                }
                r.reasons.splice(0..0, storage);
                r
            }
            Err(Stopped) => Readiness {
                status: ReadyState::NotReady,
                reasons: vec!["the dispatcher has stopped".to_owned()],
            },
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Commits a validated request (with its validation report) to the store, then queues
    /// it: when this returns, the task is durable. Submissions commit concurrently; the
    /// dispatcher never waits. A request whose idempotency key was used before returns
    /// the first task instead.
    pub async fn submit(&self, accepted: Accepted) -> Result<Submitted, SubmitError> {
        let prepared = self.prepare(accepted)?;
        let stored = self.store.insert_submission(&prepared.new_task()).await;
        self.settle(prepared, stored).await
    }

    /// Submits several checked requests: those the scheduler can honour are committed in
    /// one transaction before this returns. Each gets its own result, in order: one
    /// refused by the scheduler, or by the store (an id in use), is refused alone; one
    /// whose key was used before gets the first task back.
    pub async fn submit_batch(
        &self,
        items: Vec<Accepted>,
    ) -> Result<Vec<Result<Submitted, SubmitError>>, SubmitError> {
        let prepared: Vec<Result<Prepared, SubmitError>> = items
            .into_iter()
            .map(|accepted| self.prepare(accepted))
            .collect();
        let batch: Vec<NewTask<'_>> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().map(Prepared::new_task))
            .collect();
        let mut stored = self
            .store
            .insert_batch(&batch)
            .await
            .map_err(SubmitError::Store)?
            .into_iter();
        drop(batch);
        let mut results = Vec::with_capacity(prepared.len());
        for item in prepared {
            results.push(match item {
                Ok(p) => {
                    let outcome = stored.next().unwrap_or(Ok(()));
                    self.settle(p, outcome).await
                }
                Err(e) => Err(e),
            });
        }
        Ok(results)
    }

    /// A checked request turned into the rows to store, or refused by the scheduler.
    fn prepare(&self, accepted: Accepted) -> Result<Prepared, SubmitError> {
        let Accepted {
            mut request,
            report,
        } = accepted;
        if let Some(why) = self.storage.problems().into_iter().next() {
            return Err(SubmitError::Unavailable(why));
        }
        if let Some(why) = self.guard.refusal(request.privacy()) {
            return Err(SubmitError::Unenforced(why));
        }
        // From here on, secret values exist only sealed, until an assignment opens them.
        request
            .seal_secrets(&self.sealer)
            .map_err(SubmitError::Seal)?;
        let refused = refusals(&request, &self.config.fleet, &self.config.scheduler);
        if !refused.is_empty() {
            return Err(SubmitError::Unsupported(refused));
        }
        let now = now_ms();
        let caps = cap_set(&request.capabilities);
        let reason = (!offered(&self.offers, &caps)).then(|| unsatisfiable_reason(&caps));
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
            parent: None,
            shard: None,
        };
        let shards = shard_tasks(&row, &request);
        let shard_rows = shards.iter().map(|(r, _)| r.clone()).collect();
        Ok(Prepared {
            // unwrap: a report is plain data and always serialises.
            validation: serde_json::to_string(&report).unwrap(),
            row,
            request,
            shards,
            shard_rows,
        })
    }

    /// After the store's answer: a stored task is queued; a used key gives the first task
    /// back; an id in use is refused.
    async fn settle(
        &self,
        p: Prepared,
        stored: Result<(), StoreError>,
    ) -> Result<Submitted, SubmitError> {
        match stored {
            Ok(()) => {}
            Err(StoreError::Idempotent(first)) => {
                let row = self
                    .store
                    .get_task(&first)
                    .await
                    .map_err(SubmitError::Store)?
                    .ok_or(SubmitError::Duplicate(first))?;
                let shards = self
                    .store
                    .shards_of(&row.id)
                    .await
                    .map_err(SubmitError::Store)?;
                return Ok(Submitted {
                    row,
                    shards,
                    existing: true,
                });
            }
            Err(StoreError::Duplicate(id)) => return Err(SubmitError::Duplicate(id)),
            Err(e) => return Err(SubmitError::Store(e)),
        }
        let Prepared {
            row,
            request,
            shards,
            shard_rows,
            ..
        } = p;
        self.log.create_handle(&row.handle);
        for (shard, _) in &shards {
            self.log.create_handle(&shard.handle);
        }
        TaskAccepted {
            task: &row.id,
            shards: shards.len(),
        }
        .emit();
        self.tx
            .send(Cmd::Enqueue(Box::new(Enqueue {
                row: row.clone(),
                request,
                shards,
            })))
            .map_err(|_| SubmitError::Stopped)?;
        Ok(Submitted {
            row,
            shards: shard_rows,
            existing: false,
        })
    }

    pub async fn cancel(
        &self,
        task: TaskId,
    ) -> Result<Result<CancelOutcome, CancelError>, Stopped> {
        self.ask(|reply| Cmd::Cancel(Cancel { task, reply })).await
    }

    /// Cordons, uncordons, drains or restarts an instance. Only local agents (those
    /// named by [`Engine::set_local`]) can be restarted by the server.
    pub async fn control(
        &self,
        instance: InstanceId,
        action: InstanceAction,
    ) -> Result<Result<(), ControlError>, Stopped> {
        if action == InstanceAction::Restart {
            let local = self.local.read().unwrap_or_else(|e| e.into_inner());
            if !local.contains(&instance) {
                return Ok(Err(ControlError::NotLocal(instance)));
            }
        }
        self.ask(|reply| Cmd::Control {
            instance,
            action,
            reply,
        })
        .await
    }

    /// A local instance's supervisor gave up on it.
    pub fn instance_failed(&self, instance: InstanceId, reason: String) {
        let _ = self.tx.send(Cmd::InstanceFailed { instance, reason });
    }

    /// The ids of the local agents this server supervises.
    pub fn set_local(&self, ids: impl IntoIterator<Item = InstanceId>) {
        let mut local = self.local.write().unwrap_or_else(|e| e.into_inner());
        local.extend(ids);
    }

    pub async fn instances(&self) -> Result<Vec<InstanceView>, Stopped> {
        self.ask(Cmd::Instances).await
    }

    /// The queue by required capabilities.
    pub async fn queue(&self) -> Result<Vec<QueueView>, Stopped> {
        self.ask(Cmd::Queue).await
    }

    pub(crate) async fn connect(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<Welcomed, ConnectError>>) -> Connect,
    ) -> Result<Result<Welcomed, ConnectError>, Stopped> {
        self.ask(|reply| Cmd::Connect(make(reply))).await
    }

    /// Stops a running attempt; its task fails with `reason`.
    pub fn stop_attempt(&self, attempt: AttemptKey, reason: String) {
        let _ = self.tx.send(Cmd::StopAttempt { attempt, reason });
    }

    /// The observer token given with an accepted task: this handle only, valid for
    /// `tokens.observer-ttl-seconds`.
    pub fn observer_token(&self, handle: &HandleId) -> String {
        let ttl = self.config.tokens.observer_ttl_s;
        self.tokens.mint_observer(handle, expiry(ttl))
    }

    /// A token a remote agent connects with: as `instance` only (any if `None`), valid
    /// for `ttl_s` seconds or `tokens.agent-ttl-seconds`.
    pub fn agent_token(&self, instance: Option<&InstanceId>, ttl_s: Option<u64>) -> String {
        let ttl = ttl_s.unwrap_or(self.config.tokens.agent_ttl_s);
        self.tokens.mint_agent(instance, expiry(ttl))
    }

    /// Revokes the token with this id from now on, for `reason`; kept across restarts.
    pub async fn revoke_token(&self, id: &str, reason: &str) -> Result<i64, StoreError> {
        let now = now_ms();
        self.store.revoke_token(id, now, reason).await?;
        self.tokens.revoke(id, now, reason.to_owned());
        tracing::warn!(token = id, reason, "token revoked");
        Ok(now)
    }

    pub(crate) fn instance_event(&self, instance: InstanceId, conn: u64, msg: FromInstance) {
        let _ = self.tx.send(Cmd::Instance {
            instance,
            conn,
            msg,
        });
    }
}

/// A checked request ready to store: its row, its shards and its validation report.
struct Prepared {
    row: TaskRow,
    request: RunRequest,
    shards: Vec<(TaskRow, RunRequest)>,
    shard_rows: Vec<TaskRow>,
    validation: String,
}

impl Prepared {
    fn new_task(&self) -> NewTask<'_> {
        NewTask {
            row: &self.row,
            shards: &self.shard_rows,
            validation: &self.validation,
            idempotency_key: self.request.idempotency_key.as_deref(),
        }
    }
}

/// The shards of a fanned-out task (none for a plain one): each a task of its own, with
/// its own handle, that requires its fan-out entry's capability and finds its index and
/// the count in `FLOTILLA_SHARD_INDEX` and `FLOTILLA_SHARD_COUNT`.
fn shard_tasks(parent: &TaskRow, request: &RunRequest) -> Vec<(TaskRow, RunRequest)> {
    if request.fan_mode().is_none() {
        return Vec::new();
    }
    let extra = request.shard_capabilities();
    let count = extra.len();
    extra
        .into_iter()
        .enumerate()
        .map(|(index, cap)| {
            // `<parent>.s<i>`, unless that is not a valid id (too long, or `..`).
            let id = TaskId::parse(&format!("{}.s{index}", parent.id))
                .unwrap_or_else(|_| TaskId::generate());
            let mut shard = request.clone();
            shard.id = Some(id.clone());
            shard.idempotency_key = None;
            if let Some(schedule) = shard.schedule.as_mut() {
                schedule.strategy = None;
                schedule.shards = None;
                schedule.fan_out.clear();
                schedule.min_instances = None;
                schedule.max_instances = None;
            }
            shard
                .env
                .insert("FLOTILLA_SHARD_INDEX".into(), index.to_string());
            shard
                .env
                .insert("FLOTILLA_SHARD_COUNT".into(), count.to_string());
            shard.capabilities.extend(cap);
            let row = TaskRow {
                id,
                handle: HandleId::generate(),
                run_id: parent.run_id.clone(),
                // unwrap: a RunRequest is plain data and always serialises.
                request: serde_json::to_string(&shard).unwrap(),
                parent: Some(parent.id.clone()),
                shard: Some(index as u32),
                ..parent.clone()
            };
            (row, shard)
        })
        .collect()
}

/// Writes every observer's join and leave to the store and its task's manifest.
async fn record_observers(
    store: Store,
    manifests: ManifestWriter,
    mut sessions: mpsc::UnboundedReceiver<SessionRecord>,
) {
    let mut tasks: std::collections::HashMap<HandleId, TaskId> = Default::default();
    while let Some(s) = sessions.recv().await {
        let task = match tasks.get(&s.handle) {
            Some(t) => t.clone(),
            None => match store.task_by_handle(&s.handle).await {
                Ok(Some(row)) => {
                    if tasks.len() > 10_000 {
                        tasks.clear();
                    }
                    tasks.insert(s.handle.clone(), row.id.clone());
                    row.id
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(observer = %s.id, error = %e, "observer session not recorded");
                    continue;
                }
            },
        };
        let record = ObserverRecord {
            id: s.id,
            joined_ms: s.joined_ms,
            left_ms: s.left_ms,
            from: s.from,
            last_offset: s.last_offset,
            frames: s.frames,
            bytes: s.bytes,
            policy: s.policy.as_str().to_owned(),
            reason: s.reason,
        };
        match store.record_observer(&task, &record).await {
            Ok(()) => manifests.touch(&task),
            Err(e) => {
                tracing::warn!(observer = %record.id, error = %e, "observer session not recorded")
            }
        }
    }
}

/// Keeps `out/<scope>/state.json` (`flotilla.handles-state`) in step: every live handle
/// with its task, state, last offset and observers, and the retained ones in sum;
/// rewritten every 2 s while something changed.
async fn write_handles_state(
    log: FrameLog,
    store: Store,
    observers: ObserverRegistry,
    rollouts: Arc<std::sync::Mutex<Rollouts>>,
    path: std::path::PathBuf,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    let mut tasks: std::collections::HashMap<HandleId, TaskId> = Default::default();
    let mut last_written: Option<serde_json::Value> = None;
    loop {
        every.tick().await;
        let handles = log.handles();
        let mut live = Vec::new();
        let (mut sealed, mut sealed_frames, mut sealed_bytes) = (0u64, 0u64, 0u64);
        for index in &handles {
            let wm = index.watermark();
            let kept = index.kept();
            if wm.sealed {
                sealed += 1;
                sealed_frames += (wm.last + 1).saturating_sub(kept.first);
                sealed_bytes += kept.bytes;
                continue;
            }
            if !tasks.contains_key(&index.handle) {
                if let Ok(Some(row)) = store.task_by_handle(&index.handle).await {
                    tasks.insert(index.handle.clone(), row.id);
                }
            }
            let task = tasks.get(&index.handle);
            let state = match task {
                Some(t) => store
                    .get_task(t)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.state.as_str()),
                None => None,
            };
            live.push(serde_json::json!({
                "handle": index.handle.as_str(),
                "task": task.map(|t| t.as_str()),
                "state": state,
                "firstOffset": kept.first,
                "lastOffset": wm.last,
                "keptBytes": kept.bytes,
                "truncated": kept.truncated.map(|r| r.as_str()),
                "observers": observers.of(&index.handle).len(),
            }));
        }
        tasks.retain(|h, _| log.handle(h).is_some_and(|i| !i.watermark().sealed));
        let counters = log.counters();
        let limits = log.retention();
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let removed: serde_json::Map<String, serde_json::Value> = TruncateReason::ALL
            .iter()
            .map(|r| {
                let n = load(&counters.removed_frames[r.to_byte() as usize - 1]);
                (r.as_str().to_owned(), n.into())
            })
            .collect();
        let review = rollouts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .review()
            .cloned();
        let mut body = serde_json::json!({
            "log": {
                "bytes": load(&counters.size),
                "segments": load(&counters.segments),
                "handles": handles.len(),
                "lostFrames": load(&counters.lost_frames),
            },
            "retention": {
                "handleMaxBytes": limits.handle_max_bytes,
                "maxAgeSeconds": limits.max_age_ms / 1000,
                "budgetBytes": limits.budget_bytes,
                "segmentBytes": limits.segment_bytes,
                "removedFrames": removed,
                "deletedSegments": load(&counters.deleted_segments),
                "deletedBytes": load(&counters.deleted_bytes),
            },
            "live": live,
            "retained": {"handles": sealed, "frames": sealed_frames, "bytes": sealed_bytes},
        });
        if let Some(review) = review {
            body["rolloutReview"] = review;
        }
        if last_written.as_ref() == Some(&body) {
            continue;
        }
        let mut doc = body.clone();
        doc["schema"] = "flotilla.handles-state/1.2.0".into();
        doc["writtenAt"] = crate::domain::rfc3339_ms(now_ms()).into();
        // unwrap: a serde_json::Value always serialises.
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        match crate::files::write_atomic(&path, &bytes) {
            Ok(()) => last_written = Some(body),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "handles state not written")
            }
        }
    }
}
