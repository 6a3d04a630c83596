//! ManifestWriter: keeps `.runs/<task-id>/cli/<run-id>/manifest.json` in step with the store.
//!
//! Owns nothing but a queue of task ids whose manifest is stale. The dispatcher sends a
//! task id after every change it committed; the writer reads the task and its attempts back
//! from the store and rewrites the whole file atomically (temp file + rename), so the file
//! always reflects a committed state and a burst of changes costs one write. A restart loses
//! only pending rewrites, which the next change (or recovery at start) redoes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::control_plane::ValidationReport;
use crate::domain::{now_ms, rfc3339_ms, RunId, Scope, TaskId};
use crate::lifeline::Lifeline;
use crate::store::{
    AttemptRow, Checkpoint, DecisionRow, GuardRunRow, InstanceStats, ObserverRecord, Store, TaskRow,
};

pub const MANIFEST_SCHEMA: &str = "flotilla.manifest/2.2.0";
/// The v1 schema [`to_v1`] adapts to.
pub const MANIFEST_V1_SCHEMA: &str = "flotilla.manifest/1.2.0";
pub const RUN_METRICS_SCHEMA: &str = "flotilla.run-metrics/1.1.0";

/// How long a change may wait to be written with the changes that follow it.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(200);
/// A manifest written within this long after its task's last change may hold a row read
/// before that change: [`ManifestWriter::touch_if_stale`] reads it to be sure.
const UNSURE_AFTER_MS: i64 = 60_000;

/// Errors writing a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Where a task's manifest lives under the artifacts root.
pub fn manifest_path(artifacts: &Path, task: &TaskId, run: &RunId) -> PathBuf {
    artifacts
        .join(".runs")
        .join(task.as_str())
        .join("cli")
        .join(run.as_str())
        .join("manifest.json")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema: &'static str,
    task_id: &'a str,
    run_id: &'a str,
    handle: &'a str,
    request: Value,
    control_plane: ControlPlaneSection,
    state: &'static str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    reason: Option<&'a str>,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
    written_at: String,
    attempts: Vec<AttemptEntry<'a>>,
    privacy: PrivacySection<'a>,
    parent: Option<&'a str>,
    shard: Option<u32>,
    fan_out: Option<FanOutSection<'a>>,
    recovery: Vec<CheckpointEntry<'a>>,
    observers: Vec<ObserverEntry<'a>>,
}

/// A fanned-out task's shards.
#[derive(Serialize)]
struct FanOutSection<'a> {
    mode: &'a str,
    shards: Vec<ShardEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShardEntry<'a> {
    shard: u32,
    task_id: &'a str,
    handle: &'a str,
    instance: Option<&'a str>,
    state: &'static str,
    started_at: Option<String>,
    ended_at: Option<String>,
    attempts: Vec<ShardAttempt<'a>>,
}

#[derive(Serialize)]
struct ShardAttempt<'a> {
    attempt: u32,
    instance: &'a str,
    state: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointEntry<'a> {
    ts: String,
    reason: &'a str,
    action: &'static str,
    from_instance: Option<&'a str>,
    to_instance: Option<&'a str>,
    attempt: u32,
    epoch: u64,
}

/// A shard as stored, with its attempts.
pub type ShardRecord = (TaskRow, Vec<AttemptRow>);

/// What recovery, fan-out and observers add to a task's manifest (v2).
#[derive(Default)]
pub struct FleetEvidence {
    pub checkpoints: Vec<Checkpoint>,
    /// A fanned-out task's mode (`fan-out`, `first-wins`) and its shards.
    pub fan_out: Option<(&'static str, Vec<ShardRecord>)>,
    /// The first observers of its output (up to 1,000), oldest first.
    pub observers: Vec<ObserverRecord>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObserverEntry<'a> {
    id: &'a str,
    joined_at: String,
    left_at: Option<String>,
    from: u64,
    last_offset: u64,
    frames: u64,
    bytes: u64,
    policy: &'a str,
    reason: Option<&'a str>,
}

/// What the guard did with the task's output, and on what evidence.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrivacySection<'a> {
    level: String,
    /// Mode, policy approval and overrides of each attempt.
    attempts: &'a [GuardRunRow],
    /// Every approval the runs acted on; the records are in `approvalsFile`.
    approvals: Vec<&'a str>,
    approvals_file: &'a str,
    /// The first decisions (up to 1,000 per attempt): rule, kind, action, digest, offsets.
    guard_decisions: &'a [DecisionRow],
    guard_decisions_total: u64,
}

