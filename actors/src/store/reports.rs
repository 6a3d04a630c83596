//! What the success-metric reports read: tasks finished, attempts around losses and the
//! guard's decisions, each within a time window.

use sqlx::Row;

use super::{parse_col, Store, StoreError};
use crate::domain::{TaskId, TaskState};

/// One attempt, as a loss's repair is traced through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptTrace {
    pub task: TaskId,
    pub attempt_no: u32,
    pub state: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
}

/// Guard decisions of one rule, action and whether they were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCount {
    pub rule: String,
    pub action: String,
    pub applied: bool,
    pub count: u64,
}

impl Store {
    /// Tasks that reached a final state within `[from, to)`, by state.
    pub async fn finished_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(TaskState, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM tasks WHERE finished_ms >= ? AND finished_ms < ? \
             GROUP BY state ORDER BY state",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state = parse_col("tasks", r.try_get(0)?, str::parse::<TaskState>)?;
                Ok((state, r.try_get::<i64, _>(1)?.max(0) as u64))
            })
            .collect()
    }

    /// Every attempt of each task that had an attempt lost or fenced within
    /// `[from, to)`, by task and attempt number.
    pub async fn attempts_around_losses(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<AttemptTrace>, StoreError> {
        let rows = sqlx::query(
            "SELECT task_id, attempt_no, state, started_ms, ended_ms FROM attempts \
             WHERE task_id IN (SELECT task_id FROM attempts WHERE state IN ('lost', 'fenced') \
                 AND ended_ms >= ? AND ended_ms < ?) \
             ORDER BY task_id, attempt_no",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptTrace {
                    task: parse_col("attempts", r.try_get(0)?, TaskId::parse)?,
                    attempt_no: r.try_get::<i64, _>(1)?.max(0) as u32,
                    state: r.try_get(2)?,
                    started_ms: r.try_get(3)?,
                    ended_ms: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The guard's decisions within `[from, to)`, by rule, action and applied.
    pub async fn decisions_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<DecisionCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule, action, applied, COUNT(*) FROM guard_decisions \
             WHERE ts_ms >= ? AND ts_ms < ? GROUP BY rule, action, applied ORDER BY rule",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DecisionCount {
                    rule: r.try_get(0)?,
                    action: r.try_get(1)?,
                    applied: r.try_get::<i64, _>(2)? != 0,
                    count: r.try_get::<i64, _>(3)?.max(0) as u64,
                })
            })
            .collect()
    }
}
