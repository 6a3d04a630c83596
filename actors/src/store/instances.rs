//! Instance sessions and the figures derived from what is recorded about each instance:
//! its connections (`instance_sessions`) and the attempts it ran (`attempts`).

use sqlx::Row;

use super::{parse_col, Store, StoreError};
use crate::domain::{rfc3339_ms, InstanceId};

/// A connection of an instance, to record when it is taken.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStart {
    pub instance: InstanceId,
    pub conn: u64,
    pub pid: u32,
    pub slots: u32,
    pub capabilities: Vec<String>,
    pub now_ms: i64,
}

/// What an instance's attempts came to, all sessions together.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AttemptCounts {
    pub started: u64,
    pub running: u64,
    /// Exited 0.
    pub succeeded: u64,
    /// Exited non-zero, timed out or did not spawn.
    pub failed: u64,
    /// Lost with the instance and run again elsewhere (or given up on).
    pub rescheduled: u64,
    pub fenced: u64,
    pub cancelled: u64,
}

/// One instance as recorded: its latest session and its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStats {
    pub instance: InstanceId,
    pub capabilities: Vec<String>,
    pub slots: u32,
    pub connected_ms: i64,
    pub left_ms: Option<i64>,
    pub last_heard_ms: i64,
    /// Slot time its attempts used during the latest session.
    pub busy_ms: i64,
    /// `busy_ms` over its slots times the session's length so far, 0 to 1.
    pub utilization: f64,
    pub attempts: AttemptCounts,
    /// Sessions that came with another process than the one before.
    pub restarts: u64,
    /// Mean time from one of its attempts being lost or fenced to the task's next
    /// attempt starting; `None` when none of its attempts was run again.
    pub mttr_ms: Option<i64>,
    /// Attempts lost or fenced on it whose task ran again (what `mttr_ms` is over).
    pub repairs: u64,
}

impl InstanceStats {
    /// As `metrics.json` and the admin API show it.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "capabilities": self.capabilities,
            "slots": self.slots,
            "connectedAt": rfc3339_ms(self.connected_ms),
            "leftAt": self.left_ms.map(rfc3339_ms),
            "lastHeartbeatAt": rfc3339_ms(self.last_heard_ms),
            "busyMs": self.busy_ms,
            "utilization": self.utilization,
            "attempts": self.attempts,
            "restarts": self.restarts,
            "mttrMs": self.mttr_ms,
            "repairs": self.repairs,
        })
    }
}