/// What the guard recorded about one task.
pub struct GuardEvidence {
    /// The control plane's stored report on the request (JSON), if any.
    pub validation: Option<String>,
    /// Where the approvals are recorded, relative to the artifacts root.
    pub approvals_file: String,
    pub runs: Vec<GuardRunRow>,
    pub decisions: Vec<DecisionRow>,
}

impl GuardEvidence {
    fn total(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| r.decisions)
            .sum::<u64>()
            .max(self.decisions.len() as u64)
    }
}

#[derive(Serialize)]
struct ControlPlaneSection {
    validation: ValidationReport,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptEntry<'a> {
    attempt: u32,
    instance: &'a str,
    state: &'a str,
    started_at: String,
    ended_at: Option<String>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    detail: Option<&'a str>,
}

/// Renders the manifest document of a task.
pub fn render(
    task: &TaskRow,
    attempts: &[AttemptRow],
    guard: &GuardEvidence,
    fleet: &FleetEvidence,
) -> Value {
    let request = crate::guard::shown_request(&task.request);
    let level = request
        .pointer("/constraints/privacy")
        .and_then(Value::as_str)
        .unwrap_or("standard")
        .to_owned();
    let mut approvals: Vec<&str> = guard
        .runs
        .iter()
        .flat_map(|r| r.policy_approval.iter().chain(r.overrides.iter()))
        .map(String::as_str)
        .collect();
    approvals.sort_unstable();
    approvals.dedup();
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        task_id: task.id.as_str(),
        run_id: task.run_id.as_str(),
        handle: task.handle.as_str(),
        request,
        control_plane: ControlPlaneSection {
            validation: guard
                .validation
                .as_deref()
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_else(ValidationReport::legacy),
        },
        state: task.state.as_str(),
        exit_code: task.exit_code,
        signal: task.signal,
        reason: task.reason.as_deref(),
        created_at: rfc3339_ms(task.created_ms),
        updated_at: rfc3339_ms(task.updated_ms),
        finished_at: task.finished_ms.map(rfc3339_ms),
        written_at: rfc3339_ms(now_ms()),
        attempts: attempts
            .iter()
            .map(|a| AttemptEntry {
                attempt: a.attempt_no,
                instance: a.instance.as_str(),
                state: &a.state,
                started_at: rfc3339_ms(a.started_ms),
                ended_at: a.ended_ms.map(rfc3339_ms),
                exit_code: a.exit_code,
                signal: a.signal,
                detail: a.detail.as_deref(),
            })
            .collect(),
        privacy: PrivacySection {
            level,
            attempts: &guard.runs,
            approvals,
            approvals_file: &guard.approvals_file,
            guard_decisions: &guard.decisions,
            guard_decisions_total: guard.total(),
        },
        parent: task.parent.as_ref().map(|p| p.as_str()),
        shard: task.shard,
        fan_out: fleet.fan_out.as_ref().map(|(mode, shards)| FanOutSection {
            mode,
            shards: shards
                .iter()
                .map(|(row, attempts)| ShardEntry {
                    shard: row.shard.unwrap_or(0),
                    task_id: row.id.as_str(),
                    handle: row.handle.as_str(),
                    instance: row.instance.as_ref().map(|i| i.as_str()),
                    state: row.state.as_str(),
                    started_at: attempts.first().map(|a| rfc3339_ms(a.started_ms)),
                    ended_at: row.finished_ms.map(rfc3339_ms),
                    attempts: attempts
                        .iter()
                        .map(|a| ShardAttempt {
                            attempt: a.attempt_no,
                            instance: a.instance.as_str(),
                            state: &a.state,
                        })
                        .collect(),
                })
                .collect(),
        }),
        recovery: fleet
            .checkpoints
            .iter()
            .map(|c| CheckpointEntry {
                ts: rfc3339_ms(c.ts_ms),
                reason: &c.reason,
                action: c.action.as_str(),
                from_instance: c.from_instance.as_ref().map(|i| i.as_str()),
                to_instance: c.to_instance.as_ref().map(|i| i.as_str()),
                attempt: c.attempt_no,
                epoch: c.epoch,
            })
            .collect(),
        observers: fleet
            .observers
            .iter()
            .map(|o| ObserverEntry {
                id: &o.id,
                joined_at: rfc3339_ms(o.joined_ms),
                left_at: o.left_ms.map(rfc3339_ms),
                from: o.from,
                last_offset: o.last_offset,
                frames: o.frames,
                bytes: o.bytes,
                policy: &o.policy,
                reason: o.reason.as_deref(),
            })
            .collect(),
    };
    // unwrap: a struct of strings, numbers and JSON values always serialises.
    serde_json::to_value(&manifest).unwrap()
}

