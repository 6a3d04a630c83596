//! The store: every SQL statement of flotilla lives here.
//!
//! SQLite through sqlx by default (one embedded file, WAL mode, migrations applied at open).
//! The SQL is kept portable so PostgreSQL can back several orchestrator nodes later.
//! A write returns only once SQLite has committed it, so a task acknowledged to a client
//! survives a crash of the server process.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::domain::{End, HandleId, InstanceId, RunId, TaskId, TaskState};
use crate::protocol::AttemptKey;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a task with id {0} already exists")]
    Duplicate(TaskId),
    #[error("idempotency key already used by task {0}")]
    Idempotent(TaskId),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

impl StoreError {
    /// True when the same write may succeed later: the disk is full, an I/O error, the
    /// database busy. Constraint violations and bad rows are not.
    pub fn transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                // SQLite's primary result code is the low byte of the extended one.
                let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
                // BUSY, LOCKED, IOERR, FULL, CANTOPEN
                matches!(code, 5 | 6 | 10 | 13 | 14)
            }
            _ => false,
        }
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: TaskId,
    pub handle: HandleId,
    pub run_id: RunId,
    /// The validated request, as JSON text.
    pub request: String,
    pub state: TaskState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub instance: Option<InstanceId>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    /// A shard's fanned-out task, and the shard's index in it.
    pub parent: Option<TaskId>,
    pub shard: Option<u32>,
}

impl TaskRow {
    /// Its recorded state, exit code, signal and reason.
    pub fn end(&self) -> TaskUpdate {
        End {
            state: self.state,
            exit_code: self.exit_code,
            signal: self.signal,
            reason: self.reason.clone(),
        }
    }
}

/// How an attempt ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    Running,
    Exited,
    Lost,
    Cancelled,
    TimedOut,
    SpawnFailed,
    /// Its lease ran out while its instance was still connected: the instance was told to
    /// kill it, and whatever it still reports of it is discarded.
    Fenced,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Running => "running",
            AttemptState::Exited => "exited",
            AttemptState::Lost => "lost",
            AttemptState::Cancelled => "cancelled",
            AttemptState::TimedOut => "timed_out",
            AttemptState::SpawnFailed => "spawn_failed",
            AttemptState::Fenced => "fenced",
        }
    }
}

/// An attempt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub key: AttemptKey,
    pub attempt_no: u32,
    pub instance: InstanceId,
    pub state: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub detail: Option<String>,
}

/// Which tasks a page lists (every field optional; all given must match).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// In one of these states (any, if empty).
    pub states: Vec<TaskState>,
    /// With an attempt on this instance.
    pub instance: Option<InstanceId>,
    /// Requiring this capability.
    pub capability: Option<String>,
    /// Whose id starts with this.
    pub id_prefix: Option<String>,
}

/// An attempt recorded as running.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAttempt {
    pub key: AttemptKey,
    pub task: TaskId,
    pub attempt_no: u32,
    pub instance: InstanceId,
}

/// The end of an attempt, to record.
pub type AttemptEnd = End<AttemptState>;

/// A task's new state, to record.
pub type TaskUpdate = End<TaskState>;

/// What recovery did to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointAction {
    /// A lost attempt's task queued again, to run elsewhere.
    Requeue,
    /// The next attempt after a requeue or retry started, on `toInstance`.
    Reschedule,
    /// An attempt's instance was told to kill it; its output and outcome are discarded.
    Fence,
    /// After a restart of the server, an agent offered back a running attempt.
    Reattach,
    /// A timeout or non-zero exit retried after a backoff (`recovery.retryOn`).
    Retry,
    /// The task took down every instance it ran on and stops.
    Poison,
    /// Frames of the task's output were lost to a damaged record of the frame log.
    OutputLost,
}

impl CheckpointAction {
    pub const ALL: [CheckpointAction; 7] = [
        CheckpointAction::Requeue,
        CheckpointAction::Reschedule,
        CheckpointAction::Fence,
        CheckpointAction::Reattach,
        CheckpointAction::Retry,
        CheckpointAction::Poison,
        CheckpointAction::OutputLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointAction::Requeue => "requeue",
            CheckpointAction::Reschedule => "reschedule",
            CheckpointAction::Fence => "fence",
            CheckpointAction::Reattach => "reattach",
            CheckpointAction::Retry => "retry",
            CheckpointAction::Poison => "poison",
            CheckpointAction::OutputLost => "output-lost",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown checkpoint action {s:?}"))
    }
}