pub(crate) async fn start_session_in(
    conn: &mut sqlx::SqliteConnection,
    s: &SessionStart,
) -> Result<(), StoreError> {
    // unwrap: a list of strings always serialises.
    let caps = serde_json::to_string(&s.capabilities).unwrap();
    sqlx::query(
        "INSERT INTO instance_sessions (instance, conn, pid, slots, capabilities, \
         connected_ms, last_heard_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(s.instance.as_str())
    .bind(s.conn as i64)
    .bind(i64::from(s.pid))
    .bind(i64::from(s.slots))
    .bind(caps)
    .bind(s.now_ms)
    .bind(s.now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records that the open session `conn` of `instance` was heard from (`left: false`) or
/// ended (`left: true`) at `now_ms`.
pub(crate) async fn touch_session_in(
    conn: &mut sqlx::SqliteConnection,
    instance: &InstanceId,
    session: u64,
    now_ms: i64,
    left: bool,
) -> Result<(), StoreError> {
    let sql = if left {
        "UPDATE instance_sessions SET last_heard_ms = MAX(last_heard_ms, ?1), left_ms = ?1 \
         WHERE instance = ?2 AND conn = ?3 AND left_ms IS NULL"
    } else {
        "UPDATE instance_sessions SET last_heard_ms = MAX(last_heard_ms, ?1) \
         WHERE instance = ?2 AND conn = ?3 AND left_ms IS NULL"
    };
    sqlx::query(sql)
        .bind(now_ms)
        .bind(instance.as_str())
        .bind(session as i64)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Ends every session still open, at the time it was last heard from (at start: the
    /// server that held them is gone).
    pub async fn close_open_sessions(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE instance_sessions SET left_ms = last_heard_ms WHERE left_ms IS NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Every instance ever recorded, by id.
    pub async fn recorded_instances(&self) -> Result<Vec<InstanceId>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT instance FROM instance_sessions ORDER BY instance")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| parse_col("instance_sessions", r.try_get(0)?, InstanceId::parse))
            .collect()
    }

    /// What is recorded of `instance` at `now_ms`; `None` if it never connected.
    pub async fn instance_stats(
        &self,
        instance: &InstanceId,
        now_ms: i64,
    ) -> Result<Option<InstanceStats>, StoreError> {
        let id = instance.as_str();
        let Some(session) = sqlx::query(
            "SELECT capabilities, slots, connected_ms, left_ms, last_heard_ms \
             FROM instance_sessions WHERE instance = ? ORDER BY connected_ms DESC, id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let caps: String = session.try_get(0)?;
        let capabilities: Vec<String> =
            serde_json::from_str(&caps).map_err(|e| StoreError::Corrupt {
                table: "instance_sessions",
                detail: format!("capabilities {caps:?}: {e}"),
            })?;
        let slots = session.try_get::<i64, _>(1)?.max(0) as u32;
        let connected_ms: i64 = session.try_get(2)?;
        let left_ms: Option<i64> = session.try_get(3)?;
        let last_heard_ms: i64 = session.try_get(4)?;
        let until = left_ms.unwrap_or(now_ms).max(connected_ms);

        let busy: Option<i64> = sqlx::query(
            "SELECT SUM(MIN(COALESCE(ended_ms, ?1), ?2) - MAX(started_ms, ?3)) FROM attempts \
             WHERE instance = ?4 AND started_ms < ?2 AND COALESCE(ended_ms, ?1) > ?3",
        )
        .bind(now_ms)
        .bind(until)
        .bind(connected_ms)
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        let busy_ms = busy.unwrap_or(0).max(0);
        let span = (until - connected_ms) * i64::from(slots);
        let utilization = if span > 0 {
            (busy_ms as f64 / span as f64).min(1.0)
        } else {
            0.0
        };

        let c = sqlx::query(
            "SELECT COUNT(*), \
             COALESCE(SUM(state = 'running'), 0), \
             COALESCE(SUM(state = 'exited' AND exit_code = 0), 0), \
             COALESCE(SUM((state = 'exited' AND (exit_code IS NULL OR exit_code <> 0)) \
                 OR state IN ('timed_out', 'spawn_failed')), 0), \
             COALESCE(SUM(state = 'lost'), 0), \
             COALESCE(SUM(state = 'fenced'), 0), \
             COALESCE(SUM(state = 'cancelled'), 0) \
             FROM attempts WHERE instance = ?",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let n = |i: usize| -> Result<u64, StoreError> { Ok(c.try_get::<i64, _>(i)?.max(0) as u64) };
        let attempts = AttemptCounts {
            started: n(0)?,
            running: n(1)?,
            succeeded: n(2)?,
            failed: n(3)?,
            rescheduled: n(4)?,
            fenced: n(5)?,
            cancelled: n(6)?,
        };

        let restarts: i64 = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT pid, LAG(pid) OVER (ORDER BY connected_ms, id) AS prev \
             FROM instance_sessions WHERE instance = ?) WHERE prev IS NOT NULL AND prev <> pid",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;

        let repair = sqlx::query(
            "SELECT COUNT(*), AVG(n.started_ms - a.ended_ms) FROM attempts a \
             JOIN attempts n ON n.task_id = a.task_id AND n.attempt_no = a.attempt_no + 1 \
             WHERE a.instance = ? AND a.state IN ('lost', 'fenced') AND a.ended_ms IS NOT NULL",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let repairs = repair.try_get::<i64, _>(0)?.max(0) as u64;
        let mttr: Option<f64> = repair.try_get(1)?;

        Ok(Some(InstanceStats {
            instance: instance.clone(),
            capabilities,
            slots,
            connected_ms,
            left_ms,
            last_heard_ms,
            busy_ms,
            utilization,
            attempts,
            restarts: restarts.max(0) as u64,
            mttr_ms: mttr.map(|m| m.max(0.0).round() as i64),
            repairs,
        }))
    }
}