/// A v2 manifest as v1 readers expect it: the v2 fields (parent, shard, fanOut,
/// recovery) dropped, and what v1 does not know shown as its nearest v1 word: the task
/// state `poisoned` as `failed` (its reason still says poisoned), the attempt state
/// `fenced` as `lost` (its detail says why). A v1 document is returned as it is.
pub fn to_v1(v2: &Value) -> Value {
    let mut doc = v2.clone();
    if !doc["schema"]
        .as_str()
        .is_some_and(|s| s.starts_with("flotilla.manifest/2."))
    {
        return doc;
    }
    if let Some(map) = doc.as_object_mut() {
        for field in ["parent", "shard", "fanOut", "recovery", "observers"] {
            map.remove(field);
        }
        map.insert("schema".into(), MANIFEST_V1_SCHEMA.into());
        if map.get("state").and_then(Value::as_str) == Some("poisoned") {
            map.insert("state".into(), "failed".into());
        }
        // v1 knows a fenced attempt only as lost.
        for attempt in map
            .get_mut("attempts")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if attempt["state"] == "fenced" {
                attempt["state"] = "lost".into();
            }
        }
    }
    doc
}

/// The dimensions a run's metrics may be asked to carry (`metrics.requiredDimensions`).
pub const DIMENSIONS: [&str; 5] = ["task", "instance", "capability", "attempt", "privacy"];

/// How often a running task's `metrics.json` is rewritten when its request names no
/// `metrics.emitIntervalMs`.
pub const DEFAULT_EMIT_INTERVAL_MS: u64 = 5_000;

/// What a run's metrics are written from.
pub struct MetricsEvidence<'a> {
    pub attempts: &'a [AttemptRow],
    pub guard: &'a GuardEvidence,
    /// Each instance that ran one of its attempts, as recorded.
    pub instances: &'a [InstanceStats],
    /// The request's `metrics.requiredDimensions`.
    pub required: &'a [String],
}

/// `.runs/<task-id>/metrics.json`: per-run figures (`privacyEvents`, `instanceStats`),
/// and which of the dimensions it was asked for it carries.
pub fn render_metrics(task: &TaskRow, e: &MetricsEvidence<'_>) -> Value {
    let guard = e.guard;
    let mut by_action = std::collections::BTreeMap::<&str, u64>::new();
    let mut by_rule = std::collections::BTreeMap::<&str, u64>::new();
    let mut applied = 0;
    for d in &guard.decisions {
        *by_action.entry(d.action).or_default() += 1;
        *by_rule.entry(d.rule.as_str()).or_default() += 1;
        applied += u64::from(d.applied);
    }
    let mut by_state = std::collections::BTreeMap::<&str, u64>::new();
    for a in e.attempts {
        *by_state.entry(a.state.as_str()).or_default() += 1;
    }
    let instance_stats: serde_json::Map<String, Value> = e
        .instances
        .iter()
        .map(|i| (i.instance.as_str().to_owned(), i.view()))
        .collect();
    let present: Vec<&str> = DIMENSIONS
        .into_iter()
        .filter(|d| match *d {
            "task" => true,
            "instance" => !e.instances.is_empty(),
            "capability" => e.instances.iter().any(|i| !i.capabilities.is_empty()),
            "attempt" => !e.attempts.is_empty(),
            _ => !guard.runs.is_empty(),
        })
        .collect();
    let missing: Vec<&str> = e
        .required
        .iter()
        .map(String::as_str)
        .filter(|d| !present.contains(d))
        .collect();
    serde_json::json!({
        "schema": RUN_METRICS_SCHEMA,
        "taskId": task.id.as_str(),
        "runId": task.run_id.as_str(),
        "state": task.state.as_str(),
        "writtenAt": rfc3339_ms(now_ms()),
        "attempts": { "total": e.attempts.len(), "byState": by_state },
        "privacyEvents": {
            "total": guard.total(),
            "stored": guard.decisions.len(),
            "applied": applied,
            "byAction": by_action,
            "byRule": by_rule,
        },
        "instanceStats": instance_stats,
        "dimensions": { "required": e.required, "present": present, "missing": missing },
    })
}