/// One observer's session on a task's output, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserverRecord {
    pub id: String,
    pub joined_ms: i64,
    /// `None` while it is connected.
    pub left_ms: Option<i64>,
    pub from: u64,
    pub last_offset: u64,
    pub frames: u64,
    pub bytes: u64,
    pub policy: String,
    pub reason: Option<String>,
}

/// One recovery checkpoint of a task. Its epoch is the attempt key it concerns: keys
/// only grow and are never reused, so a fence names exactly the attempt it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub ts_ms: i64,
    pub action: CheckpointAction,
    pub reason: String,
    pub from_instance: Option<InstanceId>,
    pub to_instance: Option<InstanceId>,
    pub attempt_no: u32,
    pub epoch: AttemptKey,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

const TASK_COLUMNS: &str = "id, handle, run_id, request, state, attempts, max_attempts, instance, \
     exit_code, signal, reason, created_ms, updated_ms, finished_ms, parent, shard";

impl Store {
    /// Opens (creating if missing) the database file and applies the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a crash of the process (what the guarantee
            // promises); fsync happens at checkpoints.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A file on this machine cannot drop like a network connection: a ping
            // before each use is one more trip to the connection's thread, for nothing.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Inserts a new queued task; fails with [`StoreError::Duplicate`] if the id exists.
    pub async fn insert_task(&self, row: &TaskRow) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_task_in(&mut conn, row, None).await
    }

    /// Stores a submission: the task with its validation report and, in the same
    /// transaction, its shards and its idempotency key: all or nothing. A key already
    /// used fails with [`StoreError::Idempotent`] naming the task that has it; an id in
    /// use with [`StoreError::Duplicate`].
    pub async fn insert_submission(&self, task: &NewTask<'_>) -> Result<(), StoreError> {
        if task.idempotency_key.is_none() && task.shards.is_empty() {
            // The common case: one statement, committed on its own.
            let mut conn = self.pool.acquire().await?;
            return insert_task_in(&mut conn, task.row, Some(task.validation)).await;
        }
        let mut results = self.insert_batch(std::slice::from_ref(task)).await?;
        results.pop().unwrap_or(Ok(()))
    }

    /// Stores several submissions in one transaction, each with its own result: an id
    /// in use or a key already used refuses that submission only (its savepoint is
    /// rolled back), and the others commit together. A key used twice in one batch
    /// gives the second the first's task.
    pub async fn insert_batch(
        &self,
        tasks: &[NewTask<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        use sqlx::Connection;
        let mut tx = self.pool.begin().await?;
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            if task.idempotency_key.is_none() && task.shards.is_empty() {
                // One statement: SQLite undoes a failed one on its own, without a
                // savepoint (two fewer trips to the connection per item).
                match insert_new_in(&mut tx, task).await {
                    Ok(()) => results.push(Ok(())),
                    Err(e @ StoreError::Duplicate(_)) => results.push(Err(e)),
                    Err(e) => return Err(e),
                }
                continue;
            }
            let mut item = tx.begin().await?;
            match insert_new_in(&mut item, task).await {
                Ok(()) => {
                    item.commit().await?;
                    results.push(Ok(()));
                }
                Err(e @ (StoreError::Duplicate(_) | StoreError::Idempotent(_))) => {
                    item.rollback().await?;
                    results.push(Err(e));
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(results)
    }

    pub async fn task_by_idempotency_key(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        key_holder_in(&mut conn, key).await
    }

    /// The validation report stored with a task, as JSON text.
    pub async fn validation_of(&self, task: &TaskId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT validation FROM tasks WHERE id = ?")
            .bind(task.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get(0).transpose()).transpose()?)
    }
}

/// A submission to store.
pub struct NewTask<'a> {
    pub row: &'a TaskRow,
    /// A fanned-out task's shards, each naming `row` as its parent.
    pub shards: &'a [TaskRow],
    /// The control plane's report on the request, as JSON.
    pub validation: &'a str,
    pub idempotency_key: Option<&'a str>,
}