pub fn metrics_path(artifacts: &Path, task: &TaskId) -> PathBuf {
    artifacts
        .join(".runs")
        .join(task.as_str())
        .join("metrics.json")
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct ManifestWriter {
    tx: mpsc::UnboundedSender<TaskId>,
    artifacts: PathBuf,
}

impl ManifestWriter {
    /// Starts the writer for manifests under `artifacts` on a thread of its own, at the
    /// lowest CPU priority: manifests are derived evidence, rebuilt from the store, so
    /// under a burst they may lag behind the tasks, never the other way round.
    pub fn start(store: Store, artifacts: PathBuf, scope: Scope) -> Self {
        Self::start_watched(
            store,
            artifacts,
            scope,
            Lifeline::unwatched("manifest writer"),
        )
    }

    /// [`start`](Self::start), with `lifeline` reporting the thread's end.
    pub fn start_watched(
        store: Store,
        artifacts: PathBuf,
        scope: Scope,
        lifeline: Lifeline,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<TaskId>();
        let root = artifacts.clone();
        let spawned = std::thread::Builder::new()
            .name("manifest-writer".into())
            .spawn(move || {
                let _lifeline = lifeline;
                // SAFETY: setpriority on the calling thread (who = 0) only lowers its own
                // scheduling priority; failure leaves the default, which is harmless.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                }
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(write_loop(store, artifacts, scope, rx)),
                    Err(e) => tracing::error!(error = %e, "manifest writer did not start"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "manifest writer thread did not start");
        }
        Self {
            tx,
            artifacts: root,
        }
    }

    /// Marks a task's manifest stale; it is rewritten soon after.
    pub fn touch(&self, task: &TaskId) {
        let _ = self.tx.send(task.clone());
    }

    /// Rewrites a finished task's manifest if it is missing or behind the task's last
    /// change: a crash inside the 200 ms a write is gathered over must not leave a
    /// manifest behind its task for good.
    ///
    /// A file older than the change is stale. A file written soon after it may still be
    /// stale: the writer may have read the row just before the change committed and
    /// written the file just after. Such a file is read, and is fresh only if it records
    /// the row's `updatedAt`. Files written long after the change are not read, so a
    /// restart over many finished tasks costs about a `stat` each.
    pub fn touch_if_stale(&self, row: &TaskRow) {
        let path = manifest_path(&self.artifacts, &row.id, &row.run_id);
        let written_ms = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        let stale = match written_ms {
            None => true,
            Some(w) if w < row.updated_ms => true,
            Some(w) if w < row.updated_ms + UNSURE_AFTER_MS => {
                let recorded = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|m| {
                        m.get("updatedAt")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    });
                recorded.as_deref() != Some(rfc3339_ms(row.updated_ms).as_str())
            }
            Some(_) => false,
        };
        if stale {
            self.touch(&row.id);
        }
    }
}

async fn write_loop(
    store: Store,
    artifacts: PathBuf,
    scope: Scope,
    mut rx: mpsc::UnboundedReceiver<TaskId>,
) {
    // Running tasks, by when their metrics are next due and how often.
    let mut running: BTreeMap<TaskId, (i64, i64)> = BTreeMap::new();
    loop {
        let next_due = running.values().map(|(due, _)| *due).min();
        let first = tokio::select! {
            got = rx.recv() => match got {
                Some(task) => Some(task),
                None => return,
            },
            _ = sleep_until_ms(next_due), if next_due.is_some() => None,
        };
        let mut stale = BTreeSet::new();
        if let Some(first) = first {
            // Gather the changes of a short window into one write per task: a short
            // task's accepted → running → finished then costs one rewrite, not three.
            tokio::time::sleep(COALESCE).await;
            stale.insert(first);
            while let Ok(more) = rx.try_recv() {
                stale.insert(more);
            }
        }
        let now = now_ms();
        // A running task whose interval is up and that did not change: its metrics only.
        let due: Vec<TaskId> = running
            .iter()
            .filter(|(task, (due, _))| *due <= now && !stale.contains(*task))
            .map(|(task, _)| task.clone())
            .collect();
        let writes = stale
            .iter()
            .map(|t| (t, Files::Both))
            .chain(due.iter().map(|t| (t, Files::Metrics)));
        // A shard's change shows in its fanned-out task's manifest too.
        let mut parents = BTreeSet::new();
        for (task, files) in writes {
            match write_one(&store, &artifacts, &scope, task, files).await {
                Ok(w) => {
                    match w.emit_every_ms {
                        Some(every) => running.insert(task.clone(), (now_ms() + every, every)),
                        None => running.remove(task),
                    };
                    if let Some(parent) = w.parent.filter(|p| !stale.contains(p)) {
                        parents.insert(parent);
                    }
                }
                Err(e) => {
                    // Tried again on its next change, or its next interval.
                    if let Some((due, every)) = running.get_mut(task) {
                        *due = now_ms() + *every;
                    }
                    tracing::warn!(task = %task, error = %e, "manifest not written")
                }
            }
        }
        for task in parents {
            if let Err(e) = write_one(&store, &artifacts, &scope, &task, Files::Both).await {
                tracing::warn!(task = %task, error = %e, "manifest not written");
            }
        }
    }
}

async fn sleep_until_ms(at_ms: Option<i64>) {
    let wait = at_ms.map_or(0, |at| (at - now_ms()).max(0));
    tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
}

/// Which of a task's files to write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Files {
    /// Its metrics and its manifest: the task changed.
    Both,
    /// Its metrics alone: a running task's interval is up.
    Metrics,
}

/// What writing one task's files found.
struct Written {
    /// Its fanned-out task, if it is a shard.
    parent: Option<TaskId>,
    /// While it runs: how often its metrics are rewritten.
    emit_every_ms: Option<i64>,
}

/// Writes one task's metrics and (for `Files::Both`) its manifest.
async fn write_one(
    store: &Store,
    artifacts: &Path,
    scope: &Scope,
    task: &TaskId,
    files: Files,
) -> Result<Written, ManifestError> {
    let Some(row) = store.get_task(task).await? else {
        return Ok(Written {
            parent: None,
            emit_every_ms: None,
        });
    };
    let attempts = store.attempts_of(task).await?;
    let both = files == Files::Both;
    let guard = GuardEvidence {
        validation: if both {
            store.validation_of(task).await?
        } else {
            None
        },
        approvals_file: format!(".runs/{scope}/approvals/latest.json"),
        runs: store.guard_runs_of(task).await?,
        decisions: store.decisions_of(task, 1000 * row.attempts.max(1)).await?,
    };
    let request = crate::control_plane::RunRequest::from_stored(&row.request).ok();
    let mode = request
        .as_ref()
        .and_then(|r| r.fan_mode())
        .filter(|_| row.parent.is_none());
    let spec = request
        .as_ref()
        .and_then(|r| r.metrics.clone())
        .unwrap_or_default();
    let fan_out = match mode.filter(|_| both) {
        Some(mode) => {
            let mut shards = Vec::new();
            for shard in store.shards_of(task).await? {
                let attempts = store.attempts_of(&shard.id).await?;
                shards.push((shard, attempts));
            }
            Some((mode.as_str(), shards))
        }
        None => None,
    };
    let fleet = if both {
        FleetEvidence {
            checkpoints: store.checkpoints_of(task).await?,
            fan_out,
            observers: store.observers_of(task, 1000).await?,
        }
    } else {
        FleetEvidence::default()
    };
    let write = |path: PathBuf, doc: Value| {
        // unwrap: a serde_json::Value always serialises.
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        // This thread exists for this work: blocking here holds up nothing else.
        crate::files::write_atomic(&path, &bytes)
            .map_err(|source| ManifestError::Io { path, source })
    };
    let now = now_ms();
    let mut instances = Vec::new();
    let mut seen = BTreeSet::new();
    for a in &attempts {
        if seen.insert(&a.instance) {
            instances.extend(store.instance_stats(&a.instance, now).await?);
        }
    }
    let evidence = MetricsEvidence {
        attempts: &attempts,
        guard: &guard,
        instances: &instances,
        required: &spec.required_dimensions,
    };
    // Metrics first: a manifest that shows a state is the sign that everything written
    // for that state is on disk.
    write(
        metrics_path(artifacts, &row.id),
        render_metrics(&row, &evidence),
    )?;
    if both {
        write(
            manifest_path(artifacts, &row.id, &row.run_id),
            render(&row, &attempts, &guard, &fleet),
        )?;
    }
    let emit_every_ms = (row.state == crate::domain::TaskState::Running)
        .then(|| spec.emit_interval_ms.unwrap_or(DEFAULT_EMIT_INTERVAL_MS) as i64);
    Ok(Written {
        parent: row.parent,
        emit_every_ms,
    })
}