/// The task that holds an idempotency key, if one does.
async fn key_holder_in(
    conn: &mut sqlx::SqliteConnection,
    key: &str,
) -> Result<Option<TaskId>, StoreError> {
    let row = sqlx::query("SELECT task_id FROM idempotency_keys WHERE idempotency_key = ?")
        .bind(key)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        parse_col(
            "idempotency_keys",
            r.try_get::<String, _>(0)?,
            TaskId::parse,
        )
    })
    .transpose()
}

/// Inserts one submission: its key checked first, then the task, its shards and its key.
async fn insert_new_in(
    conn: &mut sqlx::SqliteConnection,
    task: &NewTask<'_>,
) -> Result<(), StoreError> {
    if let Some(key) = task.idempotency_key {
        if let Some(first) = key_holder_in(&mut *conn, key).await? {
            return Err(StoreError::Idempotent(first));
        }
    }
    insert_task_in(conn, task.row, Some(task.validation)).await?;
    for shard in task.shards {
        insert_task_in(conn, shard, Some(task.validation)).await?;
    }
    let Some(key) = task.idempotency_key else {
        return Ok(());
    };
    let inserted =
        sqlx::query("INSERT INTO idempotency_keys (idempotency_key, task_id) VALUES (?, ?)")
            .bind(key)
            .bind(task.row.id.as_str())
            .execute(&mut *conn)
            .await;
    match inserted {
        Ok(_) => Ok(()),
        // Another submission with the key committed first: it wins.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(key_holder_in(&mut *conn, key).await?.map_or(
                StoreError::Duplicate(task.row.id.clone()),
                StoreError::Idempotent,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn insert_task_in(
    conn: &mut sqlx::SqliteConnection,
    row: &TaskRow,
    validation: Option<&str>,
) -> Result<(), StoreError> {
    {
        let result = sqlx::query(
            "INSERT INTO tasks (id, handle, run_id, request, state, attempts, max_attempts, \
             instance, exit_code, signal, reason, created_ms, updated_ms, finished_ms, \
             validation, parent, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.id.as_str())
        .bind(row.handle.as_str())
        .bind(row.run_id.as_str())
        .bind(&row.request)
        .bind(row.state.as_str())
        .bind(row.attempts as i64)
        .bind(row.max_attempts as i64)
        .bind(row.instance.as_ref().map(|i| i.as_str().to_owned()))
        .bind(row.exit_code)
        .bind(row.signal)
        .bind(&row.reason)
        .bind(row.created_ms)
        .bind(row.updated_ms)
        .bind(row.finished_ms)
        .bind(validation)
        .bind(row.parent.as_ref().map(|p| p.as_str().to_owned()))
        .bind(row.shard.map(i64::from))
        .execute(&mut *conn)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Duplicate(row.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Store {
    pub async fn get_task(&self, id: &TaskId) -> Result<Option<TaskRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| task_from_row(&r)).transpose()
    }

    /// The task whose output stream is `handle`.
    pub async fn task_by_handle(&self, handle: &HandleId) -> Result<Option<TaskRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE handle = ?"
        ))
        .bind(handle.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| task_from_row(&r)).transpose()
    }

    /// Records a checkpoint of `task` outside any other change.
    pub async fn insert_checkpoint(&self, task: &TaskId, c: &Checkpoint) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_checkpoint_in(&mut conn, task, c).await
    }

    /// The shards of a fanned-out task, by index.
    pub async fn shards_of(&self, parent: &TaskId) -> Result<Vec<TaskRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE parent = ? ORDER BY shard"
        ))
        .bind(parent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// The recovery checkpoints of a task, oldest first.
    pub async fn checkpoints_of(&self, task: &TaskId) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts_ms, action, reason, from_instance, to_instance, attempt_no, epoch \
             FROM checkpoints WHERE task_id = ? ORDER BY id",
        )
        .bind(task.as_str())
        .fetch_all(&self.pool)
        .await?;
        let instance = |v: Option<String>| {
            v.map(|s| parse_col("checkpoints", s, InstanceId::parse))
                .transpose()
        };
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    ts_ms: r.try_get(0)?,
                    action: parse_col("checkpoints", r.try_get(1)?, CheckpointAction::parse)?,
                    reason: r.try_get(2)?,
                    from_instance: instance(r.try_get(3)?)?,
                    to_instance: instance(r.try_get(4)?)?,
                    attempt_no: r.try_get::<i64, _>(5)? as u32,
                    epoch: r.try_get::<i64, _>(6)? as AttemptKey,
                })
            })
            .collect()
    }

    /// Tasks, newest first, optionally only those in `state`.
    pub async fn list_tasks(
        &self,
        state: Option<TaskState>,
        limit: u32,
    ) -> Result<Vec<TaskRow>, StoreError> {
        let rows = match state {
            Some(st) => {
                sqlx::query(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE state = ? ORDER BY created_ms DESC, id LIMIT ?"
                ))
                .bind(st.as_str())
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_ms DESC, id LIMIT ?"
                ))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(task_from_row).collect()
    }

    /// Up to `limit` tasks matching `filter`, newest first (by acceptance, then id),
    /// after the task `after` names (its acceptance time and id), if any.
    pub async fn page_tasks(
        &self,
        filter: &TaskFilter,
        after: Option<(i64, &TaskId)>,
        limit: u32,
    ) -> Result<Vec<TaskRow>, StoreError> {
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1");
        if !filter.states.is_empty() {
            let marks = vec!["?"; filter.states.len()].join(", ");
            sql.push_str(&format!(" AND state IN ({marks})"));
        }
        if filter.instance.is_some() {
            sql.push_str(" AND id IN (SELECT task_id FROM attempts WHERE instance = ?)");
        }
        if filter.capability.is_some() {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(tasks.request, '$.capabilities')                  WHERE json_each.value = ?)",
            );
        }
        if filter.id_prefix.is_some() {
            sql.push_str(" AND substr(id, 1, ?) = ?");
        }
        if after.is_some() {
            sql.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
        }
        sql.push_str(" ORDER BY created_ms DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        for st in &filter.states {
            q = q.bind(st.as_str());
        }
        if let Some(i) = &filter.instance {
            q = q.bind(i.as_str());
        }
        if let Some(c) = &filter.capability {
            q = q.bind(c.as_str());
        }
        if let Some(p) = &filter.id_prefix {
            q = q.bind(p.chars().count() as i64).bind(p.as_str());
        }
        if let Some((ms, id)) = after {
            q = q.bind(ms).bind(ms).bind(id.as_str());
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(task_from_row).collect()
    }

    /// How many tasks are in each state (states without tasks are left out).
    pub async fn count_by_state(&self) -> Result<Vec<(TaskState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM tasks GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let state = parse_col("tasks", r.try_get(0)?, TaskState::from_str)?;
                Ok((state, r.try_get::<i64, _>(1)? as u64))
            })
            .collect()
    }

    /// Tasks in a final state (scanned once at start to seal their handles).
    pub async fn finished_tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        self.tasks_where("state NOT IN ('queued', 'running')").await
    }

    /// Tasks not yet in a final state, oldest first (for recovery at start).
    pub async fn live_tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        self.tasks_where("state IN ('queued', 'running') ORDER BY created_ms, id")
            .await
    }

    /// Every task's id and stored request (for `flotilla seal rotate`).
    pub async fn requests(&self) -> Result<Vec<(TaskId, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, request FROM tasks ORDER BY created_ms, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let id = TaskId::parse(&id).map_err(|e| StoreError::Corrupt {
                    table: "tasks",
                    detail: format!("id {id:?}: {e}"),
                })?;
                Ok((id, r.try_get("request")?))
            })
            .collect()
    }

    /// Replaces the stored requests of `tasks` in one transaction, overwriting the old
    /// text on disk (`secure_delete`) and checkpointing the WAL so that no copy of it
    /// stays there either.
    pub async fn replace_requests(&self, tasks: &[(TaskId, String)]) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut *conn)
            .await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for (id, request) in tasks {
            sqlx::query("UPDATE tasks SET request = ? WHERE id = ?")
                .bind(request)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        sqlx::query("PRAGMA secure_delete = OFF")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Tasks matching a fixed condition (never built from input).
    async fn tasks_where(&self, condition: &'static str) -> Result<Vec<TaskRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {condition}"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Records a new attempt (with the key the dispatcher chose) and marks the task
    /// running on `instance`, in one transaction.
    pub async fn start_attempt(
        &self,
        key: AttemptKey,
        task: &TaskId,
        attempt_no: u32,
        instance: &InstanceId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let lease = now_ms + crate::fleet::DEFAULT_LEASE_TIMEOUT_MS as i64;
        start_attempt_in(&mut tx, key, task, attempt_no, instance, (now_ms, lease)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The operators' cordons (`cordon`) and drains (`drain`), by instance.
    pub async fn instance_controls(&self) -> Result<Vec<(InstanceId, String)>, StoreError> {
        let rows = sqlx::query("SELECT instance, control FROM instance_controls ORDER BY instance")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id = parse_col("instance_controls", r.try_get(0)?, InstanceId::parse)?;
                Ok((id, r.try_get(1)?))
            })
            .collect()
    }

    /// Records an observer's session (a join: `left_ms` is `None`) or its end.
    pub async fn record_observer(
        &self,
        task: &TaskId,
        r: &ObserverRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO observer_sessions (id, task_id, joined_ms, left_ms, from_offset, \
             last_offset, frames, bytes, policy, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET left_ms = excluded.left_ms, \
             last_offset = excluded.last_offset, frames = excluded.frames, \
             bytes = excluded.bytes, reason = excluded.reason",
        )
        .bind(&r.id)
        .bind(task.as_str())
        .bind(r.joined_ms)
        .bind(r.left_ms)
        .bind(r.from as i64)
        .bind(r.last_offset as i64)
        .bind(r.frames as i64)
        .bind(r.bytes as i64)
        .bind(&r.policy)
        .bind(&r.reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The first `limit` observer sessions of a task, oldest first.
    pub async fn observers_of(
        &self,
        task: &TaskId,
        limit: u32,
    ) -> Result<Vec<ObserverRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, joined_ms, left_ms, from_offset, last_offset, frames, bytes, policy, \
             reason FROM observer_sessions WHERE task_id = ? ORDER BY joined_ms, id LIMIT ?",
        )
        .bind(task.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ObserverRecord {
                    id: r.try_get(0)?,
                    joined_ms: r.try_get(1)?,
                    left_ms: r.try_get(2)?,
                    from: r.try_get::<i64, _>(3)? as u64,
                    last_offset: r.try_get::<i64, _>(4)? as u64,
                    frames: r.try_get::<i64, _>(5)? as u64,
                    bytes: r.try_get::<i64, _>(6)? as u64,
                    policy: r.try_get(7)?,
                    reason: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// The token ids revoked so far: (id, when, why).
    pub async fn revoked_tokens(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, revoked_ms, reason FROM revoked_tokens")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Records a token id as revoked (a second revocation keeps the first).
    pub async fn revoke_token(&self, id: &str, at_ms: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (id, revoked_ms, reason) VALUES (?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(at_ms)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The task an attempt belongs to.
    pub async fn task_of_attempt(&self, key: AttemptKey) -> Result<Option<TaskId>, StoreError> {
        let row = sqlx::query("SELECT task_id FROM attempts WHERE id = ?")
            .bind(key as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| parse_col("attempts", r.try_get::<String, _>(0)?, TaskId::parse))
            .transpose()
    }

    /// The lease of a running attempt, as stored (None when it has none).
    pub async fn lease_of(&self, key: AttemptKey) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT lease_until_ms FROM attempts WHERE id = ?")
            .bind(key as i64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.flatten())
    }

    /// The highest attempt key used so far (0 when none).
    pub async fn max_attempt_key(&self) -> Result<AttemptKey, StoreError> {
        let max: Option<i64> = sqlx::query("SELECT MAX(id) FROM attempts")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(max.unwrap_or(0) as AttemptKey)
    }

    /// Records a task's new state; a final state also sets `finished_ms`.
    pub async fn update_task(
        &self,
        id: &TaskId,
        update: &TaskUpdate,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        update_task_in(&mut conn, id, update, now_ms).await
    }

    /// Marks every attempt still `running` as `lost` (at start: no agent holds it any more).
    pub async fn lose_open_attempts(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE attempts SET state = 'lost', ended_ms = ?, detail = 'orchestrator restarted' \
             WHERE state = 'running'",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Attempts still recorded as running (at start: those an agent may re-attach).
    pub async fn open_attempts(&self) -> Result<Vec<OpenAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, task_id, attempt_no, instance FROM attempts WHERE state = 'running' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenAttempt {
                    key: r.try_get::<i64, _>(0)? as AttemptKey,
                    task: parse_col("attempts", r.try_get::<String, _>(1)?, TaskId::parse)?,
                    attempt_no: r.try_get::<i64, _>(2)? as u32,
                    instance: parse_col("attempts", r.try_get::<String, _>(3)?, InstanceId::parse)?,
                })
            })
            .collect()
    }

    /// Records how an attempt ended (outside the dispatcher's write path: at start).
    pub async fn end_attempt(
        &self,
        key: AttemptKey,
        end: &AttemptEnd,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        end_attempt_in(&mut conn, key, end, now_ms).await
    }

    pub async fn attempts_of(&self, task: &TaskId) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, attempt_no, instance, state, started_ms, ended_ms, exit_code, signal, detail \
             FROM attempts WHERE task_id = ? ORDER BY attempt_no",
        )
        .bind(task.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    key: r.try_get::<i64, _>(0)? as AttemptKey,
                    attempt_no: r.try_get::<i64, _>(1)? as u32,
                    instance: parse_col("attempts", r.try_get::<String, _>(2)?, InstanceId::parse)?,
                    state: r.try_get(3)?,
                    started_ms: r.try_get(4)?,
                    ended_ms: r.try_get(5)?,
                    exit_code: r.try_get(6)?,
                    signal: r.try_get(7)?,
                    detail: r.try_get(8)?,
                })
            })
            .collect()
    }
}

/// One guard decision, as stored (never the value, only its digest).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRow {
    #[serde(rename = "attempt")]
    pub attempt_no: u32,
    pub stream: &'static str,
    pub rule: String,
    pub kind: String,
    pub action: &'static str,
    pub mode: &'static str,
    pub applied: bool,
    pub digest: String,
    /// Byte offsets of the value in the attempt's stream.
    pub start: u64,
    pub end: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
    #[serde(skip)]
    pub ts_ms: i64,
}

/// The guard's record of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardRunRow {
    #[serde(rename = "attempt")]
    pub attempt_no: u32,
    pub mode: String,
    pub level: String,
    pub policy_approval: Option<String>,
    pub overrides: Vec<String>,
    pub decisions: u64,
}

impl Store {
    /// The guard's record of each attempt of a task.
    pub async fn guard_runs_of(&self, task: &TaskId) -> Result<Vec<GuardRunRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt_no, mode, level, policy_approval, overrides, decisions \
             FROM guard_runs WHERE task_id = ? ORDER BY attempt_no",
        )
        .bind(task.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let overrides: String = r.try_get(4)?;
                Ok(GuardRunRow {
                    attempt_no: r.try_get::<i64, _>(0)? as u32,
                    mode: r.try_get(1)?,
                    level: r.try_get(2)?,
                    policy_approval: r.try_get(3)?,
                    overrides: serde_json::from_str(&overrides).unwrap_or_default(),
                    decisions: r.try_get::<i64, _>(5)? as u64,
                })
            })
            .collect()
    }

    /// Up to `limit` stored decisions of a task, oldest first, and how many are stored.
    pub async fn decisions_of(
        &self,
        task: &TaskId,
        limit: u32,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt_no, stream, rule, kind, action, mode, applied, digest, \
             start_offset, end_offset, allowed_by, ts_ms \
             FROM guard_decisions WHERE task_id = ? ORDER BY id LIMIT ?",
        )
        .bind(task.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let known = |v: String, of: &[&'static str]| {
            of.iter().copied().find(|k| *k == v).unwrap_or("unknown")
        };
        rows.iter()
            .map(|r| {
                Ok(DecisionRow {
                    attempt_no: r.try_get::<i64, _>(0)? as u32,
                    stream: known(r.try_get(1)?, &["stdout", "stderr"]),
                    rule: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    action: known(r.try_get(4)?, &["allow", "redact", "block"]),
                    mode: known(r.try_get(5)?, &["off", "shadow", "enforce"]),
                    applied: r.try_get::<i64, _>(6)? != 0,
                    digest: r.try_get(7)?,
                    start: r.try_get::<i64, _>(8)? as u64,
                    end: r.try_get::<i64, _>(9)? as u64,
                    allowed_by: r.try_get(10)?,
                    ts_ms: r.try_get(11)?,
                })
            })
            .collect()
    }
}

async fn insert_decisions_in(
    conn: &mut sqlx::SqliteConnection,
    task: &TaskId,
    rows: &[DecisionRow],
) -> Result<(), StoreError> {
    for d in rows {
        sqlx::query(
            "INSERT INTO guard_decisions (task_id, attempt_no, stream, rule, kind, action, mode, \
             applied, digest, start_offset, end_offset, allowed_by, ts_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(task.as_str())
        .bind(i64::from(d.attempt_no))
        .bind(d.stream)
        .bind(&d.rule)
        .bind(&d.kind)
        .bind(d.action)
        .bind(d.mode)
        .bind(i64::from(d.applied))
        .bind(&d.digest)
        .bind(d.start as i64)
        .bind(d.end as i64)
        .bind(&d.allowed_by)
        .bind(d.ts_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn upsert_guard_run_in(
    conn: &mut sqlx::SqliteConnection,
    task: &TaskId,
    run: &GuardRunRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO guard_runs (task_id, attempt_no, mode, level, policy_approval, overrides, decisions) \
         VALUES (?, ?, ?, ?, ?, ?, 0) \
         ON CONFLICT (task_id, attempt_no) DO UPDATE SET mode = excluded.mode, level = excluded.level, \
         policy_approval = excluded.policy_approval, overrides = excluded.overrides",
    )
    .bind(task.as_str())
    .bind(i64::from(run.attempt_no))
    .bind(&run.mode)
    .bind(&run.level)
    .bind(&run.policy_approval)
    // unwrap: a list of strings always serialises.
    .bind(serde_json::to_string(&run.overrides).unwrap())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn end_guard_run_in(
    conn: &mut sqlx::SqliteConnection,
    task: &TaskId,
    attempt_no: u32,
    decisions: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE guard_runs SET decisions = ? WHERE task_id = ? AND attempt_no = ?")
        .bind(decisions as i64)
        .bind(task.as_str())
        .bind(i64::from(attempt_no))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records a started attempt holding a lease until `lease_until_ms`.
async fn start_attempt_in(
    conn: &mut sqlx::SqliteConnection,
    key: AttemptKey,
    task: &TaskId,
    attempt_no: u32,
    instance: &InstanceId,
    (now_ms, lease_until_ms): (i64, i64),
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO attempts (id, task_id, attempt_no, instance, state, started_ms, \
         lease_until_ms) VALUES (?, ?, ?, ?, 'running', ?, ?)",
    )
    .bind(key as i64)
    .bind(task.as_str())
    .bind(attempt_no as i64)
    .bind(instance.as_str())
    .bind(now_ms)
    .bind(lease_until_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE tasks SET state = 'running', attempts = ?, instance = ?, reason = NULL, \
         updated_ms = ? WHERE id = ?",
    )
    .bind(attempt_no as i64)
    .bind(instance.as_str())
    .bind(now_ms)
    .bind(task.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a lost attempt that its agent still ran as fenced, and the fence as a
/// checkpoint of its task (found by the key, in the same statement).
pub(crate) async fn fence_held_in(
    conn: &mut sqlx::SqliteConnection,
    key: AttemptKey,
    instance: &InstanceId,
    reason: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE attempts SET state = 'fenced' WHERE id = ? AND state = 'lost'")
        .bind(key as i64)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO checkpoints (task_id, ts_ms, action, reason, from_instance, to_instance, \
         attempt_no, epoch) SELECT task_id, ?, 'fence', ?, ?, NULL, attempt_no, id \
         FROM attempts WHERE id = ?",
    )
    .bind(now_ms)
    .bind(reason)
    .bind(instance.as_str())
    .bind(key as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves the lease of each running attempt on to its time.
pub(crate) async fn renew_leases_in(
    conn: &mut sqlx::SqliteConnection,
    leases: &[(AttemptKey, i64)],
) -> Result<(), StoreError> {
    for (key, until_ms) in leases {
        sqlx::query("UPDATE attempts SET lease_until_ms = ? WHERE id = ? AND state = 'running'")
            .bind(*until_ms)
            .bind(*key as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records an operator's `control` of an instance (`cordon`, `drain`), or its end (None).
pub(crate) async fn set_control_in(
    conn: &mut sqlx::SqliteConnection,
    instance: &InstanceId,
    control: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    match control {
        Some(c) => {
            sqlx::query(
                "INSERT INTO instance_controls (instance, control, ts_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (instance) DO UPDATE SET control = excluded.control, ts_ms = excluded.ts_ms",
            )
            .bind(instance.as_str())
            .bind(c)
            .bind(now_ms)
            .execute(conn)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM instance_controls WHERE instance = ?")
                .bind(instance.as_str())
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

async fn end_attempt_in(
    conn: &mut sqlx::SqliteConnection,
    key: AttemptKey,
    end: &AttemptEnd,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE attempts SET state = ?, ended_ms = ?, exit_code = ?, signal = ?, detail = ?, \
         lease_until_ms = NULL \
         WHERE id = ?",
    )
    .bind(end.state.as_str())
    .bind(now_ms)
    .bind(end.exit_code)
    .bind(end.signal)
    .bind(&end.reason)
    .bind(key as i64)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert_checkpoint_in(
    conn: &mut sqlx::SqliteConnection,
    task: &TaskId,
    c: &Checkpoint,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO checkpoints (task_id, ts_ms, action, reason, from_instance, to_instance, \
         attempt_no, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(task.as_str())
    .bind(c.ts_ms)
    .bind(c.action.as_str())
    .bind(&c.reason)
    .bind(c.from_instance.as_ref().map(|i| i.as_str().to_owned()))
    .bind(c.to_instance.as_ref().map(|i| i.as_str().to_owned()))
    .bind(i64::from(c.attempt_no))
    .bind(c.epoch as i64)
    .execute(conn)
    .await?;
    Ok(())
}

async fn update_task_in(
    conn: &mut sqlx::SqliteConnection,
    id: &TaskId,
    update: &TaskUpdate,
    now_ms: i64,
) -> Result<(), StoreError> {
    let finished = update.state.is_final().then_some(now_ms);
    sqlx::query(
        "UPDATE tasks SET state = ?, exit_code = ?, signal = ?, reason = ?, updated_ms = ?, \
         finished_ms = ? WHERE id = ?",
    )
    .bind(update.state.as_str())
    .bind(update.exit_code)
    .bind(update.signal)
    .bind(&update.reason)
    .bind(now_ms)
    .bind(finished)
    .bind(id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

fn parse_col<T, E: std::fmt::Display>(
    table: &'static str,
    s: String,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    parse(&s).map_err(|e| StoreError::Corrupt {
        table,
        detail: format!("{s:?}: {e}"),
    })
}

fn task_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<TaskRow, StoreError> {
    let instance: Option<String> = r.try_get(7)?;
    Ok(TaskRow {
        id: parse_col("tasks", r.try_get(0)?, TaskId::parse)?,
        handle: parse_col("tasks", r.try_get(1)?, HandleId::parse)?,
        run_id: parse_col("tasks", r.try_get(2)?, RunId::parse)?,
        request: r.try_get(3)?,
        state: parse_col("tasks", r.try_get(4)?, TaskState::from_str)?,
        attempts: r.try_get::<i64, _>(5)? as u32,
        max_attempts: r.try_get::<i64, _>(6)? as u32,
        instance: instance
            .map(|s| parse_col("tasks", s, InstanceId::parse))
            .transpose()?,
        exit_code: r.try_get(8)?,
        signal: r.try_get(9)?,
        reason: r.try_get(10)?,
        created_ms: r.try_get(11)?,
        updated_ms: r.try_get(12)?,
        finished_ms: r.try_get(13)?,
        parent: r
            .try_get::<Option<String>, _>(14)?
            .map(|s| parse_col("tasks", s, TaskId::parse))
            .transpose()?,
        shard: r.try_get::<Option<i64>, _>(15)?.map(|n| n as u32),
    })
}

pub mod instances;
pub mod reports;
#[cfg(test)]
mod tests;
pub mod writer;

pub use instances::{AttemptCounts, InstanceStats, SessionStart};
